"""B7's floor: the rendezvous bytes of PROTOCOL.md §4.1 served by raw asyncio on uvloop.

A benchmark-only server, never part of the product: no framework, no HTTP
library, no storage, no metrics, no logging, no limits; the credential check
is a dict lookup. What it still does, because our server must do it too and a
floor that skipped it would flatter itself:

* the websocket upgrade: request line, headers, ``Sec-WebSocket-Key`` checked
  (16 bytes of base64), ``Sec-WebSocket-Accept`` computed (SHA-1), 101 sent;
* the ``{"uuid": …}`` text frame with a fresh random (v4) uuid;
* ``PUT /v1/messages/{uuid}`` on a keep-alive connection: headers, body by
  ``Content-Length``, HTTP Basic parsed and looked up, the body parsed as
  JSON, exactly one message whose ``body`` is strict base64, 200 ``{}``
  (404 when the channel is gone, 401 on a bad credential, 400 on bad JSON);
* the ``{"message": …}`` frame and close 1000 on the channel, the client's
  close frame read (masked, as RFC 6455 says) and the TCP connection closed.

Same generator (``loadgen.py``, ``bench_rendezvous.Ours``) as our server, so
the CPU per rendezvous of the two is comparable in one run.

Run alone: python benchmarks/floor.py --port-file PATH --number N --password P
(it writes ``http://127.0.0.1:PORT\\n`` to PATH when it listens).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHANNEL_LINE = b"GET /v1/temp_websocket "
_PUT_PREFIX = b"PUT /v1/messages/"
_CLOSE_1000 = b"\x88\x02\x03\xe8"
_MAX_HEAD = 16 * 1024


def _frame(data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + data


def _new_uuid() -> str:
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _response(status: bytes, body: bytes, close: bool = False) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode() + (b"\r\nconnection: close" if close else b"")
        + b"\r\n\r\n" + body
    )  # fmt: skip


class Floor(asyncio.Protocol):
    """One connection: either a channel websocket or a keep-alive HTTP connection."""

    channels: ClassVar[dict[str, Floor]] = {}
    credentials: ClassVar[dict[bytes, bool]] = {}  # the Basic token (base64 of "number:password")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.channel: str | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            self.channels.pop(self.channel, None)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:  # the channel's close sent: wait for the client's close frame
            self._after_close(data)
            return
        buf = self.buffer + data if self.buffer else data
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            lines = head.split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4 : end + 4 + length]
            buf = buf[end + 4 + length :]
            request_line = lines[0]
            if request_line.startswith(_CHANNEL_LINE):
                self._upgrade(headers)
                buf = b""
                break
            if request_line.startswith(_PUT_PREFIX):
                self._put(request_line, headers, body)
            else:
                self._write(_response(b"404 Not Found", b'{"code":404}'))
        if len(buf) > _MAX_HEAD:
            self._write(_response(b"431 Request Header Fields Too Large", b"{}", close=True))
            assert self.transport is not None
            self.transport.close()
            return
        self.buffer = buf

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _upgrade(self, headers: dict[bytes, bytes]) -> None:
        key = headers.get(b"sec-websocket-key", b"")
        try:
            ok = (
                len(base64.b64decode(key, validate=True)) == 16
                and headers.get(b"sec-websocket-version") == b"13"
                and headers.get(b"upgrade", b"").lower() == b"websocket"
            )
        except binascii.Error:
            ok = False
        if not ok:
            self._write(_response(b"400 Bad Request", b'{"code":400}', close=True))
            assert self.transport is not None
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # RFC 6455's choice
        channel = _new_uuid()
        self.channel = channel
        self.channels[channel] = self
        self._write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade"
            b"\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            + _frame(b'{"uuid":"' + channel.encode() + b'"}')
        )  # fmt: skip

    def _put(self, request_line: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        auth = headers.get(b"authorization", b"")
        if not auth.startswith(b"Basic ") or auth[6:] not in self.credentials:
            self._write(_response(b"401 Unauthorized", b'{"code":401}'))
            return
        target = request_line[len(_PUT_PREFIX) :].split(b" ", 1)[0].decode().lower()
        try:
            items = json.loads(body)["messages"]
            if len(items) != 1:
                raise ValueError("one message")
            text = items[0]["body"]
            base64.b64decode(text, validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            self._write(_response(b"400 Bad Request", b'{"code":400}'))
            return
        sink = self.channels.pop(target, None)
        if sink is None:
            self._write(_response(b"404 Not Found", b'{"code":404}'))
            return
        sink.deliver(_frame(b'{"message":"' + text.encode() + b'"}'))
        self._write(_response(b"200 OK", b"{}"))

    def deliver(self, frame: bytes) -> None:
        self.channel = None
        self.closing = True
        self._write(frame + _CLOSE_1000)

    def _after_close(self, data: bytes) -> None:
        """The client's close frame (masked: 2 head bytes, 4 key bytes, payload) ends it."""
        self.buffer += data
        if len(self.buffer) >= 2 and (self.buffer[0] & 0x0F) == 0x8:
            n = self.buffer[1] & 0x7F
            if len(self.buffer) >= 6 + n and self.transport is not None:
                self.transport.close()


async def serve(args: argparse.Namespace) -> None:
    token = base64.b64encode(f"{args.number}:{args.password}".encode())
    Floor.credentials[token] = True
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    Path(args.port_file).write_text(f"http://127.0.0.1:{port}\n")
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--number", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
