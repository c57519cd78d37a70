"""``FanOut`` within one process: a dict of channel sinks and a dict of waiting events.

Everything runs on one event loop, so ``dict.pop`` is the atomic claim that
gives a channel exactly one message (fanout/base.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from textsecure_provision.server.fanout.base import (
    ChannelId,
    ChannelSink,
    EventWaiter,
    MailboxKey,
)


class MemoryFanOut:
    def __init__(self) -> None:
        self._channels: dict[ChannelId, ChannelSink] = {}
        self._waiters: dict[MailboxKey, set[EventWaiter]] = {}

    def describe(self) -> str:
        return "memory (this process only)"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()
        self.interrupt_waiters()

    async def check(self) -> None:
        return None

    async def open_channel(self, channel_id: ChannelId, sink: ChannelSink, ttl_s: float) -> None:
        # ttl_s matters to shared backends (key expiry); here the holder's timer closes it.
        self._channels[channel_id] = sink

    async def close_channel(self, channel_id: ChannelId) -> None:
        self._channels.pop(channel_id, None)

    async def publish(self, channel_id: ChannelId, frame: str) -> bool:
        sink = self._channels.pop(channel_id, None)  # the claim: at most one caller gets it
        if sink is None:
            return False
        return await sink(frame)

    def holds(self, channel_id: str) -> bool:
        """Is the channel open (short-code nameplates live only as long as it does)?"""
        return channel_id in self._channels

    def local_channels(self) -> int:
        return len(self._channels)

    @asynccontextmanager
    async def subscribe(self, key: MailboxKey) -> AsyncIterator[EventWaiter]:
        waiter = EventWaiter()
        self._waiters.setdefault(key, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]

    async def notify(self, key: MailboxKey) -> None:
        for waiter in self._waiters.get(key, ()):
            waiter.event.set()

    def interrupt_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()
