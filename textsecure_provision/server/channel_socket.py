"""The front of every connection, and the temp channel (§4.1) it serves.

uvicorn's ``http=`` setting is ``ChannelHttpFactory``: every new connection first meets a
``ChannelSocket``, which reads the first request head with httptools (the parser uvicorn
uses) under the connection budgets (``SocketBudgets`` in config.py):

* a cap on open sockets per client address (``addresses.address_key``: IPv6 by /64,
  IPv4-mapped IPv6 as IPv4); over it the connection gets 503 and is closed;
* a deadline from connect to the end of the handshake (408 before the head is complete,
  503 while the channel is being registered);
* a size bound for the head (431).

A websocket upgrade is answered here: on ``/v1/temp_websocket`` (after percent-decoding,
with any query) it becomes a channel; on any other path 404. Anything else is handed,
bytes unchanged, to uvicorn's HTTP protocol (``uvicorn_adapter.GuardedHttpProtocol``, which
keeps the same budgets for later requests on the connection and hands a later channel
upgrade back here). This is the only implementation of §4.1: the ASGI app has none.

The handshake is strict (RFC 6455 §4.2.1): ``GET``, HTTP/1.1, one ``Host``,
``Upgrade: websocket`` as the one token, an ``upgrade`` token in ``Connection``, a
``Sec-WebSocket-Key`` of 16 bytes in base64 (else 400), ``Sec-WebSocket-Version: 13``
(else 426 naming 13); httptools refuses bare-LF line ends and control characters in
header values (400). A refusal (429 rate limit, 503 fan-out down or shutting down) is a
JSON error (§4). No extension or subprotocol is negotiated.

After the 101 the frames are the ``websockets`` sans-I/O ``Protocol`` (RFC 6455 framing,
masking, close handshake), driven from this object: no task per socket. The channel:

* the uuid frame at once, then the one message frame and close 1000 (§4.1 step 2), or
  close 1001 at expiry (step 3);
* a data frame from the client closes the channel with 1008 (step 4), one over
  ``MAX_CLIENT_FRAME_BYTES`` with 1009; broken framing is 1002, a close reason that is not
  UTF-8 1007 (the library's checks);
* pings are answered within a per-socket budget of control frames (``control_frames``):
  past it the connection is failed with 1008, so a ping flood costs the server a bounded
  amount of work per socket;
* write backpressure: when the kernel stops taking our output the socket is no longer
  read (so no pong piles up), and past ``max_write_buffer_bytes`` unsent it is dropped;
* after its own close frame the server waits ``CLOSE_TIMEOUT_S`` for the client's, then
  aborts the connection (a close that waited for a client that never reads would hold the
  socket forever); shutdown sends 1012.

The life of a socket is one transition table (``TRANSITIONS``); every change of state goes
through ``_go``, synchronously in one callback, so exactly one of delivery, expiry, client
junk, client close or disconnect wins. When a channel ends, every callable in
``Services.channel_ended`` is called with its id and a ``ChannelEnd``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import json
import logging
import os
import urllib.parse
from typing import Any

import httptools
from websockets.frames import Opcode
from websockets.protocol import SEND_EOF, Protocol, Side, State

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.addresses import SocketCounts
from textsecure_provision.server.config import SocketBudgets
from textsecure_provision.server.fanout.base import ChannelId
from textsecure_provision.server.fastpath import in_process, run_eagerly
from textsecure_provision.server.handlers import error_body, provision_error_response
from textsecure_provision.server.routes.channels import (
    CLOSE_CLIENT_SPOKE,
    CLOSE_DELIVERED,
    CLOSE_EXPIRED,
    PATH,
)
from textsecure_provision.server.services import Services, budget_key

log = logging.getLogger(__name__)

MAX_CLIENT_FRAME_BYTES = 4096  # a client has nothing to send (§4.1); larger frames: 1009
CLOSE_TIMEOUT_S = 10.0  # waiting for the client's close frame (or a drained buffer) after ours
INPUT_SLICE_BYTES = 256  # frames are parsed this much at a time, budgets checked in between
CLOSE_POLICY = 1008
CLOSE_RESTARTING = 1012
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_GET = b"GET "
_PATH_BYTES = PATH.encode()
_CONTROL = (Opcode.PING, Opcode.PONG)
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)

# The library logs every closed server connection at INFO; a relay closes thousands.
_ws_log = logging.getLogger("textsecure_provision.server.channel_socket.frames")
_ws_log.propagate = False
_ws_log.setLevel(logging.WARNING)


class Phase(enum.IntEnum):
    HEAD = 0  # reading the first request head
    OPENING = 1  # upgrade accepted; the channel is being registered
    OPEN = 2  # 101 and uuid sent; waiting for the message, expiry or the client
    CLOSING = 3  # our close frame is out (or the connection is being dropped)
    DONE = 4  # the transport is closed or closing; nothing more happens
    HANDED_OVER = 5  # a plain HTTP request: uvicorn's protocol owns the connection


class Event(enum.Enum):
    UPGRADE = "a valid channel upgrade request"
    HTTP = "a request for the ASGI app"
    REFUSE = "an HTTP refusal (4xx/5xx) instead of the upgrade"
    OPENED = "the channel is registered; 101 and uuid sent"
    DELIVER = "the one message arrived (§4.1 step 2)"
    EXPIRE = "the channel's ttl passed (§4.1 step 3)"
    CLIENT_SPOKE = "a data frame from the client (§4.1 step 4)"
    CLIENT_CLOSED = "the client's close frame, or its answer to ours"
    FAIL = "broken framing, a control-frame flood or an unread write buffer"
    SHUTDOWN = "the server is stopping"
    TIMEOUT = "the head, handshake or closing deadline passed"
    LOST = "the TCP connection is gone"


class ChannelEnd(enum.Enum):
    """Why a channel ended (what ``Services.channel_ended`` callbacks receive)."""

    DELIVERED = "delivered"
    EXPIRED = "expired"
    CLIENT_SPOKE = "client sent data"
    CLIENT_CLOSED = "client closed"
    FAILED = "protocol error or budget exceeded"
    SHUTDOWN = "server shutting down"
    LOST = "connection lost"


P, E = Phase, Event
TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (P.HEAD, E.UPGRADE): P.OPENING,
    (P.HEAD, E.HTTP): P.HANDED_OVER,
    (P.HEAD, E.REFUSE): P.DONE,
    (P.HEAD, E.TIMEOUT): P.DONE,
    (P.HEAD, E.SHUTDOWN): P.DONE,
    (P.HEAD, E.LOST): P.DONE,
    (P.OPENING, E.OPENED): P.OPEN,
    (P.OPENING, E.REFUSE): P.DONE,
    (P.OPENING, E.TIMEOUT): P.DONE,
    (P.OPENING, E.SHUTDOWN): P.DONE,
    (P.OPENING, E.LOST): P.DONE,
    (P.OPEN, E.DELIVER): P.CLOSING,
    (P.OPEN, E.EXPIRE): P.CLOSING,
    (P.OPEN, E.CLIENT_SPOKE): P.CLOSING,
    (P.OPEN, E.CLIENT_CLOSED): P.CLOSING,
    (P.OPEN, E.FAIL): P.CLOSING,
    (P.OPEN, E.SHUTDOWN): P.CLOSING,
    (P.OPEN, E.LOST): P.DONE,
    (P.CLOSING, E.CLIENT_CLOSED): P.DONE,
    (P.CLOSING, E.FAIL): P.DONE,
    (P.CLOSING, E.TIMEOUT): P.DONE,
    (P.CLOSING, E.SHUTDOWN): P.DONE,
    (P.CLOSING, E.LOST): P.DONE,
}
# How leaving OPEN ends the channel (delivery: the fan-out's claim already removed it).
_ENDS = {
    E.DELIVER: ChannelEnd.DELIVERED,
    E.EXPIRE: ChannelEnd.EXPIRED,
    E.CLIENT_SPOKE: ChannelEnd.CLIENT_SPOKE,
    E.CLIENT_CLOSED: ChannelEnd.CLIENT_CLOSED,
    E.FAIL: ChannelEnd.FAILED,
    E.SHUTDOWN: ChannelEnd.SHUTDOWN,
    E.LOST: ChannelEnd.LOST,
}


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
    digest = hashlib.sha1(key + _GUID).digest()  # noqa: S324 (the RFC's choice)
    return binascii.b2a_base64(digest, newline=False)  # base64.b64encode, one call less


# -- HTTP answers before the upgrade ---------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


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


def plain_error(status: int, message: str, *extra: tuple[bytes, bytes]) -> bytes:
    body = json.dumps(error_body(status, message), separators=(",", ":")).encode()
    return _http_response(status, _REASONS[status], body, list(extra))


_HEAD_TOO_LARGE = plain_error(431, "the request head is too large")
_HEAD_TIMED_OUT = plain_error(408, "the request head took too long")
_TOO_MANY_SOCKETS = plain_error(503, "too many open connections from your address")


LINGER_S = 2.0  # after a refusal: how long the rest of a request is read and dropped


def answer_and_linger(transport: asyncio.Transport, response: bytes) -> None:
    """Write an HTTP refusal and half-close. What the client still sends is read and
    dropped (the protocol ignores it) until its EOF or ``LINGER_S``: closing with unread
    input would reset the connection, and the client could lose the answer to the reset."""
    if transport.is_closing():
        return
    transport.write(response)
    if transport.can_write_eof():
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, transport.abort)
    else:
        transport.close()


def _token_list(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def check_upgrade(version: str, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """RFC 6455 §4.2.1 on a parsed ``GET`` head (names lowercased): None when it is a valid
    upgrade, else the HTTP refusal to send."""
    if version != "1.1":
        return plain_error(400, "a websocket upgrade needs HTTP/1.1")
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        found.setdefault(name, []).append(value)
    if len(found.get(b"host", ())) != 1:
        return plain_error(400, "a websocket upgrade needs one Host header")
    upgrade = [t for v in found.get(b"upgrade", ()) for t in _token_list(v)]
    connection = [t for v in found.get(b"connection", ()) for t in _token_list(v)]
    if upgrade != [b"websocket"] or b"upgrade" not in connection:
        return plain_error(400, "not a websocket upgrade request")
    if found.get(b"sec-websocket-version") != [b"13"]:
        return plain_error(
            426,
            "this server speaks websocket version 13",
            (b"sec-websocket-version", b"13"),
            (b"upgrade", b"websocket"),
        )
    keys = found.get(b"sec-websocket-key", [])
    try:
        if len(keys) != 1 or len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError(keys)
    except (binascii.Error, ValueError):
        return plain_error(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return None


# -- what the sockets of one server share ---------------------------------------------------------


class Hub:
    """Shared by every socket of one server: services, uvicorn's state, the budgets and the
    per-address socket count."""

    __slots__ = (
        "app_state",
        "budgets",
        "config",
        "connections",
        "eager",
        "loop",
        "proxy",
        "server_state",
        "sockets",
        "svc",
        "tasks",
    )

    def __init__(self, svc: Services, config: Any, server_state: Any, app_state: Any) -> None:
        self.svc = svc
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.budgets: SocketBudgets = svc.config.sockets
        self.sockets = SocketCounts(self.budgets.max_sockets_per_address)
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[Any]] = server_state.tasks
        # Made in uvicorn's protocol factory, so on its loop. Kept: asyncio.get_running_loop()
        # costs a getpid() system call each (CPython 3.11), and a channel called it 3 times.
        self.loop = asyncio.get_running_loop()
        self.eager = in_process(svc)  # the backends are chosen at start and never change
        self.proxy: Any = None
        if getattr(config, "proxy_headers", False):
            # uvicorn's own rules for X-Forwarded-For from trusted proxies (runner.py turns
            # proxy_headers on only with --forwarded-allow-ips).
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            self.proxy = ProxyHeadersMiddleware(_noop_app, config.forwarded_allow_ips)

    def spawn(self, coro: Any) -> None:
        """Run a coroutine as a task that uvicorn waits for on shutdown."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def start(self, coro: Any) -> None:
        """``spawn``, but started at once on this stack when nothing it calls needs a task
        (in-process backends: fastpath.in_process); it becomes a task only if it waits."""
        if self.eager:
            run_eagerly(coro, self.tasks)
        else:
            self.spawn(coro)

    def slot_key(self, transport: asyncio.BaseTransport) -> str | None:
        """The per-address key of a new connection, or None when it is not counted (a
        trusted proxy: it speaks for many clients, and their addresses are in its headers)."""
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if self.proxy is not None and host in self.proxy.trusted_hosts:
            return None
        return budget_key(host)

    def channel_socket(self, slot: str | None) -> ChannelSocket:
        """A channel socket for a connection that already holds its slot (an upgrade on a
        keep-alive connection, from uvicorn_adapter.py)."""
        return ChannelSocket(self, slot, counted=True)

    @staticmethod
    def head_too_large() -> bytes:
        return _HEAD_TOO_LARGE

    @staticmethod
    def head_timed_out() -> bytes:
        return _HEAD_TIMED_OUT


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    return None


class _Factory:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._hub: Hub | None = None

    def hub(self, config: Any, server_state: Any, app_state: Any) -> Hub:
        hub = self._hub
        if hub is None or hub.server_state is not server_state:
            hub = self._hub = Hub(self.svc, config, server_state, app_state)
        return hub


class ChannelHttpFactory(_Factory):
    """uvicorn's ``http=`` setting: every new connection starts as a ``ChannelSocket``."""

    alpn_protocols = None  # as uvicorn's HTTP/1.1 protocols (TLS ALPN is left alone)

    def __call__(
        self, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> asyncio.Protocol:
        return ChannelSocket(self.hub(config, server_state, app_state), None, counted=False)


class ChannelSocketFactory(_Factory):
    """uvicorn's ``ws=`` setting, for uvicorn's own upgrade path (GuardedHttpProtocol takes
    upgrades itself; this is there so that uvicorn knows websockets are served)."""

    def __call__(
        self, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> asyncio.Protocol:
        return ChannelSocket(self.hub(config, server_state, app_state), None, counted=False)


async def _close_channel(svc: Services, channel_id: ChannelId) -> None:
    try:
        await svc.fanout.close_channel(channel_id)
    except Exception:  # the fan-out's own expiry removes it later (fanout/base.py)
        log.warning("could not unregister a closed channel", exc_info=True)


class _HeadComplete(Exception):
    """Raised from the parser's callback to stop httptools at the end of the first head."""


class ChannelSocket(asyncio.Protocol):
    """One connection: its first request head, then (for a channel) the websocket."""

    __slots__ = (
        "_buf",
        "_counted",
        "_due",
        "_head_done",
        "_headers",
        "_hub",
        "_id",
        "_on_due",
        "_parser",
        "_phase",
        "_slot",
        "_timer",
        "_timer_at",
        "_tokens",
        "_tokens_at",
        "_upgrade",
        "_url",
        "_via_http",
        "_ws",
        "transport",
    )

    def __init__(self, hub: Hub, slot: str | None, *, counted: bool) -> None:
        self._hub = hub
        self.transport: asyncio.Transport | None = None
        self._phase = Phase.HEAD
        self._slot = slot  # key in hub.sockets while this object holds the connection's slot
        self._counted = counted
        self._via_http = counted  # an upgrade uvicorn's protocol gave back: never hand it over
        self._buf = b""  # the head so far (HEAD), or client bytes before the channel opened
        self._parser: Any = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._upgrade = False  # httptools saw Connection: upgrade with an Upgrade header
        self._id: ChannelId | None = None
        # One deadline at a time (head, expiry, closing) on one timer handle: _set_deadline.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the armed handle fires
        self._due = 0.0  # when the deadline is
        self._on_due: Any = None  # what runs then; None: no deadline
        self._ws: Protocol | None = None
        self._tokens = 0.0  # the control-frame budget, filled on first use
        self._tokens_at = -1.0

    def _go(self, event: Event) -> bool:
        """Take ``event`` if the table allows it from the current phase; False if not (the
        event lost a race and is ignored). Leaving OPEN ends the channel."""
        old = self._phase
        new = TRANSITIONS.get((old, event))
        if new is None:
            return False
        self._phase = new
        if old is Phase.OPEN and self._id is not None:
            self._channel_ended(_ENDS[event])
        return True

    def _channel_ended(self, how: ChannelEnd) -> None:
        svc = self._hub.svc
        channel_id = self._id
        assert channel_id is not None
        if how is not ChannelEnd.DELIVERED:  # delivery: the fan-out's claim removed it
            self._hub.spawn(_close_channel(svc, channel_id))
        for hook in svc.channel_ended:
            try:
                hook(channel_id, how)
            except Exception:
                log.exception("a channel_ended hook failed")

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        hub = self._hub
        hub.connections.add(self)  # so that uvicorn's shutdown reaches it
        if not self._counted:
            key = hub.slot_key(transport)
            self._counted = True
            if key is not None:
                if not hub.sockets.acquire(key):
                    self._go(Event.REFUSE)
                    self._refuse(_TOO_MANY_SOCKETS)
                    return
                self._slot = key
        budgets = hub.budgets
        transport.set_write_buffer_limits(high=budgets.max_write_buffer_bytes // 2)  # type: ignore[attr-defined]
        self._set_deadline(budgets.head_timeout_s, self._deadline_passed)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is Phase.OPEN or phase is Phase.CLOSING:
            self._on_frames(data)
        elif phase is Phase.HEAD:
            self._on_head(data)
        elif phase is Phase.OPENING:  # the client spoke before it saw the uuid
            if len(self._buf) + len(data) > MAX_CLIENT_FRAME_BYTES * 2:
                self._abort()
            else:
                self._buf += data

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def pause_writing(self) -> None:
        # The client does not read what we send: stop reading what it sends (no more pongs
        # pile up); past the bound, _flush drops the connection.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._phase is Phase.HANDED_OVER:  # pragma: no cover - the new protocol is called
            return
        was_open = self._id is not None  # OPENED happened: the gauge counted this channel
        self._go(Event.LOST)
        self._phase = Phase.DONE
        self._hub.connections.discard(self)
        self._cancel_timer()
        self._release_slot()
        self._ws = None
        self._parser = None
        self._id = None
        if was_open:
            self._hub.svc.metrics.open_channels -= 1

    # -- uvicorn's graceful shutdown -----------------------------------------------------------
    def shutdown(self) -> None:
        phase = self._phase
        if phase is Phase.OPENING:
            self._go(Event.SHUTDOWN)
            self._refuse(plain_error(503, "the server is shutting down"))
        elif phase is Phase.OPEN:
            self._go(Event.SHUTDOWN)
            self._send_close(CLOSE_RESTARTING)
            self._close_transport()
        elif phase in (Phase.HEAD, Phase.CLOSING):
            self._go(Event.SHUTDOWN)
            self._close_transport()

    # -- the first request head ------------------------------------------------------------------
    def _on_head(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        parser = self._parser
        if parser is None:
            if not (buf.startswith(_GET) if len(buf) >= 4 else _GET.startswith(buf)):
                self._hand_over(buf)  # not a GET, so not an upgrade: decided on byte one
                return
            if len(buf) < 4:
                self._buf = buf
                return
            parser = self._parser = httptools.HttpRequestParser(self)
            fed = buf
        else:
            fed = data
        try:
            parser.feed_data(fed)
        except httptools.HttpParserError:  # also _HeadComplete, from on_headers_complete
            if not self._head_done:
                self._go(Event.REFUSE)
                self._refuse(plain_error(400, "malformed request"))
                return
        if not self._head_done:
            if len(buf) > self._hub.budgets.max_head_bytes:
                self._go(Event.REFUSE)
                self._refuse(_HEAD_TOO_LARGE)
            else:
                self._buf = buf
            return
        # httptools accepts only CRLF line ends, so the head ends at the first blank line.
        tail = buf[buf.index(b"\r\n\r\n") + 4 :] if self._upgrade else None
        self._on_head_complete(buf, tail)

    # httptools callbacks (the parser lives only until the head is complete)
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._upgrade = bool(self._parser.should_upgrade())
        raise _HeadComplete  # stop here: what follows is the next request, or frames

    def _on_head_complete(self, buf: bytes, tail: bytes | None) -> None:
        parser, self._parser = self._parser, None
        headers, self._headers = self._headers, []
        url, self._url = self._url, b""
        head_size = len(url) + sum(len(name) + len(value) + 4 for name, value in headers)
        if head_size > self._hub.budgets.max_head_bytes:
            self._go(Event.REFUSE)
            self._refuse(_HEAD_TOO_LARGE)
            return
        upgrade = [t for name, v in headers if name == b"upgrade" for t in _token_list(v)]
        asks_upgrade = bool(upgrade) or any(
            name == b"connection" and b"upgrade" in _token_list(value) for name, value in headers
        )
        if url == _PATH_BYTES:  # the usual request: no query, no escapes to decode
            path = PATH
        else:
            try:
                path = urllib.parse.unquote(httptools.parse_url(url).path.decode("ascii"))
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                path = ""
        if not asks_upgrade or (path != PATH and b"websocket" not in upgrade):
            self._hand_over(buf)  # a plain GET (the channel path answers 426 from the route)
            return
        self._buf = b""
        if path != PATH:
            self._go(Event.REFUSE)
            self._refuse(plain_error(404, "no websocket endpoint here"))
            return
        refusal = check_upgrade(parser.get_http_version(), headers)
        if refusal is None and tail is None:  # httptools did not see an upgrade either
            refusal = plain_error(400, "not a websocket upgrade request")
        if refusal is None and self._hub.svc.stopping:
            refusal = plain_error(503, "the server is shutting down")
        if refusal is not None:
            self._go(Event.REFUSE)
            self._refuse(refusal)
            return
        key = next(value for name, value in headers if name == b"sec-websocket-key")
        self._go(Event.UPGRADE)
        self._buf = tail or b""
        self._hub.start(self._open(key, headers))

    def _hand_over(self, buf: bytes) -> None:
        """Give the connection to uvicorn's HTTP protocol as if it had accepted it."""
        from textsecure_provision.server.fastpath import relay_http_protocol

        hub = self._hub
        if self._via_http:  # pragma: no cover - uvicorn only gives back websocket upgrades
            self._go(Event.REFUSE)
            self._refuse(plain_error(400, "not a websocket upgrade request"))
            return
        self._go(Event.HTTP)
        self._cancel_timer()
        self._parser = None
        self._buf = b""
        self._headers = []
        slot, self._slot = self._slot, None
        http = relay_http_protocol()(
            hub.config, hub.server_state, hub.app_state, hub=hub, slot=slot
        )
        hub.connections.discard(self)
        transport = self.transport
        assert transport is not None
        http.connection_made(transport)
        transport.set_protocol(http)  # before its data: an upgrade there sets its own protocol
        http.data_received(buf)

    # -- the opening handshake -------------------------------------------------------------------
    async def _open(self, key: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        hub = self._hub
        svc = hub.svc
        try:
            address = await self._client_address(headers)
            await svc.limits.enforce("channel_create_address", address)
            channel_id = svc.fanout.route_channel_id(new_channel_id())
            ttl = svc.config.channel_ttl_s
            # Registered before the uuid leaves, so a PUT right after it finds the channel.
            await svc.fanout.open_channel(channel_id, self.deliver, ttl)
        except ProvisionError as exc:  # 429, or 503 when the fan-out is down
            if self._go(Event.REFUSE):
                self._refuse(_error_response(exc))
            return
        except Exception:
            log.exception("could not open a channel")
            svc.metrics.internal_errors += 1
            if self._go(Event.REFUSE):
                self._refuse(plain_error(500, "internal error"))
            return
        if not self._go(Event.OPENED):  # the client left, shutdown or the deadline, meanwhile
            await _close_channel(svc, channel_id)
            return
        self._id = channel_id
        svc.metrics.channels_opened += 1
        svc.metrics.open_channels += 1
        ws = self._ws = Protocol(
            Side.SERVER, state=State.OPEN, max_size=MAX_CLIENT_FRAME_BYTES, logger=_ws_log
        )
        ws.send_text(f'{{"uuid":"{channel_id}"}}'.encode())  # the id is [0-9a-f-]: no escaping
        self._flush(  # the 101 and the uuid frame in one write
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + accept_key(key) + b"\r\n\r\n"
        )
        self._set_deadline(ttl, self._expire)  # instead of the handshake deadline
        if self._buf:  # the client spoke before it saw the uuid
            early, self._buf = self._buf, b""
            self._on_frames(early)

    async def _client_address(self, headers: list[tuple[bytes, bytes]]) -> str:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        if self._hub.proxy is not None:
            scope: dict[str, Any] = {"type": "websocket", "client": client, "headers": headers}
            await self._hub.proxy(scope, None, None)  # rewrites scope["client"] if trusted
            client = scope["client"]
        return str(client[0]) if client else "unknown"

    def _refuse(self, response: bytes) -> None:
        """An HTTP answer instead of the upgrade, then close (the phase is already DONE)."""
        self._hub.connections.discard(self)
        self._cancel_timer()
        self._parser = None
        self._buf = b""
        if self.transport is not None:
            answer_and_linger(self.transport, response)

    def _deadline_passed(self) -> None:
        """The head/handshake deadline (HEAD, OPENING) or the closing one (CLOSING)."""
        phase = self._phase
        if not self._go(Event.TIMEOUT):
            return
        if phase is Phase.HEAD:
            self._refuse(_HEAD_TIMED_OUT)
        elif phase is Phase.OPENING:
            self._refuse(plain_error(503, "the channel could not be opened in time"))
        else:  # CLOSING: the client never answered our close, or never read it
            self._abort()

    # -- the channel -----------------------------------------------------------------------------
    async def deliver(self, frame: str) -> bool:
        """The fan-out sink: the one message frame, then close 1000 (§4.1 step 2)."""
        if self._phase is not Phase.OPEN or self.transport is None or self.transport.is_closing():
            return False
        self._go(Event.DELIVER)
        ws = self._ws
        assert ws is not None
        ws.send_text(frame.encode())
        # Nothing else is queued (pongs leave as they are made): the message and close 1000
        # in one write, one system call and one packet.
        self._start_closing(CLOSE_DELIVERED, join=True)
        return True

    def _expire(self) -> None:
        """Timer callback: close 1001 (§4.1 step 3)."""
        if self._go(Event.EXPIRE):
            self._hub.svc.metrics.channels_expired += 1
            self._start_closing(CLOSE_EXPIRED)

    def _start_closing(self, code: int, *, join: bool = False) -> None:
        """Our close frame, then up to CLOSE_TIMEOUT_S for the client's."""
        self._send_close(code, join=join)
        if self._phase is Phase.CLOSING:
            self._set_deadline(CLOSE_TIMEOUT_S, self._deadline_passed)  # instead of expiry
        else:
            self._cancel_timer()

    def _send_close(self, code: int, *, join: bool = False) -> None:
        ws = self._ws
        if ws is not None and ws.state is State.OPEN:
            ws.send_close(code)
        self._flush(join=join)

    # -- client frames ---------------------------------------------------------------------------
    def _on_frames(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        for start in range(0, len(data), INPUT_SLICE_BYTES):
            ws.receive_data(data[start : start + INPUT_SLICE_BYTES])
            for frame in ws.events_received():
                op = frame.opcode
                if op in _CONTROL:
                    if not self._spend_control_frame():
                        # The library has already queued a pong for every ping of this
                        # slice: drop them with the connection, so the flood gets nothing.
                        ws.data_to_send()
                        self._go(Event.FAIL)
                        ws.fail(CLOSE_POLICY, "too many control frames")
                        break
                elif op is Opcode.CLOSE:
                    self._go(Event.CLIENT_CLOSED)  # the library answers it, then EOF
                elif op in _DATA and self._go(Event.CLIENT_SPOKE):
                    code = CLOSE_CLIENT_SPOKE
                    ws.send_close(code)
                    self._set_deadline(CLOSE_TIMEOUT_S, self._deadline_passed)
            if ws.parser_exc is not None:  # broken framing: the library failed the connection
                self._go(Event.FAIL)
            self._flush()
            if self._phase is Phase.DONE or self.transport is None:
                return

    def _spend_control_frame(self) -> bool:
        """The per-socket token bucket of control frames (pings, pongs)."""
        rule = self._hub.budgets.control_frames
        if rule is None:
            return True
        now = self._hub.loop.time()
        if self._tokens_at < 0:
            self._tokens, self._tokens_at = float(rule.count), now
        else:
            refill = (now - self._tokens_at) * rule.count / rule.period_s
            self._tokens = min(float(rule.count), self._tokens + refill)
            self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # -- plumbing ----------------------------------------------------------------------------------
    def _flush(self, head: bytes = b"", *, join: bool = False) -> None:
        """Write what the websocket protocol has queued, frame by frame (joining frames
        changed how a pong flood meets the write-buffer bound: test_hostile_sockets);
        ``head`` (the 101) goes in one write with the first frame (the uuid), and ``join``
        puts all in one write (the delivery: the message and the close). Its
        end-of-stream closes TCP."""
        ws = self._ws
        if ws is None:
            return
        eof = False
        chunks = [head] if head else []
        for chunk in ws.data_to_send():
            if chunk is SEND_EOF or not chunk:
                eof = True
            else:
                chunks.append(chunk)
        if join and len(chunks) > 1:
            chunks = [b"".join(chunks)]
        elif head and chunks:  # the handshake and the uuid frame: one write, one packet
            first = chunks.pop(0)
            chunks[0:1] = [first + chunks[0]] if chunks else [first]
        for chunk in chunks:
            self._write(chunk)
        if eof:
            if self._phase is Phase.CLOSING:
                self._go(Event.CLIENT_CLOSED if ws.close_rcvd is not None else Event.FAIL)
            self._close_transport()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self._hub.budgets.max_write_buffer_bytes:
            # The client reads nothing of what it provokes: drop it, with its buffer.
            while self._go(Event.FAIL):  # OPEN → CLOSING → DONE
                pass
            self._abort()

    def _close_transport(self) -> None:
        """Close; a client that does not read what is left is aborted after the deadline."""
        self._cancel_timer()
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.close()
            self._set_deadline(CLOSE_TIMEOUT_S, self._abort)
        else:
            transport.close()

    def _abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _set_deadline(self, delay_s: float, callback: Any) -> None:
        """Run ``callback`` in ``delay_s``, instead of what the last deadline would have run.
        A later deadline keeps the armed handle, which re-arms itself when it fires early
        (_timer_fired); only an earlier one replaces it. A rendezvous's deadlines only move
        later (head, expiry, closing): one timer instead of three (creating and cancelling
        uvloop timers cost 6% of the server's CPU per rendezvous)."""
        loop = self._hub.loop
        due = loop.time() + delay_s
        self._due, self._on_due = due, callback
        timer = self._timer
        if timer is not None:
            if self._timer_at <= due:
                return
            timer.cancel()
        self._timer = loop.call_at(due, self._timer_fired)
        self._timer_at = due

    def _timer_fired(self) -> None:
        self._timer = None
        callback = self._on_due
        if callback is None:
            return
        loop = self._hub.loop
        if self._due - loop.time() > 0.001:  # the deadline moved later since this was armed
            self._timer = loop.call_at(self._due, self._timer_fired)
            self._timer_at = self._due
            return
        self._on_due = None
        callback()

    def _cancel_timer(self) -> None:
        self._on_due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release_slot(self) -> None:
        if self._slot is not None:
            self._hub.sockets.release(self._slot)
            self._slot = None
