"""``NameplateStore`` within one process (SQLite mode, or PostgreSQL without Redis)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from textsecure_provision.server.nameplates.base import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGES_PER_SIDE,
    MAX_NAMEPLATES,
    Allocated,
    Outcome,
    Read,
    Side,
)


@dataclass(eq=False)
class _Entry:
    channel_id: str
    secondary_token: bytes
    expires_ms: int
    master_token: bytes | None = None
    claimer: str | None = None
    burned: bool = False
    mailbox: dict[str, list[bytes]] = field(default_factory=lambda: {"secondary": [], "master": []})

    def side_of(self, token_digest: bytes) -> Side | None:
        # Both compared, always: the time does not tell which side a token belongs to.
        is_secondary = hmac.compare_digest(token_digest, self.secondary_token)
        is_master = self.master_token is not None and hmac.compare_digest(
            token_digest, self.master_token
        )
        if is_secondary:
            return "secondary"
        return "master" if is_master else None


class MemoryNameplateStore:
    """``channel_open`` is the fan-out's view of a channel (``MemoryFanOut.holds``)."""

    def __init__(
        self,
        channel_open: Callable[[str], bool],
        clock_ms: Callable[[], int],
        max_nameplates: int = MAX_NAMEPLATES,
    ) -> None:
        self._channel_open = channel_open
        self._clock_ms = clock_ms
        self._max = max_nameplates
        self._entries: dict[int, _Entry] = {}
        self._by_channel: dict[str, int] = {}

    def describe(self) -> str:
        return "memory (this process only)"

    async def close(self) -> None:
        self._entries.clear()
        self._by_channel.clear()

    def channel_ended(self, channel_id: str, how: object) -> None:
        """``Services.channel_ended`` hook (channel_socket.py): the nameplate goes now.

        A burned one stays, answering 410 until its ttl: the secondary burns it and then
        closes its channel at once, and the master must still learn of the wrong code.
        """
        number = self._by_channel.pop(channel_id, None)
        if number is None:
            return
        entry = self._entries.get(number)
        if entry is not None and entry.channel_id == channel_id and not entry.burned:
            del self._entries[number]

    def _live(self, nameplate: int) -> _Entry | None:
        entry = self._entries.get(nameplate)
        if entry is None:
            return None
        expired = entry.expires_ms <= self._clock_ms()
        if expired or not (entry.burned or self._channel_open(entry.channel_id)):
            del self._entries[nameplate]
            if self._by_channel.get(entry.channel_id) == nameplate:
                del self._by_channel[entry.channel_id]
            return None
        return entry

    async def allocate(self, channel_id: str, token_digest: bytes, ttl_ms: int) -> Allocated:
        if not self._channel_open(channel_id):
            return Allocated(Outcome.GONE)
        bound = self._by_channel.get(channel_id)
        if bound is not None and self._live(bound) is not None:
            return Allocated(Outcome.TAKEN)
        for number in range(1, self._max + 1):
            if self._live(number) is None:
                self._entries[number] = _Entry(channel_id, token_digest, self._clock_ms() + ttl_ms)
                self._by_channel[channel_id] = number
                return Allocated(Outcome.OK, number)
        return Allocated(Outcome.EXHAUSTED)

    async def claim(self, nameplate: int, token_digest: bytes, claimer: str) -> Outcome:
        entry = self._live(nameplate)
        if entry is None:
            return Outcome.GONE
        if entry.burned:
            return Outcome.BURNED
        if entry.master_token is not None:
            return Outcome.CLAIMED
        entry.master_token, entry.claimer = token_digest, claimer
        return Outcome.OK

    def _authorized(self, nameplate: int, token_digest: bytes) -> tuple[Read, _Entry | None]:
        entry = self._live(nameplate)
        if entry is None:
            return Read(Outcome.GONE), None
        side = entry.side_of(token_digest)
        if side is None:
            return Read(Outcome.UNAUTHORIZED), None
        if entry.burned:
            return Read(Outcome.BURNED, side), None
        return Read(Outcome.OK, side, claimed=entry.master_token is not None), entry

    async def post(self, nameplate: int, token_digest: bytes, messages: list[bytes]) -> Read:
        answer, entry = self._authorized(nameplate, token_digest)
        if entry is None or answer.side is None:
            return answer
        box = entry.mailbox[answer.side]
        if len(box) + len(messages) > MAX_MESSAGES_PER_SIDE or any(
            len(m) > MAX_MESSAGE_BYTES for m in messages
        ):
            return Read(Outcome.FULL, answer.side)
        box.extend(messages)
        return answer

    async def read(self, nameplate: int, token_digest: bytes, after: int) -> Read:
        answer, entry = self._authorized(nameplate, token_digest)
        if entry is None or answer.side is None:
            return answer
        other = "master" if answer.side == "secondary" else "secondary"
        return Read(Outcome.OK, answer.side, tuple(entry.mailbox[other][after:]), answer.claimed)

    async def burn(self, nameplate: int, token_digest: bytes) -> Outcome:
        answer, entry = self._authorized(nameplate, token_digest)
        if entry is None:
            return answer.outcome
        entry.burned = True
        entry.mailbox = {"secondary": [], "master": []}  # nobody reads a burned mailbox
        return Outcome.OK
