"""Fan-out between requests (and, with Redis, between nodes), behind one interface.

Two jobs:

* **Temp channels** (§4.1). The websocket that holds channel U registers a
  *sink* with ``open_channel``; ``publish(U, frame)`` hands ``frame`` to that
  sink and returns True **for exactly one publish per channel, ever**: the
  claim is atomic (a dict pop here, an atomic delete in Redis), so two
  concurrent PUTs to one channel get one 200 and one 404, and a PUT to a
  channel that expired, closed or never existed gets False (404). The payload
  is never stored: if no node holds the channel, it is gone (no ack, §4.1).
* **Mailbox wake-ups.** A long-poll (``GET /v1/messages/?wait=S``) subscribes to
  its device's mailbox key *before* it re-reads storage, then waits; a send
  stores the message first and then calls ``notify`` on the key. So a wake-up
  cannot be lost between the read and the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import NewType, Protocol

# The one definition (protocol/link.py), re-exported for the fan-out's users.
from textsecure_provision.protocol.link import ChannelId as ChannelId

MailboxKey = NewType("MailboxKey", str)

ChannelSink = Callable[[str], Awaitable[bool]]
"""Delivers one text frame to the channel's websocket and closes it (1000); True if sent."""


def mailbox_key(number: str, device_id: int) -> MailboxKey:
    return MailboxKey(f"{number}.{device_id}")


class Waiter(Protocol):
    async def wait(self, timeout_s: float) -> bool:
        """Wait until notified (True) or ``timeout_s`` passes (False). A notify that
        arrived after subscribing and before this call counts."""


class EventWaiter:
    """A ``Waiter`` over one ``asyncio.Event``: a notify before ``wait`` still counts."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout_s: float) -> bool:
        if self.event.is_set():
            self.event.clear()
            return True
        try:
            await asyncio.wait_for(self.event.wait(), timeout_s)
        except TimeoutError:
            return False
        self.event.clear()
        return True


class FanOut(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise ``ServiceUnavailableError`` if the fan-out backend is down."""

    def describe(self) -> str: ...

    # -- temp channels (§4.1) ---------------------------------------------------------------
    def route_channel_id(self, channel_id: ChannelId) -> ChannelId:
        """The random id as this node hands it out (the Redis fan-out writes its node tag
        into it, so that any node can route a PUT from the id alone)."""

    async def open_channel(self, channel_id: ChannelId, sink: ChannelSink, ttl_s: float) -> None:
        """Make the channel reachable for ``ttl_s`` seconds (the holder also closes it)."""

    async def close_channel(self, channel_id: ChannelId) -> None:
        """Unregister (expired or disconnected): a later publish returns False."""

    async def publish(self, channel_id: ChannelId, frame: str) -> bool:
        """Deliver ``frame`` to the channel; True for the one publish that claimed it."""

    def local_channels(self) -> int:
        """Channels held by this node (the ``open_channels`` gauge)."""

    # -- mailbox wake-ups ---------------------------------------------------------------------
    def subscribe(self, key: MailboxKey) -> AbstractAsyncContextManager[Waiter]: ...

    async def notify(self, key: MailboxKey) -> None: ...

    def interrupt_waiters(self) -> None:
        """Wake every long-poll on this node (used on shutdown so they answer at once)."""
