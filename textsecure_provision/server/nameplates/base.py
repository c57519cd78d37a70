"""The nameplate store's interface: a small number bound to one open temp channel.

A nameplate lives exactly as long as its channel (§4.1): it counts as gone
once the channel expired, closed or received its DeviceInit, whatever the
nameplate's own record says, so the store consults the channel's liveness on
every operation (the memory store asks the in-process fan-out, the Redis store
checks the channel key inside its scripts). Numbers are allocated smallest
free first and reused as soon as their channel is gone, as magic-wormhole's
mailbox server does.

Each nameplate has a mailbox of two bounded lists, one per side; a side is
known by its token (the secondary's from ``allocate``, the master's from
``claim``). The store keeps only SHA-256 digests of tokens.

One attempt per nameplate: ``claim`` succeeds once; a burned nameplate (a
failed key confirmation, reported by either side) refuses everything after.

The memory store also listens on ``Services.channel_ended`` (channel_socket.py) and
drops a nameplate the moment its channel ends; the Redis store needs no hook, since the
channel's key goes with the channel on whichever node held it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Protocol

Side = Literal["secondary", "master"]

MAX_MESSAGES_PER_SIDE = 4  # the exchange needs 1 (secondary: 3) messages per side
MAX_MESSAGE_BYTES = 4096  # a frame is at most 66 bytes today; room for later versions
MAX_NAMEPLATES = 10_000  # the allocator scans numbers from 1; this bounds the scan


class Outcome(enum.Enum):
    OK = "ok"
    GONE = "gone"  # no such nameplate, or its channel is gone (404)
    CLAIMED = "claimed"  # a second claim (409)
    BURNED = "burned"  # a wrong code was tried on it (410)
    UNAUTHORIZED = "unauthorized"  # the token fits neither side (401)
    FULL = "full"  # the side's mailbox is full (413)
    TAKEN = "taken"  # allocate: the channel already has a nameplate (409)
    EXHAUSTED = "exhausted"  # allocate: every number is in use (503)


@dataclass(frozen=True)
class Allocated:
    outcome: Outcome
    nameplate: int = 0


@dataclass(frozen=True)
class Read:
    outcome: Outcome
    side: Side | None = None
    messages: tuple[bytes, ...] = field(default=(), repr=False)
    claimed: bool = False


class NameplateStore(Protocol):
    def describe(self) -> str: ...

    async def close(self) -> None: ...

    async def allocate(self, channel_id: str, token_digest: bytes, ttl_ms: int) -> Allocated:
        """Bind the smallest free number to the open channel ``channel_id``."""

    async def claim(self, nameplate: int, token_digest: bytes, claimer: str) -> Outcome:
        """The master's one attempt: OK once, then CLAIMED; GONE, BURNED."""

    async def post(self, nameplate: int, token_digest: bytes, messages: list[bytes]) -> Read:
        """Append to the token's side of the mailbox (FULL past the bound)."""

    async def read(self, nameplate: int, token_digest: bytes, after: int) -> Read:
        """The other side's messages from index ``after`` on."""

    async def burn(self, nameplate: int, token_digest: bytes) -> Outcome:
        """Either side: a key confirmation failed; nothing more on this nameplate."""
