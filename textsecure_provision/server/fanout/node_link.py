"""A node's own Redis link for channel deliveries: ``PUBLISH`` and one subscribed topic.

Why not redis-py here (it still serves the mailbox wake-ups and the limits):
a cross-node rendezvous is two ``PUBLISH`` and two received messages, and
redis-py's asyncio client spent ~0.7 ms of node CPU on them per rendezvous
(connection pool with its condition, retry wrapper, the parser's timeouts, a
``get_message`` call per message; profiled in B8, docs/performance.md). This
is plain RESP2 over two ``asyncio.Protocol`` connections:

* the *command* connection pipelines: every ``PUBLISH`` of one event-loop
  turn goes out in one write, and replies resolve their futures in order;
* the *subscriber* connection SUBSCRIBEs the node's topic and hands each
  message to ``on_message`` synchronously, from ``data_received``.

``start`` connects both (AUTH and SELECT from the URL) and returns once Redis
has confirmed the subscription. A supervisor task pings the subscriber every
``PING_INTERVAL_S``; a lost connection or an unanswered ping takes the link
down (``up`` False, ``on_down`` called, pending commands fail with
``ConnectionError``) and it reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 3.0
PING_INTERVAL_S = 5.0
RECONNECT_MAX_S = 2.0
MAX_REPLY_BYTES = 1 << 20  # our replies are integers and small arrays; more is a broken link


class RespError(Exception):
    """An error reply (``-ERR …``) from Redis."""


def encode_command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Any, int] | None:
    """One RESP2 value at ``pos``: (value, next position), or None when incomplete. Bulk
    strings are decoded as UTF-8 (all we send and receive is text)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    if kind == b"+":
        return line.decode(), end + 2
    if kind == b"-":
        return RespError(line.decode(errors="replace")), end + 2
    if kind == b":":
        return int(line), end + 2
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, end + 2
        if len(buf) < end + 2 + n + 2:
            return None if n <= MAX_REPLY_BYTES else _too_big()
        return bytes(buf[end + 2 : end + 2 + n]).decode(), end + 2 + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(n):
            got = parse_reply(buf, pos)
            if got is None:
                return None
            items.append(got[0])
            pos = got[1]
        return items, pos
    raise ConnectionError(f"not RESP: {bytes(buf[pos : pos + 16])!r}")


def _too_big() -> NoReturn:
    raise ConnectionError("a Redis reply over 1 MiB")


class _Resp(asyncio.Protocol):
    """One connection: commands out (coalesced per loop turn), replies in order; once
    subscribed, every value Redis sends goes to ``on_push`` instead."""

    def __init__(self, on_push: Callable[[Any], None] | None) -> None:
        self.on_push = on_push
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.replies: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        while self.replies:
            fut = self.replies.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("the Redis connection closed"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                got = parse_reply(buf, pos)
                if got is None:
                    break
                value, pos = got
                if self.on_push is not None and not self.replies:
                    self.on_push(value)
                elif self.replies:
                    fut = self.replies.popleft()
                    if not fut.done():
                        if isinstance(value, RespError):
                            fut.set_exception(value)
                        else:
                            fut.set_result(value)
        except (ConnectionError, ValueError) as exc:
            log.warning("redis node link: %s", exc)
            self.abort()
            return
        del buf[:pos]
        if len(buf) > MAX_REPLY_BYTES:
            self.abort()

    def command(self, *args: str | bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.transport is None or self.transport.is_closing():
            fut.set_exception(ConnectionError("the Redis connection is closed"))
            return fut
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(encode_command(*args))
        self.replies.append(fut)
        return fut

    def send_only(self, *args: str | bytes) -> None:
        """A command whose answer comes as a push (SUBSCRIBE, PING in subscribed mode)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_command(*args))

    def _flush(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _discard(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # read, so that asyncio does not log it as never retrieved


class NodeLink:
    """``PUBLISH`` to any topic and receive one topic's messages (see the module docstring)."""

    def __init__(
        self,
        url: str,
        topic: str,
        on_message: Callable[[str], None],
        on_down: Callable[[], None],
    ) -> None:
        self.url = url
        self.topic = topic
        self.on_message = on_message
        self.on_down = on_down
        self.up = False
        self._cmd: _Resp | None = None
        self._sub: _Resp | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._pong: asyncio.Event = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None

    async def start(self, timeout: float) -> None:
        """Connect; returns once the topic is subscribed, or raises ``ConnectionError``."""
        self._first = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        try:
            await asyncio.wait_for(asyncio.shield(self._first), timeout)
        except TimeoutError:
            await self.close()
            raise ConnectionError("Redis did not confirm the node topic") from None

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        self._drop()

    async def publish(self, topic: str, data: str) -> int:
        """``PUBLISH``; the number of subscribers that got it. ``ConnectionError`` when the
        link is down or Redis does not answer in time."""
        return int(await self.command("PUBLISH", topic, data))

    async def command(self, *args: str) -> Any:
        """One command's reply (pipelined with the others of this loop turn)."""
        cmd = self._cmd
        if not self.up or cmd is None:
            raise ConnectionError("the Redis node link is down")
        try:
            return await asyncio.wait_for(cmd.command(*args), COMMAND_TIMEOUT_S)
        except TimeoutError:
            cmd.abort()  # a stuck connection: the supervisor reconnects
            raise ConnectionError(f"Redis did not answer a {args[0]}") from None

    def fire(self, *args: str) -> None:
        """A command whose reply nobody waits for (best effort: dropped if the link is
        down; its reply, or error, is read and discarded in order)."""
        cmd = self._cmd
        if self.up and cmd is not None:
            cmd.command(*args).add_done_callback(_discard)

    # -- connections -------------------------------------------------------------------------
    async def _connect(self, on_push: Callable[[Any], None] | None) -> _Resp:
        parts = urlsplit(self.url)
        loop = asyncio.get_running_loop()
        factory = lambda: _Resp(on_push)  # noqa: E731
        if parts.scheme == "unix":
            coro = loop.create_unix_connection(factory, unquote(parts.path))
        else:
            context = ssl.create_default_context() if parts.scheme == "rediss" else None
            coro = loop.create_connection(
                factory, parts.hostname or "127.0.0.1", parts.port or 6379, ssl=context
            )
        _, proto = await asyncio.wait_for(coro, CONNECT_TIMEOUT_S)
        try:
            if parts.password is not None:
                auth = [unquote(parts.username)] if parts.username else []
                await self._ask(proto, "AUTH", *auth, unquote(parts.password))
            db = parts.path.strip("/") if parts.scheme != "unix" else ""
            db = db or parse_qs(parts.query).get("db", [""])[0]
            if db and db != "0":
                await self._ask(proto, "SELECT", db)
        except BaseException:
            proto.abort()
            raise
        return proto

    @staticmethod
    async def _ask(proto: _Resp, *args: str) -> Any:
        return await asyncio.wait_for(proto.command(*args), COMMAND_TIMEOUT_S)

    def _on_push(self, value: Any) -> None:
        if not isinstance(value, list) or not value:
            return
        kind = value[0]
        if kind == "message" and len(value) == 3:
            self.on_message(value[2])
        elif kind == "subscribe":
            if self._subscribed is not None and not self._subscribed.done():
                self._subscribed.set_result(None)
        elif kind == "pong":
            self._pong.set()

    async def _supervise(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._run_once()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, RespError) as exc:
                log.debug("redis node link: %s: %s", type(exc).__name__, exc)
            finally:
                was_up = self.up
                self._drop()
                if was_up:
                    log.warning("redis node link lost; reconnecting")
                    self.on_down()
            await asyncio.sleep(delay)  # reconnect backoff, not a race fix
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _run_once(self) -> None:
        self._cmd = await self._connect(None)
        self._sub = await self._connect(self._on_push)
        self._subscribed = asyncio.get_running_loop().create_future()
        self._sub.send_only("SUBSCRIBE", self.topic)
        await asyncio.wait_for(asyncio.shield(self._subscribed), CONNECT_TIMEOUT_S)
        self.up = True
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        lost = {self._cmd.lost, self._sub.lost}
        while True:
            done, _ = await asyncio.wait(lost, timeout=PING_INTERVAL_S)
            if done:
                return
            self._pong.clear()
            self._sub.send_only("PING")
            try:
                await asyncio.wait_for(self._pong.wait(), PING_INTERVAL_S)
            except TimeoutError:
                return  # no answer: the link is dead even if the socket is not

    def _drop(self) -> None:
        self.up = False
        for proto in (self._cmd, self._sub):
            if proto is not None:
                proto.abort()
        self._cmd = self._sub = None
