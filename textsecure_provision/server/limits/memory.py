"""``RateLimiter`` in this process: token buckets in a dict per rule, bounded in size.

One node only (``redis.py`` shares buckets between nodes). ``full_in`` and
``restore`` let ``persistent.py`` save a bucket and put it back after a restart.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from textsecure_provision.server.config import Rule

# Buckets kept per rule. Past it, refilled buckets go first, then those that will be full
# again soonest (the least spent), down to LOW_WATER: memory stays bounded under a spray of
# fresh keys (an IPv6 /64, a botnet), a key that was cut off is the last to be forgotten,
# and the eviction costs O(log n) per acquire, amortized. Rules are kept apart so that
# spraying addresses cannot evict the per-number buckets that guard one account.
MAX_BUCKETS = 100_000
LOW_WATER = MAX_BUCKETS * 9 // 10

_Bucket = tuple[float, float, float]  # (tokens, at, full_at)


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

    def full_in(self, name: str, key: str) -> float:
        """Seconds until the bucket is full again (0.0: full, or never touched)."""
        state = self._rules.get(name, {}).get(key)
        return 0.0 if state is None else max(0.0, state[2] - self._clock())

    def restore(self, name: str, rule: Rule, key: str, full_in_s: float) -> None:
        """Put back a bucket saved as "full again in ``full_in_s`` seconds" (a restart)."""
        if full_in_s <= 0:
            return
        now = self._clock()
        tokens = max(0.0, rule.count - full_in_s * rule.count / rule.period_s)
        buckets = self._rules.setdefault(name, {})
        buckets[key] = (tokens, now, now + (rule.count - tokens) * rule.period_s / rule.count)
        if len(buckets) > MAX_BUCKETS:
            self._shrink(buckets, now)

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

    async def open(self) -> None:
        return None

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._rules.clear()


def _refilled_dropped(buckets: dict[str, _Bucket], now: float) -> dict[str, _Bucket]:
    return {k: v for k, v in buckets.items() if v[2] > now}


