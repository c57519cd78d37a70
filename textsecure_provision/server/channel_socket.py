"""The temp channel (§4.1) as a purpose-built websocket protocol, plugged into uvicorn.

uvicorn parses the HTTP request (httptools) and, on an upgrade, hands the
connection to the protocol class of its ``ws=`` setting. ``runner.py`` passes
a ``ChannelSocketFactory`` there: for ``GET /v1/temp_websocket`` it answers
the handshake itself and serves the channel with one small object per socket;
any other websocket path is handed to uvicorn's own ``websockets-sansio``
protocol and the ASGI app, unchanged.

Why not the ASGI route (``routes/channels.serve_channel``, still used under
other servers): an idle channel there costs ~20 KiB of server memory: a task
parked in ``receive()`` with its frames, an ``asyncio.Queue``, an
``asyncio.Event``, the ``websockets`` sans-I/O parser (a generator with its
own buffers), the ASGI scope with its header lists, and a timer. The channel
needs none of that: it sends two frames, reads nothing, and closes. Here an
idle channel is this object (``__slots__``), its transport, its uuid, its
fan-out entry and one timer handle (docs/performance.md has the figures).

What it speaks (RFC 6455, server side, only what a channel needs):

* the opening handshake: ``GET``, ``Sec-WebSocket-Version: 13`` (else 426 with
  the version we speak), a ``Sec-WebSocket-Key`` of 16 bytes in base64 (else
  400), no extension or subprotocol negotiated. A refusal before the upgrade
  (429 rate limit, 503 fan-out down or shutting down) is a JSON error (§4);
* the uuid frame at once, then the one message frame and close 1000 (§4.1
  step 2), close 1001 at expiry (step 3);
* anything the client sends that is not a control frame closes the channel
  with 1008 (step 4; the payload is skipped, never buffered); a frame over
  ``MAX_CLIENT_FRAME_BYTES`` gets 1009 and the connection is dropped at once;
* ping → pong, pong ignored, a client close is answered and ends the socket;
  broken framing (unmasked frame, reserved bits or opcodes, a fragmented or
  oversized control frame, a bad close code) is 1002, a close reason that is
  not UTF-8 is 1007;
* after its own close frame the server waits ``CLOSE_TIMEOUT_S`` for the
  client's, then drops the connection; shutdown sends 1012.

There are no server pings: a channel lives at most ``--channel-ttl`` seconds
and the expiry closes a dead one; clients may ping (answered).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
from typing import Any

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.fanout.base import ChannelId
from textsecure_provision.server.fastpath import in_process, run_eagerly
from textsecure_provision.server.handlers import error_body, provision_error_response
from textsecure_provision.server.routes.channels import (
    CLOSE_CLIENT_SPOKE,
    CLOSE_DELIVERED,
    CLOSE_EXPIRED,
    PATH,
)
from textsecure_provision.server.services import Services

log = logging.getLogger(__name__)

MAX_CLIENT_FRAME_BYTES = 4096  # a client has nothing to send (§4.1); larger frames: 1009
MAX_REQUEST_BYTES = 16 * 1024  # the upgrade request as uvicorn hands it over
CLOSE_TIMEOUT_S = 10.0  # waiting for the client's close frame after ours
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTARTING = 1012
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

# Socket states. Every transition out of _OPEN happens synchronously in one callback, so
# exactly one of delivery, expiry, client junk, client close or disconnect wins.
_REQUEST, _OPENING, _OPEN, _CLOSING, _DONE, _DELEGATED, _SNIFF, _HANDED_OVER = range(8)
_CHANNEL_REQUEST_LINE = b"GET " + b"/v1/temp_websocket"


class _RandomPool:
    """``os.urandom`` bytes fetched 4 KiB at a time: one system call per 256 channel ids
    instead of one each (it showed in profiles). The bytes are the same CSPRNG output; a
    forked child drops the parent's pool so that two processes never share ids."""

    __slots__ = ("data", "pos")
    SIZE = 4096

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0

    def take16(self) -> bytes:
        pos = self.pos
        if pos + 16 > len(self.data):
            self.data, pos = os.urandom(self.SIZE), 0
        self.pos = pos + 16
        return self.data[pos : pos + 16]

    def reset(self) -> None:
        self.data, self.pos = b"", 0


_random = _RandomPool()
os.register_at_fork(after_in_child=_random.reset)


def new_channel_id() -> ChannelId:
    """A random (version 4) uuid in canonical lowercase form (§3); ``uuid.uuid4()`` without
    the ``UUID`` object."""
    raw = bytearray(_random.take16())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return ChannelId(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())  # noqa: S324 (the RFC's choice)


def text_frame(text: str) -> bytes:
    """One unmasked, final server text frame."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + data


def close_frame(code: int) -> bytes:
    return b"\x88\x02" + code.to_bytes(2, "big")


_CLOSE_FRAMES = {
    code: close_frame(code)
    for code in (
        CLOSE_DELIVERED,
        CLOSE_EXPIRED,
        CLOSE_PROTOCOL_ERROR,
        CLOSE_INVALID_DATA,
        CLOSE_CLIENT_SPOKE,
        CLOSE_TOO_BIG,
        CLOSE_SERVER_ERROR,
        CLOSE_RESTARTING,
    )
}


def valid_close_code(code: int) -> bool:
    """Codes a peer may send in a close frame (RFC 6455 §7.4)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


def _http_response(
    status: int, reason: str, body: bytes, extra: list[tuple[bytes, bytes]]
) -> bytes:
    head = [f"HTTP/1.1 {status} {reason}".encode()]
    head += [name + b": " + value for name, value in extra]
    head += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _error_response(exc: ProvisionError) -> bytes:
    response = provision_error_response(exc)
    extra = [
        (name, value)
        for name, value in response.raw_headers
        if name not in (b"content-length", b"content-type")
    ]
    status = response.status_code
    return _http_response(status, _REASONS.get(status, "Error"), bytes(response.body), extra)


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _plain_error(status: int, message: str, *extra: tuple[bytes, bytes]) -> bytes:
    body = json.dumps(error_body(status, message), separators=(",", ":")).encode()
    return _http_response(status, _REASONS[status], body, list(extra))


class _Hub:
    """What every channel socket of one server shares (one instance per factory)."""

    __slots__ = (
        "app_state",
        "config",
        "connections",
        "http_class",
        "proxy",
        "server_state",
        "svc",
        "tasks",
    )

    def __init__(
        self, svc: Services, config: Any, server_state: Any, app_state: Any, http_class: Any = None
    ) -> None:
        self.svc = svc
        self.http_class = http_class
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[Any]] = server_state.tasks
        self.proxy: Any = None
        if getattr(config, "proxy_headers", False):
            # uvicorn's own rules for X-Forwarded-For from trusted proxies (runner.py turns
            # proxy_headers on only with --forwarded-allow-ips).
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            self.proxy = ProxyHeadersMiddleware(_noop_app, config.forwarded_allow_ips)

    def spawn(self, coro: Any) -> None:
        """Run a coroutine as a task that uvicorn waits for on shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def start(self, coro: Any) -> None:
        """``spawn``, but started at once on this stack when nothing it calls needs a task
        (in-process backends: fastpath.in_process); it becomes a task only if it waits."""
        if in_process(self.svc):
            run_eagerly(coro, self.tasks)
        else:
            self.spawn(coro)


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    return None


class ChannelSocketFactory:
    """uvicorn's ``ws=`` setting: called as ``factory(config=, server_state=, app_state=)``
    for every websocket upgrade that uvicorn's HTTP protocol parsed, like a protocol class."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._hub: _Hub | None = None

    def __call__(
        self, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> asyncio.Protocol:
        hub = self._hub
        if hub is None or hub.server_state is not server_state:
            hub = self._hub = _Hub(self.svc, config, server_state, app_state)
        return ChannelSocket(hub, _REQUEST)


class ChannelHttpFactory:
    """uvicorn's ``http=`` setting: every new connection first meets a ``ChannelSocket`` that
    looks at its first request. A websocket upgrade of ``/v1/temp_websocket`` is served on
    the spot; anything else is handed, bytes unchanged, to ``http_class`` (uvicorn's own
    HTTP protocol), which then owns the connection as if it had accepted it. This skips
    uvicorn's HTTP parsing and its per-connection setup for the one request a channel
    socket ever makes (profiled: ~10 % of a rendezvous); a channel upgrade that arrives
    later on a keep-alive connection still reaches ``ChannelSocketFactory`` through
    uvicorn."""

    alpn_protocols = None  # as uvicorn's HTTP/1.1 protocols (TLS ALPN is left alone)

    def __init__(self, svc: Services, http_class: Any) -> None:
        self.svc = svc
        self.http_class = http_class
        self._hub: _Hub | None = None

    def __call__(
        self, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> asyncio.Protocol:
        hub = self._hub
        if hub is None or hub.server_state is not server_state:
            hub = self._hub = _Hub(self.svc, config, server_state, app_state, self.http_class)
        return ChannelSocket(hub, _SNIFF)


async def _close_channel(svc: Services, channel_id: ChannelId) -> None:
    try:
        await svc.fanout.close_channel(channel_id)
    except Exception:  # the fan-out's own expiry removes it later (fanout/base.py)
        log.warning("could not unregister a closed channel", exc_info=True)


class ChannelSocket(asyncio.Protocol):
    """One websocket on ``/v1/temp_websocket`` (see the module docstring)."""

    __slots__ = ("_buf", "_delegate", "_hub", "_id", "_skip", "_state", "_timer", "transport")

    def __init__(self, hub: _Hub, state: int) -> None:
        self._hub = hub
        self.transport: asyncio.Transport | None = None
        self._state = state
        self._buf = b""  # unparsed bytes (the request, or a partial client frame)
        self._skip = 0  # payload bytes of a refused client frame still to discard
        self._id: ChannelId | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._delegate: asyncio.Protocol | None = None  # another path: see _delegate_to_asgi

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._hub.connections.add(self)  # so that uvicorn's shutdown reaches it

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _DELEGATED:
            self._delegate.data_received(data)  # type: ignore[union-attr]
        elif state == _SNIFF:
            self._sniff(data)
        elif state == _REQUEST:
            self._on_request(data)
        elif state == _OPENING:
            if len(self._buf) + len(data) > MAX_REQUEST_BYTES:
                self._abort()
            else:
                self._buf += data  # read once the channel is open
        elif state != _DONE:
            self._on_frames(data)

    def eof_received(self) -> bool | None:
        if self._state == _DELEGATED:
            return self._delegate.eof_received()  # type: ignore[union-attr]
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        if self._state == _DELEGATED:
            self._delegate.pause_writing()  # type: ignore[union-attr]
        # A channel writes a few hundred bytes in all: nothing to throttle.

    def resume_writing(self) -> None:
        if self._state == _DELEGATED:
            self._delegate.resume_writing()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        if state == _DELEGATED:
            self._delegate.connection_lost(exc)  # type: ignore[union-attr]
            return
        if state == _HANDED_OVER:  # pragma: no cover - the transport calls the new protocol
            return
        self._state = _DONE
        self._hub.connections.discard(self)
        self._cancel_timer()
        if state == _OPEN and self._id is not None:  # the client left first
            self._hub.spawn(_close_channel(self._hub.svc, self._id))
        if state in (_OPEN, _CLOSING):
            self._hub.svc.metrics.open_channels -= 1

    # -- uvicorn's graceful shutdown -----------------------------------------------------------
    def shutdown(self) -> None:
        state = self._state
        if state == _OPENING:
            self._refuse(_plain_error(503, "the server is shutting down"))
        elif state == _OPEN:
            self._state = _CLOSING
            if self._id is not None:
                self._hub.spawn(_close_channel(self._hub.svc, self._id))
            self._write(_CLOSE_FRAMES[CLOSE_RESTARTING])
            self._close_transport()
        elif state in (_SNIFF, _REQUEST, _CLOSING):
            self._close_transport()

    # -- the first request on a new connection (ChannelHttpFactory) -----------------------------
    def _sniff(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        prefix = _CHANNEL_REQUEST_LINE
        if not (buf.startswith(prefix) if len(buf) > len(prefix) else prefix.startswith(buf)):
            self._hand_over(buf)  # the common case for anything else: decided on byte one
            return
        if len(buf) > len(prefix) and buf[len(prefix)] not in b" ?":
            self._hand_over(buf)  # another path that merely starts the same
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_REQUEST_BYTES:
                self._hand_over(buf)  # uvicorn answers an oversized head its own way
            else:
                self._buf = buf
            return
        upgrade = connection = b""
        for line in buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"upgrade":
                upgrade = value.lower()
            elif name == b"connection":
                connection = value.lower()
        if b"websocket" in upgrade and b"upgrade" in connection:
            self._buf = b""
            self._state = _REQUEST
            self._on_request(buf)
        else:
            self._hand_over(buf)  # a plain GET (426 from the route), or a bad upgrade

    def _hand_over(self, buf: bytes) -> None:
        """Give the connection to uvicorn's HTTP protocol as if it had accepted it."""
        hub = self._hub
        http = hub.http_class(
            config=hub.config, server_state=hub.server_state, app_state=hub.app_state
        )
        self._state = _HANDED_OVER
        self._buf = b""
        hub.connections.discard(self)
        transport = self.transport
        assert transport is not None
        http.connection_made(transport)
        transport.set_protocol(http)  # before its data: an upgrade there sets its own protocol
        http.data_received(buf)

    # -- the opening handshake -------------------------------------------------------------------
    def _on_request(self, data: bytes) -> None:
        buf = self._buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_REQUEST_BYTES:
                self._refuse(_plain_error(400, "the upgrade request is too large"))
            else:
                self._buf = buf
            return
        self._buf = b""
        lines = buf[:end].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._refuse(_plain_error(400, "malformed request line"))
            return
        method, target, _version = parts
        if target.partition(b"?")[0] != PATH.encode():
            self._delegate_to_asgi(buf)
            return
        headers: dict[bytes, bytes] = {}
        raw_headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._refuse(_plain_error(400, "malformed header line"))
                return
            name = name.strip().lower()
            value = value.strip()
            raw_headers.append((name, value))
            if name in headers:
                headers[name] += b", " + value
            else:
                headers[name] = value
        refusal = self._check_upgrade(method, headers)
        if refusal is not None:
            self._refuse(refusal)
            return
        if self._hub.svc.stopping:
            self._refuse(_plain_error(503, "the server is shutting down"))
            return
        self._state = _OPENING
        self._buf = buf[end + 4 :]
        self._hub.start(self._open(headers[b"sec-websocket-key"], raw_headers))

    @staticmethod
    def _check_upgrade(method: bytes, headers: dict[bytes, bytes]) -> bytes | None:
        """The RFC 6455 §4.2.1 checks uvicorn has not made; a refusal, or None."""
        if method != b"GET":
            return _plain_error(405, "a websocket upgrade is a GET", (b"allow", b"GET"))
        upgrade = headers.get(b"upgrade", b"").lower()
        connection = headers.get(b"connection", b"").lower()
        if b"websocket" not in upgrade or b"upgrade" not in connection:
            return _plain_error(400, "not a websocket upgrade request")
        if headers.get(b"sec-websocket-version") != b"13":
            return _plain_error(
                426,
                "this server speaks websocket version 13",
                (b"sec-websocket-version", b"13"),
                (b"upgrade", b"websocket"),
            )
        key = headers.get(b"sec-websocket-key", b"")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except (binascii.Error, ValueError):
            return _plain_error(400, "Sec-WebSocket-Key must be 16 bytes in base64")
        return None

    async def _open(self, key: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        hub = self._hub
        svc = hub.svc
        try:
            address = await self._client_address(raw_headers)
            await svc.limits.enforce("channel_create_address", address)
            channel_id = svc.fanout.route_channel_id(new_channel_id())
            ttl = svc.config.channel_ttl_s
            # Registered before the uuid leaves, so a PUT right after it finds the channel.
            await svc.fanout.open_channel(channel_id, self.deliver, ttl)
        except ProvisionError as exc:  # 429, or 503 when the fan-out is down
            self._refuse(_error_response(exc))
            return
        except Exception:
            log.exception("could not open a channel")
            svc.metrics.internal_errors += 1
            self._refuse(_plain_error(500, "internal error"))
            return
        if self._state != _OPENING:  # the client left (or shutdown) while we waited
            await _close_channel(svc, channel_id)
            return
        self._id = channel_id
        self._state = _OPEN
        svc.metrics.channels_opened += 1
        svc.metrics.open_channels += 1
        self._write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: "
            + accept_key(key)
            + b"\r\n\r\n"
            + text_frame(f'{{"uuid":"{channel_id}"}}')  # the id is [0-9a-f-]: no escaping
        )
        self._timer = asyncio.get_running_loop().call_later(ttl, self._expire)
        if self._buf:  # the client spoke before it saw the uuid
            early, self._buf = self._buf, b""
            self._on_frames(early)

    async def _client_address(self, raw_headers: list[tuple[bytes, bytes]]) -> str:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        if self._hub.proxy is not None:
            scope: dict[str, Any] = {"type": "websocket", "client": client, "headers": raw_headers}
            await self._hub.proxy(scope, None, None)  # rewrites scope["client"] if trusted
            client = scope["client"]
        return str(client[0]) if client else "unknown"

    def _delegate_to_asgi(self, request: bytes) -> None:
        """Not the channel path: uvicorn's websockets-sansio protocol and the ASGI app serve
        it; this object only forwards the transport's calls (uvicorn set it as the protocol)."""
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )

        hub = self._hub
        delegate = WebSocketsSansIOProtocol(
            config=hub.config, server_state=hub.server_state, app_state=hub.app_state
        )
        self._state = _DELEGATED
        self._delegate = delegate
        hub.connections.discard(self)  # the delegate registers itself
        delegate.connection_made(self.transport)  # type: ignore[arg-type]
        delegate.data_received(request)

    def _refuse(self, response: bytes) -> None:
        """An HTTP answer instead of the upgrade, then close."""
        self._state = _DONE
        self._hub.connections.discard(self)
        self._write(response)
        self._close_transport()

    # -- the channel -----------------------------------------------------------------------------
    async def deliver(self, frame: str) -> bool:
        """The fan-out sink: the one message frame, then close 1000 (§4.1 step 2)."""
        if self._state != _OPEN or self.transport is None or self.transport.is_closing():
            return False
        self._start_closing(text_frame(frame) + _CLOSE_FRAMES[CLOSE_DELIVERED])
        return True

    def _expire(self) -> None:
        """Timer callback: close 1001 (§4.1 step 3); the fan-out entry goes first."""
        self._timer = None
        if self._state == _OPEN and self._id is not None:
            self._hub.svc.metrics.channels_expired += 1
            self._hub.spawn(_close_channel(self._hub.svc, self._id))
            self._start_closing(_CLOSE_FRAMES[CLOSE_EXPIRED])

    def _fail(self, code: int) -> None:
        """The client broke the channel's rules (§4.1 step 4) or the framing: close ``code``."""
        if self._state == _OPEN and self._id is not None:
            self._hub.spawn(_close_channel(self._hub.svc, self._id))
        if self._state != _OPEN:  # our close frame already left: just drop the connection
            self._close_transport()
        elif code == CLOSE_CLIENT_SPOKE:
            self._start_closing(_CLOSE_FRAMES[code])  # a polite close: wait for theirs
        else:  # too big (not worth reading past) or broken framing (RFC 6455 §7.1.7)
            self._state = _CLOSING
            self._write(_CLOSE_FRAMES[code])
            self._close_transport()

    def _start_closing(self, data: bytes) -> None:
        self._state = _CLOSING
        self._cancel_timer()
        self._write(data)
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._close_transport)

    # -- client frames (RFC 6455 §5.2) -------------------------------------------------------------
    def _on_frames(self, data: bytes) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        while self._state in (_OPEN, _CLOSING) and end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b0 & 0x70 or not b1 & 0x80 or n >> 63:  # reserved bits, unmasked, bad length
                self._fail(CLOSE_PROTOCOL_ERROR)
                return
            head += 4  # the masking key
            if opcode in (0x0, 0x1, 0x2):  # data: the channel carries nothing from the client
                if self._state == _OPEN:
                    self._fail(CLOSE_TOO_BIG if n > MAX_CLIENT_FRAME_BYTES else CLOSE_CLIENT_SPOKE)
                available = end - pos - head
                if available < 0:
                    break  # the header itself is incomplete: wait for it
                if n > available:
                    self._skip = n - available
                    pos = end
                    break
                pos += head + n
                continue
            if opcode < 0x8 or opcode > 0xA or not b0 & 0x80 or n > 125:
                self._fail(CLOSE_PROTOCOL_ERROR)
                return
            if end - pos < head + n:
                break
            mask = buf[pos + head - 4 : pos + head]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[pos + head : pos + head + n]))
            pos += head + n
            if opcode == 0x9:  # ping → pong with the same payload
                if self._state == _OPEN:
                    self._write(bytes((0x8A, n)) + payload)
            elif opcode == 0x8:
                self._on_close_frame(payload)
                return
            # 0xA pong: nothing to do
        self._buf = buf[pos:] if pos < end else b""

    def _on_close_frame(self, payload: bytes) -> None:
        state = self._state
        if state == _CLOSING:  # the answer to our close: the handshake is complete
            self._close_transport()
            return
        if len(payload) == 1:
            self._fail(CLOSE_PROTOCOL_ERROR)
            return
        code = CLOSE_DELIVERED
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                self._fail(CLOSE_PROTOCOL_ERROR)
                return
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA)
                return
        # The client closes first: unregister, answer with its code, drop the connection.
        if self._id is not None:
            self._hub.spawn(_close_channel(self._hub.svc, self._id))
        self._state = _CLOSING
        self._cancel_timer()
        self._write(close_frame(code))
        self._close_transport()

    # -- plumbing ----------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _close_transport(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
