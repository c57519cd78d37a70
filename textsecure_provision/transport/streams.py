"""httpx's transport for this client: HTTP/1.1 over asyncio streams, parsed by h11.

httpx's own transport is httpcore, which runs on anyio: without them a ``master scan``
process executes ~120 million fewer instructions (callgrind; 12 % of it, all on the link's
timed path, B2), which went to features this client does not use (HTTP/2, trio, SOCKS,
connection pools shared between tasks by anyio locks). This transport does what the API
needs: keep-alive connections per origin, one request at a time on each (concurrent
requests open more), TLS with the caller's context and the URL's host name checked, and
httpx's own exception classes, so ``transport_error`` names every failure as before:
``ConnectError``/``ConnectTimeout`` (their causes kept: DNS, refusal, TLS),
``ReadTimeout``/``WriteTimeout``, ``ReadError``/``WriteError``, and ``RemoteProtocolError``
for an answer that is not HTTP or a connection closed before it ended ("Server
disconnected ...", as httpcore says).

Answers are read whole (every answer of the API is a small JSON document), at most
``MAX_ANSWER_BYTES``; a head over ``MAX_HEAD_BYTES`` (httpcore's limit) is a protocol
error. A connection is reused only after a complete exchange, within ``keepalive_expiry``
seconds, and never after a cancelled or failed request. Proxies from the environment are
still honoured: httpx mounts its own transport for them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any, TypeVar

import h11

from textsecure_provision.deadlines import within
from textsecure_provision.transport.lean_httpx import httpx

MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_HEAD_BYTES = 100 * 1024  # an answer's head, as httpcore allows
READ_CHUNK = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
T = TypeVar("T")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.idle_since = time.monotonic()

    def usable(self, expiry: float) -> bool:
        return (
            time.monotonic() - self.idle_since < expiry
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: httpx.Request, timeouts: dict[str, Any]) -> httpx.Response:
        body = await request.aread()
        head = h11.Request(
            method=request.method,
            target=request.url.raw_path,
            headers=list(request.headers.raw),
        )
        try:
            data = self.h11.send(head) or b""
            if body:
                data += self.h11.send(h11.Data(data=body)) or b""
            data += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        await self._write(data, timeouts.get("write"))
        status, reason, headers, content = await self._read_answer(timeouts.get("read"))
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.idle_since = time.monotonic()
            return True
        return False

    async def _write(self, data: bytes, timeout: float | None) -> None:
        try:
            self.writer.write(data)
            await within(self.writer.drain(), timeout)
        except TimeoutError as exc:
            raise httpx.WriteTimeout("sending the request timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def _read_answer(
        self, timeout: float | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        answer: h11.Response | None = None
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is h11.NEED_DATA:
                await self._receive(timeout)
            elif isinstance(event, h11.Response):
                answer = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_ANSWER_BYTES:
                    raise httpx.RemoteProtocolError("the answer is too large")
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert answer is not None
                return answer.status_code, answer.reason, list(answer.headers), b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            # InformationalResponse (1xx): skipped; the final answer follows

    async def _receive(self, timeout: float | None) -> None:
        # httpx's read timeout: the longest wait for the next bytes, not for the whole answer
        try:
            chunk = await within(self.reader.read(READ_CHUNK), timeout)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("the answer did not come in time") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        if not chunk and self.h11.their_state is h11.SEND_RESPONSE:  # httpcore's words
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        try:
            self.h11.receive_data(chunk)
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc


class StreamTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin on asyncio streams (see the module doc)."""

    def __init__(self, ssl_context: ssl.SSLContext, *, keepalive_expiry: float) -> None:
        self.ssl_context = ssl_context
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"the URL scheme {url.scheme!r} is not supported")
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        conn = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"))
        try:
            response = await conn.exchange(request, timeouts)
        except BaseException:  # cancelled or failed mid-exchange: the connection is spent
            conn.close()
            raise
        if conn.reusable():
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
        return response

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            conn = idle.pop()
            if conn.usable(self.keepalive_expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = scheme == "https"
        try:
            reader, writer = await within(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=self.ssl_context if tls else None,
                    server_hostname=host if tls else None,
                    limit=READ_CHUNK,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting timed out") from exc
        except OSError as exc:  # refused, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
