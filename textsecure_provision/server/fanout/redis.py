"""``FanOut`` across relay nodes over Redis: channel relay and mailbox wake-ups.

Names (``P`` is ``--redis-prefix``, so several deployments can share a Redis)::

    P ch:<uuid>        key, value = the holding node's id, expires with the channel
    P node:<node id>   pub/sub topic: deliveries for that node and answers to its requests
    P mb:<number>.<d>  pub/sub topic: "a message was stored for this device"

**Temp channels (§4.1).** The node whose websocket holds channel U sets
``P ch:U`` to its node id (with the channel's ttl) before the uuid frame goes
out. A ``PUT /v1/messages/U`` on any node claims the key with ``GETDEL``:
atomic, so of two racing PUTs, on any nodes, at most one gets the node id; the
others see nothing and answer 404. The claimer delivers locally if it is the
holder, else publishes the frame on the holder's topic and waits for its
answer (True once the frame is written to the socket). ``PUBLISH`` returning 0
means no node listens there any more (the holder died): 404. The holder pops
its local sink before writing, so even a replayed request cannot deliver twice:
the key routes, the local pop is the claim that makes 200 mean "delivered,
exactly once". A holder whose socket closed in between answers False: 404 (the
frame is not kept anywhere, like the seed: no ack on channels).

**Mailbox wake-ups.** A long-poll subscribes to its device's topic and waits
for Redis to confirm the subscription *before* it re-reads storage; a send
stores first, then publishes. So no wake-up is lost between the read and the
wait. Subscriptions are reference-counted: one per device per node.

**Failures.** One task per node owns the pub/sub connection; when it breaks
(or stops answering pings) the task reconnects with backoff, re-subscribes
every live topic, re-registers this node's open channels (keys are not durable:
a restarted Redis has none), and then wakes every local long-poll, because a
publish may have been missed while the link was down. Meanwhile requests that
need Redis get ``ServiceUnavailableError`` (503); a ``notify`` that fails is
only logged, since the message itself is stored (the wake-up after the
reconnect covers it), and failing the send would make the client store it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from textsecure_provision.errors import ServiceUnavailableError
from textsecure_provision.server.fanout.base import (
    ChannelId,
    ChannelSink,
    EventWaiter,
    MailboxKey,
)
from textsecure_provision.server.urls import redact_url

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "provision:"
START_TIMEOUT_S = 5.0  # a node refuses to start if Redis does not answer by then
DELIVER_TIMEOUT_S = 5.0  # the holder answers in ~1 ms; longer means it or the link is gone
SUBSCRIBE_TIMEOUT_S = 5.0
PING_INTERVAL_S = 5.0  # an idle pub/sub link is pinged; no answer within as long is dead
SOCKET_TIMEOUT_S = 3.0
KEY_GRACE_MS = 1000  # the key outlives the channel a little; the holder's own state decides
RECONNECT_MAX_S = 2.0
MAX_CONNECTIONS = 50  # per pool; a command holds one for ~0.1 ms, so this serves thousands/s

# What a Redis call raises when Redis is gone. RuntimeError too: writing to a transport that
# the event loop has just closed (Redis killed mid-command) raises it under uvloop.
_REDIS_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)


def redis_client(url: str, *, retries: int) -> Redis:
    """A client that fails fast (a node answers 503 rather than hanging while Redis is down).

    The pool blocks when all its connections are busy (a burst waits its turn, up to
    ``SOCKET_TIMEOUT_S``) instead of refusing at once as redis-py's default pool does.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_S,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        # One retry on a fresh connection covers pooled sockets that died with a Redis restart.
        retry=Retry(NoBackoff(), retries),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


@dataclass(eq=False)
class _Subscription:
    """One mailbox topic this node listens to, shared by the device's local long-polls."""

    ready: asyncio.Future[None]  # set when Redis confirms the SUBSCRIBE
    waiters: set[EventWaiter] = field(default_factory=set)


@dataclass(eq=False)
class _Channel:
    sink: ChannelSink
    expires_at: float  # loop time; used to re-register the key after a Redis restart


class RedisFanOut:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = uuid.uuid4().hex
        self._redis = redis_client(url, retries=1)
        # The pub/sub client never retries on its own: the supervisor reconnects and then
        # re-subscribes itself, so it always knows which subscriptions Redis has confirmed.
        self._pubsub_client = redis_client(url, retries=0)
        self._pubsub: PubSub | None = None
        self._link_up = False
        self._link_event = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._channels: dict[ChannelId, _Channel] = {}
        self._subs: dict[str, _Subscription] = {}
        # Per topic, the subscriptions whose SUBSCRIBE awaits confirmation, in sending order
        # (Redis confirms in order on one connection); None for the node's own topic.
        self._confirm: dict[str, deque[_Subscription | None]] = {}
        self._pending: dict[str, asyncio.Future[bool]] = {}  # delivery request id → answer
        self._tasks: set[asyncio.Task[None]] = set()

    # -- names -----------------------------------------------------------------------------------
    def _channel_key(self, channel_id: str) -> str:
        return f"{self.prefix}ch:{channel_id}"

    def _node_topic(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _mailbox_topic(self, key: str) -> str:
        return f"{self.prefix}mb:{key}"

    def describe(self) -> str:
        return f"{redact_url(self.url)} (prefix {self.prefix!r}, node {self.node_id[:8]})"

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and subscribe; a node that cannot reach Redis refuses to start."""
        try:
            await self._redis.ping()
        except _REDIS_ERRORS as exc:
            await self.close()
            raise ServiceUnavailableError(f"cannot reach Redis at {redact_url(self.url)}") from exc
        self._closing = False
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        try:
            await asyncio.wait_for(self._link_event.wait(), START_TIMEOUT_S)
        except TimeoutError:
            await self.close()
            raise ServiceUnavailableError(f"cannot reach Redis at {redact_url(self.url)}") from None

    async def close(self) -> None:
        self._closing = True
        self.interrupt_waiters()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        self._channels.clear()
        for client in (self._redis, self._pubsub_client):
            with contextlib.suppress(Exception):  # closing: nothing left to do about it
                await client.aclose()

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except _REDIS_ERRORS as exc:  # reported by /health, not logged at every probe
            raise self._unavailable() from exc
        if not self._link_up:
            raise ServiceUnavailableError("the Redis pub/sub link is down (reconnecting)")

    @staticmethod
    def _unavailable(exc: BaseException | None = None) -> ServiceUnavailableError:
        if exc is not None:
            log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
        return ServiceUnavailableError("the fan-out (Redis) is unavailable; try again")

    def _require_link(self) -> PubSub:
        if not self._link_up or self._pubsub is None:
            raise ServiceUnavailableError("the fan-out (Redis) is unavailable; try again")
        return self._pubsub

    # -- the pub/sub link ------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = 0.05
        while not self._closing:
            pubsub = self._pubsub_client.pubsub()
            try:
                await self._subscribe_all(pubsub)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                if self._link_up:
                    log.warning("redis pub/sub link lost: %s: %s", type(exc).__name__, exc)
                else:
                    log.debug("redis pub/sub connect failed: %s", exc)
            except Exception:
                # Whatever it was, this task must live on: it is what brings the link back.
                log.exception("redis pub/sub link failed unexpectedly; reconnecting")
            finally:
                was_up = self._link_up
                self._link_down()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if was_up:
                delay = 0.05
            await asyncio.sleep(delay)  # reconnect backoff, not a race fix
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        """Subscribe every live mailbox topic, then the node topic last: once the node
        topic is confirmed, everything before it is too and the link is up."""
        self._confirm = {}
        topics = list(self._subs)
        for topic in topics:
            self._confirm.setdefault(topic, deque()).append(self._subs[topic])
        node_topic = self._node_topic(self.node_id)
        self._confirm.setdefault(node_topic, deque()).append(None)
        self._pubsub = pubsub
        await pubsub.subscribe(*topics, node_topic)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(timeout=PING_INTERVAL_S)
            if message is None:
                if ping_sent is not None and loop.time() - ping_sent >= PING_INTERVAL_S:
                    raise ConnectionError("redis did not answer a ping")
                if ping_sent is None:
                    await pubsub.ping()
                    ping_sent = loop.time()
                continue
            ping_sent = None
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        topic = message["channel"]
        if kind == "subscribe":
            queue = self._confirm.get(topic)
            entry = queue.popleft() if queue else None
            if entry is not None and not entry.ready.done():
                entry.ready.set_result(None)
            if topic == self._node_topic(self.node_id):
                await self._link_established()
        elif kind == "message":
            if topic == self._node_topic(self.node_id):
                self._on_node_message(message["data"])
            else:
                sub = self._subs.get(topic)
                if sub is not None:
                    for waiter in sub.waiters:
                        waiter.event.set()

    async def _link_established(self) -> None:
        first = not self._link_event.is_set()
        self._link_up = True
        self._link_event.set()
        if not first:
            log.warning("redis pub/sub link is back")
        # Keys do not survive a Redis restart: put this node's open channels back.
        loop = asyncio.get_running_loop()
        for channel_id, channel in list(self._channels.items()):
            remaining_ms = int((channel.expires_at - loop.time()) * 1000)
            if remaining_ms > 0:
                with contextlib.suppress(*_REDIS_ERRORS):
                    await self._redis.set(
                        self._channel_key(channel_id), self.node_id, px=remaining_ms, nx=True
                    )
        # A publish may have been missed while the link was down: every long-poll re-reads.
        self.interrupt_waiters()

    def _link_down(self) -> None:
        self._link_up = False
        self._pubsub = None
        # Answers to our delivery requests would come over the link: fail them now (503).
        # Unconfirmed subscriptions keep waiting: the reconnect subscribes them again.
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self._unavailable())

    def _on_node_message(self, data: str) -> None:
        try:
            doc = json.loads(data)
            kind = doc["t"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed node message")
            return
        if kind == "r":  # the answer to one of our delivery requests
            fut = self._pending.get(doc.get("i"))
            if fut is not None and not fut.done():
                fut.set_result(doc.get("ok") is True)
        elif kind == "d":  # deliver a frame to one of our channels
            task = asyncio.get_running_loop().create_task(self._serve_delivery(doc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_delivery(self, doc: dict[str, Any]) -> None:
        channel = self._channels.pop(ChannelId(str(doc.get("c"))), None)
        ok = False
        if channel is not None:
            ok = await channel.sink(str(doc.get("f")))
        answer = json.dumps({"t": "r", "i": doc.get("i"), "ok": ok}, separators=(",", ":"))
        try:
            await self._redis.publish(self._node_topic(str(doc.get("r"))), answer)
        except _REDIS_ERRORS as exc:
            log.warning("could not answer a delivery request: %s", exc)

    # -- temp channels (§4.1) ----------------------------------------------------------------------
    async def open_channel(self, channel_id: ChannelId, sink: ChannelSink, ttl_s: float) -> None:
        self._require_link()  # unreachable from other nodes without it: refuse now (503)
        loop = asyncio.get_running_loop()
        self._channels[channel_id] = _Channel(sink, loop.time() + ttl_s)
        try:
            await self._redis.set(
                self._channel_key(channel_id), self.node_id, px=int(ttl_s * 1000) + KEY_GRACE_MS
            )
        except _REDIS_ERRORS as exc:
            self._channels.pop(channel_id, None)
            raise self._unavailable(exc) from exc

    async def close_channel(self, channel_id: ChannelId) -> None:
        if self._channels.pop(channel_id, None) is None:
            return
        try:
            await self._redis.delete(self._channel_key(channel_id))
        except _REDIS_ERRORS as exc:
            # The key expires with the channel; until then a PUT that claims it reaches
            # this node, finds no channel and gets 404, which is right.
            log.debug("could not unregister a channel: %s", exc)

    async def publish(self, channel_id: ChannelId, frame: str) -> bool:
        self._require_link()  # the holder's answer comes back over the link
        try:
            holder = await self._redis.getdel(self._channel_key(channel_id))
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc) from exc
        if holder is None:
            return False  # expired, closed, already claimed or never opened
        if holder == self.node_id:
            channel = self._channels.pop(channel_id, None)
            return False if channel is None else await channel.sink(frame)
        request_id = uuid.uuid4().hex
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        doc = {"t": "d", "i": request_id, "c": channel_id, "f": frame, "r": self.node_id}
        try:
            receivers = await self._redis.publish(
                self._node_topic(holder), json.dumps(doc, separators=(",", ":"))
            )
            if receivers == 0:
                return False  # the holder is gone, and its channels with it
            return await asyncio.wait_for(answer, DELIVER_TIMEOUT_S)
        except TimeoutError:
            raise ServiceUnavailableError(
                "the node holding the channel did not confirm delivery; try again"
            ) from None
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._pending.pop(request_id, None)

    def local_channels(self) -> int:
        return len(self._channels)

    # -- mailbox wake-ups --------------------------------------------------------------------------
    @asynccontextmanager
    async def subscribe(self, key: MailboxKey) -> AsyncIterator[EventWaiter]:
        topic = self._mailbox_topic(key)
        waiter = EventWaiter()
        sub = self._subs.get(topic)
        if sub is None:
            pubsub = self._require_link()
            sub = _Subscription(asyncio.get_running_loop().create_future())
            self._subs[topic] = sub
            self._confirm.setdefault(topic, deque()).append(sub)
            sub.waiters.add(waiter)
            try:
                await pubsub.subscribe(topic)
            except _REDIS_ERRORS as exc:
                await self._leave(topic, sub, waiter)
                raise self._unavailable(exc) from exc
        else:
            sub.waiters.add(waiter)
        try:
            # Only once Redis has confirmed may the caller re-read storage (no lost wake-up).
            if not sub.ready.done():
                try:
                    await asyncio.wait_for(asyncio.shield(sub.ready), SUBSCRIBE_TIMEOUT_S)
                except TimeoutError:
                    raise ServiceUnavailableError(
                        "the fan-out (Redis) did not confirm a subscription; try again"
                    ) from None
            yield waiter
        finally:
            await self._leave(topic, sub, waiter)

    async def _leave(self, topic: str, sub: _Subscription, waiter: EventWaiter) -> None:
        sub.waiters.discard(waiter)
        if sub.waiters or self._subs.get(topic) is not sub:
            return
        del self._subs[topic]
        pubsub = self._pubsub
        if pubsub is not None and self._link_up:
            with contextlib.suppress(*_REDIS_ERRORS):
                await pubsub.unsubscribe(topic)

    async def notify(self, key: MailboxKey) -> None:
        topic = self._mailbox_topic(key)
        local = self._subs.get(topic)
        if local is not None:  # a long-poll on this node wakes without the round trip
            for waiter in local.waiters:
                waiter.event.set()
        try:
            await self._redis.publish(topic, "1")
        except _REDIS_ERRORS as exc:
            # The message is stored; the reconnect wakes every long-poll to re-read it.
            log.warning("could not publish a wake-up: %s: %s", type(exc).__name__, exc)

    def local_waiters(self) -> int:
        """Long-polls parked on this node (tests wait on it instead of sleeping)."""
        return sum(len(sub.waiters) for sub in self._subs.values())

    def interrupt_waiters(self) -> None:
        for sub in self._subs.values():
            for waiter in sub.waiters:
                waiter.event.set()
