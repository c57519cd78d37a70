"""The policy of links by short code: who may do what to a nameplate, and what it answers.

Routes (routes/nameplates.py) parse the request and call one function here;
the store (memory or Redis) does each step atomically. Limits: allocating
counts per address (like opening a channel), claiming per address and per
account (a claim is one guess at a 16-bit secret, docs/security.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass

from textsecure_provision.errors import (
    ChannelGoneError,
    ConflictError,
    NameplateBurnedError,
    NameplateClaimedError,
    NameplateGoneError,
    ServiceUnavailableError,
    ShortCodesUnsupportedError,
    TooLargeError,
)
from textsecure_provision.server.fanout.base import MailboxKey
from textsecure_provision.server.nameplates.base import NameplateStore, Outcome, Read
from textsecure_provision.server.services import Services

TOKEN_BYTES = 32


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def wake_key(nameplate: int) -> MailboxKey:
    # Shares the fan-out's wake-up topics; the "np:" prefix keeps them apart from devices'.
    return MailboxKey(f"np:{nameplate}")


_ERRORS = {
    Outcome.GONE: (NameplateGoneError, "no open short code with this number"),
    Outcome.CLAIMED: (NameplateClaimedError, "this short code was already used"),
    Outcome.BURNED: (NameplateBurnedError, "this short code is burned: a wrong code was tried"),
    # A token of no side: most likely one of an earlier allocation of this number, whose
    # nameplate is gone (the number was reused); to its holder, the nameplate is gone.
    Outcome.UNAUTHORIZED: (
        NameplateGoneError,
        "no open short code with this number for this token",
    ),
    Outcome.FULL: (TooLargeError, "the nameplate's mailbox is full"),
}


def _check(outcome: Outcome) -> None:
    if outcome is not Outcome.OK:
        cls, message = _ERRORS[outcome]
        raise cls(message)


@dataclass(frozen=True)
class Allocation:
    nameplate: int
    token: bytes
    expires_in_s: float


class Nameplates:
    def __init__(self, svc: Services, store: NameplateStore, *, enabled: bool) -> None:
        self.svc = svc
        self.store = store
        self.enabled = enabled

    def require_enabled(self) -> None:
        if not self.enabled:
            raise ShortCodesUnsupportedError("this server does not offer links by short code")

    async def allocate(self, channel_id: str, address: str) -> Allocation:
        self.require_enabled()
        await self.svc.limits.enforce("nameplate_allocate_address", address)
        token = secrets.token_bytes(TOKEN_BYTES)
        ttl_s = self.svc.config.channel_ttl_s
        result = await self.store.allocate(channel_id, token_digest(token), int(ttl_s * 1000))
        if result.outcome is Outcome.GONE:
            raise ChannelGoneError("no such open channel")
        if result.outcome is Outcome.TAKEN:
            raise ConflictError("this channel already has a nameplate")
        if result.outcome is Outcome.EXHAUSTED:
            raise ServiceUnavailableError("every nameplate is in use; try again shortly")
        return Allocation(result.nameplate, token, ttl_s)

    async def claim(self, nameplate: int, number: str, device_id: int) -> tuple[bytes, Read]:
        """The master's one attempt; returns its token and the secondary's first messages."""
        token = secrets.token_bytes(TOKEN_BYTES)
        _check(await self.store.claim(nameplate, token_digest(token), f"{number}.{device_id}"))
        return token, await self.store.read(nameplate, token_digest(token), 0)

    async def post(self, nameplate: int, token: bytes, messages: list[bytes]) -> None:
        self.require_enabled()
        answer = await self.store.post(nameplate, token_digest(token), messages)
        _check(answer.outcome)
        await self.svc.fanout.notify(wake_key(nameplate))

    async def read(self, nameplate: int, token: bytes, after: int, wait_s: float) -> Read:
        self.require_enabled()
        digest = token_digest(token)
        answer = await self.store.read(nameplate, digest, after)
        if answer.outcome is Outcome.OK and not answer.messages and wait_s > 0:
            answer = await self._wait(nameplate, digest, after, wait_s)
        _check(answer.outcome)
        return answer

    async def _wait(self, nameplate: int, digest: bytes, after: int, wait_s: float) -> Read:
        # Subscribe first, then re-read: a post between the two still wakes us (fanout/base.py).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        async with self.svc.fanout.subscribe(wake_key(nameplate)) as waiter:
            while True:
                answer = await self.store.read(nameplate, digest, after)
                if answer.outcome is not Outcome.OK or answer.messages or self.svc.stopping:
                    return answer
                remaining = deadline - loop.time()
                if remaining <= 0 or not await waiter.wait(remaining):
                    return await self.store.read(nameplate, digest, after)

    async def burn(self, nameplate: int, token: bytes) -> None:
        self.require_enabled()
        outcome = await self.store.burn(nameplate, token_digest(token))
        if outcome is not Outcome.BURNED:  # burning twice is fine: it is burned
            _check(outcome)
        await self.svc.fanout.notify(wake_key(nameplate))
