"""``FanOut`` across relay nodes over Redis: channel relay and mailbox wake-ups.

Names (``P`` is ``--redis-prefix``, so several deployments can share a Redis)::

    P ch:<uuid>        key, value = the holder's tag, while the channel is open (for the
                       short-code nameplates' liveness check, nameplates/redis.py)
    P node:<tag>       pub/sub topic: deliveries for that node and answers to its requests
    P mb:<number>.<d>  pub/sub topic: "a message was stored for this device"

**Temp channels (§4.1).** A node has a random 32-bit *tag* (8 hex digits,
checked unused on its topic at start) and writes it into the first 8 hex
digits of every channel id it hands out (``route_channel_id``; the other 90
random bits of the v4 uuid stay the capability). So no lookup routes a PUT;
the channel's key (set before the uuid frame leaves, dropped without waiting
when it is delivered or closed) only tells the nameplates it is open. A ``PUT
/v1/messages/U`` on the holder (the tag is its own) pops the local sink: one
dict pop, the claim. On any other node it publishes the frame on the tag's
topic and waits for the holder's answer (True once the frame is written to
the socket). The holder pops its sink before writing, so of two racing PUTs,
on any nodes, at most one gets True, and a replayed request cannot deliver
twice: the pop is the claim that makes 200 mean "delivered, exactly once".
``PUBLISH`` returning 0 means no node listens on that tag (the holder died,
or the id was never handed out): 404 at once. Should two nodes ever share a
tag, both answer and the requester waits for as many answers as ``PUBLISH``
counted receivers: True if any delivered. The frame is not kept anywhere (no
ack on channels).

Per rendezvous that is the key's ``SET`` and ``DEL`` when the PUT reaches the
holder, plus 2 ``PUBLISH`` when it does not (the delivery and its answer),
all over the node link (node_link.py), none of them awaited by the PUT on the
holder; the former ``GETDEL`` that every PUT waited for is gone
(docs/performance.md).

**Mailbox wake-ups.** A long-poll subscribes to its device's topic and waits
for Redis to confirm the subscription *before* it re-reads storage; a send
stores first, then publishes. So no wake-up is lost between the read and the
wait. Subscriptions are reference-counted: one per device per node.

**Failures.** One task per node owns the pub/sub connection; when it breaks
(or stops answering pings) the task reconnects with backoff, re-subscribes
every live topic, and then wakes every local long-poll, because a publish may
have been missed while the link was down. Meanwhile requests that need Redis
get ``ServiceUnavailableError`` (503); a ``notify`` that fails is only logged,
since the message itself is stored (the wake-up after the reconnect covers
it), and failing the send would make the client store it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
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
from textsecure_provision.server.fanout.node_link import NodeLink
from textsecure_provision.server.urls import redact_url

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "provision:"
START_TIMEOUT_S = 5.0  # a node refuses to start if Redis does not answer by then
DELIVER_TIMEOUT_S = 5.0  # the holder answers in ~1 ms; longer means it or the link is gone
SUBSCRIBE_TIMEOUT_S = 5.0
PING_INTERVAL_S = 5.0  # an idle pub/sub link is pinged; no answer within as long is dead
SOCKET_TIMEOUT_S = 3.0
KEY_GRACE_MS = 1000  # the key outlives the channel a little; the holder's own state decides
TAG_TRIES = 5  # a fresh tag per try while another node already listens on one
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


class _Delivery:
    """A delivery request's answers: True once any receiver delivered, False once all the
    receivers ``PUBLISH`` counted have said no (answers may come before that count)."""

    __slots__ = ("answers", "done", "expected")

    def __init__(self) -> None:
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.answers = 0
        self.expected: int | None = None

    def answer(self, ok: bool) -> None:
        self.answers += 1
        if self.done.done():
            return
        if ok:
            self.done.set_result(True)
        elif self.expected is not None and self.answers >= self.expected:
            self.done.set_result(False)

    def expect(self, receivers: int) -> None:
        self.expected = receivers
        if not self.done.done() and self.answers >= receivers:
            self.done.set_result(False)


class RedisFanOut:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = secrets.token_hex(4)  # the tag (see the module docstring)
        self._redis = redis_client(url, retries=1)
        # The pub/sub client never retries on its own: the supervisor reconnects and then
        # re-subscribes itself, so it always knows which subscriptions Redis has confirmed.
        self._pubsub_client = redis_client(url, retries=0)
        self._pubsub: PubSub | None = None
        self._link_up = False
        self._link_event = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._channels: dict[ChannelId, ChannelSink] = {}
        self._subs: dict[str, _Subscription] = {}
        # Per topic, the subscriptions whose SUBSCRIBE awaits confirmation, in sending order
        # (Redis confirms in order on one connection); None for the node's own topic.
        self._confirm: dict[str, deque[_Subscription | None]] = {}
        self._pending: dict[str, _Delivery] = {}  # delivery request id → its answers
        # Unique even between two nodes that clashed on a tag (they share a topic).
        self._request_prefix = secrets.token_hex(6)
        self._request_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._node: NodeLink | None = None  # deliveries and their answers (node_link.py)

    # -- names -----------------------------------------------------------------------------------
    def _channel_key(self, channel_id: str) -> str:
        return f"{self.prefix}ch:{channel_id}"

    def _node_topic(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _marker_topic(self) -> str:
        """Subscribed last on the mailbox link: its confirmation says the link is up."""
        return f"{self.prefix}up:{self.node_id}"

    def _mailbox_topic(self, key: str) -> str:
        return f"{self.prefix}mb:{key}"

    def describe(self) -> str:
        return f"{redact_url(self.url)} (prefix {self.prefix!r}, node {self.node_id})"

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and subscribe; a node that cannot reach Redis refuses to start."""
        try:
            await self._redis.ping()
            await self._pick_tag()
        except _REDIS_ERRORS as exc:
            await self.close()
            raise ServiceUnavailableError(f"cannot reach Redis at {redact_url(self.url)}") from exc
        self._closing = False
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        try:
            await asyncio.wait_for(self._link_event.wait(), START_TIMEOUT_S)
            self._node = NodeLink(
                self.url, self._node_topic(self.node_id), self._on_node_message, self._node_down
            )
            await self._node.start(START_TIMEOUT_S)
        except (TimeoutError, ConnectionError, OSError):
            await self.close()
            raise ServiceUnavailableError(f"cannot reach Redis at {redact_url(self.url)}") from None

    async def _pick_tag(self) -> None:
        """A tag no other node listens on right now (a clash is also survived: _Delivery)."""
        for _ in range(TAG_TRIES):
            counts = await self._redis.pubsub_numsub(self._node_topic(self.node_id))
            if not counts or int(counts[0][1]) == 0:
                return
            self.node_id = secrets.token_hex(4)

    def route_channel_id(self, channel_id: ChannelId) -> ChannelId:
        """The id with this node's tag as its first 8 hex digits: any node routes a PUT to
        it from the id alone (the rest of the random v4 uuid is kept)."""
        return ChannelId(self.node_id + channel_id[8:])

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
        if self._node is not None:
            await self._node.close()
            self._node = None
        self._channels.clear()
        for client in (self._redis, self._pubsub_client):
            with contextlib.suppress(Exception):  # closing: nothing left to do about it
                await client.aclose()

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except _REDIS_ERRORS as exc:  # reported by /health, not logged at every probe
            raise self._unavailable() from exc
        if not self._link_up or self._node is None or not self._node.up:
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

    def _require_node_link(self) -> NodeLink:
        node = self._node
        if node is None or not node.up:
            raise ServiceUnavailableError("the fan-out (Redis) is unavailable; try again")
        return node

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
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
            if was_up:
                delay = 0.05
            await asyncio.sleep(delay)  # reconnect backoff, not a race fix
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        """Subscribe every live mailbox topic, then the marker topic last: once it is
        confirmed, everything before it is too and the link is up."""
        self._confirm = {}
        topics = list(self._subs)
        for topic in topics:
            self._confirm.setdefault(topic, deque()).append(self._subs[topic])
        marker = self._marker_topic()
        self._confirm.setdefault(marker, deque()).append(None)
        self._pubsub = pubsub
        await pubsub.subscribe(*topics, marker)

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
            if topic == self._marker_topic():
                await self._link_established()
        elif kind == "message":
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
        # A publish may have been missed while the link was down: every long-poll re-reads.
        self.interrupt_waiters()

    def _link_down(self) -> None:
        # Unconfirmed subscriptions keep waiting: the reconnect subscribes them again.
        self._link_up = False
        self._pubsub = None

    def _node_down(self) -> None:
        # Answers to our delivery requests would come over the node link: fail them (503).
        for delivery in self._pending.values():
            if not delivery.done.done():
                delivery.done.set_exception(self._unavailable())

    def _on_node_message(self, data: str) -> None:
        try:
            doc = json.loads(data)
            kind = doc["t"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed node message")
            return
        if kind == "r":  # the answer to one of our delivery requests
            delivery = self._pending.get(doc.get("i"))
            if delivery is not None:
                delivery.answer(doc.get("ok") is True)
        elif kind == "d":  # deliver a frame to one of our channels
            task = asyncio.get_running_loop().create_task(self._serve_delivery(doc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_delivery(self, doc: dict[str, Any]) -> None:
        channel_id = ChannelId(str(doc.get("c")))
        sink = self._channels.pop(channel_id, None)
        ok = False
        if sink is not None:
            self._forget(channel_id)
            ok = await sink(str(doc.get("f")))
        answer = json.dumps({"t": "r", "i": doc.get("i"), "ok": ok}, separators=(",", ":"))
        try:
            await self._require_node_link().publish(self._node_topic(str(doc.get("r"))), answer)
        except (*_REDIS_ERRORS, ServiceUnavailableError) as exc:
            log.warning("could not answer a delivery request: %s", exc)

    # -- temp channels (§4.1) ----------------------------------------------------------------------
    async def open_channel(self, channel_id: ChannelId, sink: ChannelSink, ttl_s: float) -> None:
        # The id routes itself; the key only says "open" to the short-code nameplates
        # (nameplates/redis.py checks it), set before the uuid leaves. Without the link no
        # other node could reach the channel: refuse now (503).
        node = self._require_node_link()
        self._channels[channel_id] = sink
        try:
            await node.command(
                "SET", self._channel_key(channel_id), self.node_id,
                "PX", str(int(ttl_s * 1000) + KEY_GRACE_MS),
            )  # fmt: skip
        except _REDIS_ERRORS as exc:
            self._channels.pop(channel_id, None)
            raise self._unavailable(exc) from exc

    async def close_channel(self, channel_id: ChannelId) -> None:
        if self._channels.pop(channel_id, None) is not None:
            self._forget(channel_id)

    def _forget(self, channel_id: ChannelId) -> None:
        """The channel's key goes (not awaited: it expires anyway; a nameplate bound to it
        dies with it)."""
        node = self._node
        if node is not None:
            node.fire("DEL", self._channel_key(channel_id))

    async def publish(self, channel_id: ChannelId, frame: str) -> bool:
        tag = channel_id[:8]
        if tag == self.node_id:  # ours: the pop is the claim, no round trip
            sink = self._channels.pop(channel_id, None)
            if sink is None:
                return False
            self._forget(channel_id)
            return await sink(frame)
        node = self._require_node_link()  # the holder's answer comes back over it
        request_id = f"{self._request_prefix}{next(self._request_ids):x}"
        delivery = _Delivery()
        self._pending[request_id] = delivery
        doc = {"t": "d", "i": request_id, "c": channel_id, "f": frame, "r": self.node_id}
        try:
            receivers = await node.publish(
                self._node_topic(tag), json.dumps(doc, separators=(",", ":"))
            )
            delivery.expect(receivers)  # 0: no node has that tag (gone, or never ours): 404
            return await asyncio.wait_for(delivery.done, DELIVER_TIMEOUT_S)
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
        node = self._node
        try:
            if node is not None and node.up:
                await node.publish(topic, "1")
            else:
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
