"""The memory limiter, with the buckets of the guess rules written through to the database.

Without it, a restart hands every guesser a full budget again. Buckets live in
memory as before (``peek``, on every authenticated request, reads no database);
each token taken from a rule in ``PERSISTED_RULES`` is also saved, as the wall
time its bucket is full again, and ``open`` puts the saved buckets back. A
refusal takes nothing, so it writes nothing: an address that is cut off costs
no writes. Used with SQLite and with PostgreSQL without Redis; with ``--redis``
the buckets live in Redis (redis.py).

Not persisted, on purpose: ``message_send_device``, ``channel_create_address``
and ``key_fetch_pair`` meter traffic, not guesses at a secret, and refill within
minutes; saving them would cost a write per message, channel or key fetch.
"""

from __future__ import annotations

from collections.abc import Callable

from textsecure_provision.clock import now_ms
from textsecure_provision.server.config import RateLimits, Rule
from textsecure_provision.server.limits.memory import LOW_WATER, MemoryRateLimiter
from textsecure_provision.server.storage.base import Storage

PERSISTED_RULES = frozenset(
    {
        "code_guess_number",
        "code_guess_address",
        "registration_guess_address",
        "auth_failure_address",
        "sms_code_number",
        "sms_code_address",
        "provisioning_code_number",
    }
)


class PersistentRateLimiter:
    def __init__(
        self,
        storage: Storage,
        rules: RateLimits,
        *,
        memory: MemoryRateLimiter | None = None,
        wall_ms: Callable[[], int] = now_ms,
        persisted: frozenset[str] = PERSISTED_RULES,
    ) -> None:
        self.storage = storage
        self.rules = rules
        self.memory = memory if memory is not None else MemoryRateLimiter()
        self._wall_ms = wall_ms
        self.persisted = persisted

    def describe(self) -> str:
        return "memory, guess budgets saved in the database"

    async def open(self) -> None:
        """Put back the buckets saved before the last stop (the most spent first)."""
        now = self._wall_ms()
        for name, key, full_at_ms in await self.storage.load_limit_buckets(now, LOW_WATER):
            rule: Rule | None = getattr(self.rules, name, None)
            if rule is not None and name in self.persisted:
                self.memory.restore(name, rule, key, (full_at_ms - now) / 1000)

    async def acquire(self, name: str, rule: Rule, key: str) -> float:
        wait = await self.memory.acquire(name, rule, key)
        if wait == 0.0 and name in self.persisted:
            full_at = self._wall_ms() + int(self.memory.full_in(name, key) * 1000) + 1
            await self.storage.save_limit_buckets([(name, key, full_at)])
        return wait

    async def peek(self, name: str, rule: Rule, key: str) -> float:
        return await self.memory.peek(name, rule, key)

    async def sweep(self) -> None:
        await self.memory.sweep()  # the saved rows go in Storage.purge_expired

    async def check(self) -> None:
        return None  # the database is checked as storage

    async def close(self) -> None:
        await self.memory.close()

    def __len__(self) -> int:
        return len(self.memory)
