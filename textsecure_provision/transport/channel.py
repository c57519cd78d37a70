"""The secondary's end of the temp websocket (§4.1).

The server speaks first with ``{"uuid": U}``, later relays at most one
``{"message": "<b64 DeviceInit>"}`` and closes (1000), or closes with 1001
when the channel expires. ``TempChannel.open`` returns once the uuid is known;
``receive`` returns the DeviceInit bytes, or ``None`` for "expired": the caller
then opens a new channel with a new key (§4.1 step 3).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from textsecure_provision.deadlines import within
from textsecure_provision.errors import (
    InvalidInputError,
    MessageFormatError,
    ProvisionError,
    RateLimitedError,
    RemoteProtocolError,
    ServerDegradedError,
    ServerRefusedError,
    ServerUnreachableError,
)
from textsecure_provision.protocol.bodies import ChannelDelivery, ChannelOpened, decode
from textsecure_provision.protocol.link import parse_channel_id
from textsecure_provision.transport.tls import make_ssl_context

CHANNEL_PATH = "/v1/temp_websocket"
OPEN_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 1024 * 1024  # a DeviceInit is ~200 bytes; bodies are capped at 256 KiB (§4)
CLOSE_NORMAL = 1000  # the server relayed the message (§4.1 step 2)
CLOSE_GOING_AWAY = 1001  # the server expired the channel (§4.1 step 3)
DEFAULT_RETRY_AFTER_S = 60

# websockets logs every frame at DEBUG, the DeviceInit included: never let a body reach a log.
_WS_LOG = logging.getLogger(__name__ + ".frames")
_WS_LOG.setLevel(logging.WARNING)


def channel_url(server_url: str) -> str:
    """``http(s)://host[:port]`` → ``ws(s)://host[:port]/v1/temp_websocket``."""
    if server_url.startswith("https://"):
        return "wss://" + server_url[len("https://") :].rstrip("/") + CHANNEL_PATH
    if server_url.startswith("http://"):
        return "ws://" + server_url[len("http://") :].rstrip("/") + CHANNEL_PATH
    raise InvalidInputError("the server URL must start with http:// or https://")


class TempChannel:
    """One open channel. ``uuid`` is the server's name for it (lowercase canonical)."""

    def __init__(self, ws: ClientConnection, uuid: str) -> None:
        self._ws = ws
        self.uuid = uuid

    @classmethod
    async def open(
        cls, server_url: str, *, ca_file: str | None = None, open_timeout_s: float = OPEN_TIMEOUT_S
    ) -> TempChannel:
        url = channel_url(server_url)
        ssl_context: ssl.SSLContext | None = (
            make_ssl_context(ca_file) if url.startswith("wss:") else None
        )
        try:
            ws = await connect(
                url,
                ssl=ssl_context,
                open_timeout=open_timeout_s,
                max_size=MAX_FRAME_BYTES,
                proxy=None,
                logger=_WS_LOG,
            )
        except InvalidStatus as exc:
            raise _status_error(exc) from exc
        except InvalidURI as exc:
            raise InvalidInputError(f"the server URL {server_url} is not usable") from exc
        except ssl.SSLCertVerificationError as exc:
            raise ServerUnreachableError(
                f"the TLS certificate of {server_url} could not be verified ({exc.verify_message})"
            ) from exc
        except ssl.SSLError as exc:  # e.g. TLS spoken to a plain-HTTP port
            raise ServerUnreachableError(f"the TLS connection to {server_url} failed") from exc
        except TimeoutError as exc:
            raise ServerUnreachableError(
                f"opening a channel: no answer from {server_url} within {open_timeout_s:.0f} s"
            ) from exc
        except InvalidHandshake as exc:  # it answered, but not as a channel server
            raise RemoteProtocolError(
                f"opening a channel: {server_url} did not accept a websocket "
                f"({type(exc).__name__}); is it a provision server?"
            ) from exc
        except OSError as exc:
            reason = _os_failure(exc, server_url)
            raise ServerUnreachableError(f"opening a channel: {reason}") from exc
        try:
            frame = await within(ws.recv(), open_timeout_s)
            uuid = _parse_uuid_frame(frame)
        except BaseException as exc:
            await ws.close()
            if isinstance(exc, TimeoutError):
                raise RemoteProtocolError(
                    f"the server {server_url} did not name the channel in time"
                ) from exc
            if isinstance(exc, ConnectionClosed):
                raise ServerUnreachableError(
                    f"the server {server_url} closed the channel before naming it"
                ) from exc
            raise
        return cls(ws, uuid)

    async def receive(self) -> bytes | None:
        """The DeviceInit, or None if the server expired the channel (close 1001)."""
        try:
            frame = await self._ws.recv()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == CLOSE_GOING_AWAY:
                return None
            if code == CLOSE_NORMAL:
                raise ServerRefusedError("the server closed the channel without a message") from exc
            raise ServerUnreachableError("lost the connection to the server's channel") from exc
        body = _parse_message_frame(frame)
        await self.close()  # one message per channel (§4.1): anything after it is ignored
        return body

    async def close(self) -> None:
        await self._ws.close()

    async def __aenter__(self) -> TempChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


T = TypeVar("T")


def _os_failure(exc: OSError, server_url: str) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot find the host of {server_url} (DNS: {exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {server_url}: connection refused (is the server running?)"
    if exc.strerror:
        return f"cannot connect to {server_url}: {exc.strerror}"
    return f"cannot connect to {server_url} ({type(exc).__name__})"


def _frame(frame: str | bytes, kind: type[T], what: str) -> T:
    # surrogatepass: a lone surrogate becomes bytes msgspec refuses, not a UnicodeEncodeError
    raw = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    try:
        return decode(raw, kind)
    except MessageFormatError as exc:
        raise RemoteProtocolError(
            f"the server's {what} frame is malformed ({exc.message})"
        ) from None


def _parse_uuid_frame(frame: str | bytes) -> str:
    opened = _frame(frame, ChannelOpened, "first")
    try:
        return parse_channel_id(opened.uuid)
    except ProvisionError as exc:
        raise RemoteProtocolError("the server's channel uuid is not a canonical uuid") from exc


def _parse_message_frame(frame: str | bytes) -> bytes:
    return _frame(frame, ChannelDelivery, "message").message


def _status_error(exc: InvalidStatus) -> ProvisionError:
    status = exc.response.status_code
    value = exc.response.headers.get("Retry-After", "")
    ok = value.isascii() and value.isdigit() and len(value) <= 9  # int() of 5000 digits raises
    if status == 429:
        retry = int(value) if ok else DEFAULT_RETRY_AFTER_S
        return RateLimitedError(
            f"opening a channel: the server refused (HTTP {status})", retry_after=retry
        )
    if status < 400:  # it answered, but did not switch to a websocket
        return RemoteProtocolError(
            f"opening a channel: the server did not accept a websocket (HTTP {status}); "
            "is it a provision server?"
        )
    if status == 503:
        return ServerDegradedError(
            f"opening a channel: the server is degraded (HTTP {status})",
            retry_after=int(value) if ok else None,
        )
    if status >= 500:
        return ServerUnreachableError(f"opening a channel: the server failed (HTTP {status})")
    return ServerRefusedError(f"opening a channel: the server refused (HTTP {status})")
