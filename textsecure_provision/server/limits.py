"""Rate limiting (§4: 429 with Retry-After) behind one small interface.

A ``RateLimiter`` keeps token buckets keyed by (rule, key): ``acquire`` takes a
token or says how long to wait, and a refusal takes nothing, so a client that
waits as told gets through. ``MemoryRateLimiter`` serves one node;
``RedisRateLimiter`` (limits_redis.py) implements the same methods so that a
limit spent on one node holds on the others.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Protocol

from textsecure_provision.errors import RateLimitedError
from textsecure_provision.server.config import Rule
from textsecure_provision.server.metrics import Metrics

# Buckets kept per rule. Past it, refilled buckets go first, then those that will be full
# again soonest (the least spent), down to LOW_WATER: memory stays bounded under a spray of
# fresh keys (an IPv6 /64, a botnet), a key that was cut off is the last to be forgotten,
# and the eviction costs O(log n) per acquire, amortized. Rules are kept apart so that
# spraying addresses cannot evict the per-number buckets that guard one account.
MAX_BUCKETS = 100_000
LOW_WATER = MAX_BUCKETS * 9 // 10

_Bucket = tuple[float, float, float]  # (tokens, at, full_at)


class RateLimiter(Protocol):
    async def acquire(self, name: str, rule: Rule, key: str) -> float:
        """Take one token; 0.0 if allowed, else the seconds until one is available."""

    async def peek(self, name: str, rule: Rule, key: str) -> float:
        """Like ``acquire`` but takes nothing: is the bucket empty right now?"""

    async def sweep(self) -> None:
        """Forget buckets that are full again (housekeeping)."""

    async def check(self) -> None:
        """Raise ``ServiceUnavailableError`` if the limiter's backend is down."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """In-process token buckets. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # rule name → key → (tokens, at, full_at). full_at is when the bucket is full
        # again, so a sweep can forget it without knowing its rule.
        self._rules: dict[str, dict[str, _Bucket]] = {}

    @staticmethod
    def _level(rule: Rule, state: _Bucket | None, now: float) -> float:
        if state is None:
            return float(rule.count)
        tokens, at, _ = state
        return min(float(rule.count), tokens + (now - at) * rule.count / rule.period_s)

    async def acquire(self, name: str, rule: Rule, key: str) -> float:
        now = self._clock()
        buckets = self._rules.setdefault(name, {})
        tokens = self._level(rule, buckets.get(key), now)
        if tokens < 1.0:  # a refusal takes nothing
            return (1.0 - tokens) * rule.period_s / rule.count
        tokens -= 1.0
        buckets[key] = (tokens, now, now + (rule.count - tokens) * rule.period_s / rule.count)
        if len(buckets) > MAX_BUCKETS:
            self._shrink(buckets, now)
        return 0.0

    async def peek(self, name: str, rule: Rule, key: str) -> float:
        tokens = self._level(rule, self._rules.get(name, {}).get(key), self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * rule.period_s / rule.count

    async def sweep(self) -> None:
        now = self._clock()
        for name, buckets in list(self._rules.items()):
            self._rules[name] = _refilled_dropped(buckets, now)

    def _shrink(self, buckets: dict[str, _Bucket], now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forgetting it changes nothing.
        for key in [k for k, v in buckets.items() if v[2] <= now]:
            del buckets[key]
        # Still too many: forget those closest to full. Their keys get a full bucket
        # again, the price of a bounded memory (see docs/security.md).
        excess = len(buckets) - LOW_WATER
        if excess > 0:
            for key, _ in heapq.nsmallest(excess, buckets.items(), key=lambda kv: kv[1][2]):
                del buckets[key]

    def __len__(self) -> int:
        return sum(len(b) for b in self._rules.values())

    def describe(self) -> str:
        return "memory (this process only)"

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._rules.clear()


def _refilled_dropped(buckets: dict[str, _Bucket], now: float) -> dict[str, _Bucket]:
    return {k: v for k, v in buckets.items() if v[2] > now}


class Limits:
    """The server's rules plus its limiter: ``await limits.enforce("code_guess_number", key)``."""

    def __init__(self, limiter: RateLimiter, rules: object, metrics: Metrics) -> None:
        self.limiter = limiter
        self.rules = rules
        self.metrics = metrics

    def rule(self, name: str) -> Rule | None:
        rule: Rule | None = getattr(self.rules, name)
        return rule

    async def enforce(self, name: str, key: str) -> None:
        """Take a token or raise ``RateLimitedError`` (429 + Retry-After)."""
        rule = self.rule(name)
        if rule is None:
            return
        wait = await self.limiter.acquire(name, rule, key)
        if wait > 0:
            self._refuse(name, wait)

    async def check_not_blocked(self, name: str, key: str) -> None:
        """Raise ``RateLimitedError`` if the bucket is empty, without taking a token."""
        rule = self.rule(name)
        if rule is None:
            return
        wait = await self.limiter.peek(name, rule, key)
        if wait > 0:
            self._refuse(name, wait)

    async def record(self, name: str, key: str) -> None:
        """Take a token, never raising (counts a failure after the fact)."""
        rule = self.rule(name)
        if rule is not None:
            await self.limiter.acquire(name, rule, key)

    def _refuse(self, name: str, wait: float) -> None:
        self.metrics.rate_limited(name)
        # The key (a number or an address) is not in the message: clients see only the wait.
        raise RateLimitedError("too many requests; try again later", retry_after=math.ceil(wait))
