"""The in-process rate limiter stays bounded under a key spray without forgetting what matters."""

from __future__ import annotations

from textsecure_provision.server.config import Rule
from textsecure_provision.server.limits import LOW_WATER, MAX_BUCKETS, MemoryRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_spray_on_one_rule_keeps_other_rules_buckets() -> None:
    limiter = MemoryRateLimiter(clock=Clock())
    victim = Rule(2, 3600)
    assert await limiter.acquire("code_guess_number", victim, "+15550001111") == 0
    assert await limiter.acquire("code_guess_number", victim, "+15550001111") == 0
    spray = Rule(200, 3600)
    for i in range(MAX_BUCKETS + 1):
        await limiter.acquire("code_guess_address", spray, f"2001:db8::{i:x}")
    assert len(limiter) <= MAX_BUCKETS + 1
    # The spent per-number bucket was not evicted by the address spray.
    assert await limiter.acquire("code_guess_number", victim, "+15550001111") > 0


async def test_eviction_keeps_the_most_spent_buckets() -> None:
    """A key that was cut off long ago outlives a spray of fresh, barely used keys."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    rule = Rule(10, 3600)
    for _ in range(10):
        assert await limiter.acquire("r", rule, "victim") == 0
    assert await limiter.acquire("r", rule, "victim") > 0  # cut off
    clock.now += 1
    for i in range(MAX_BUCKETS):
        await limiter.acquire("r", rule, f"k{i}")  # one token each: full again soonest
    assert LOW_WATER - 1 <= len(limiter) <= MAX_BUCKETS
    assert await limiter.peek("r", rule, "victim") > 0  # still remembered as spent
    assert await limiter.peek("r", rule, "k0") == 0  # the least spent were forgotten


async def test_refusal_takes_nothing_and_refill_is_forgotten() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    rule = Rule(1, 60)
    assert await limiter.acquire("r", rule, "a") == 0
    wait = await limiter.acquire("r", rule, "a")
    assert 59 < wait <= 60
    clock.now += 30
    assert 29 < await limiter.acquire("r", rule, "a") <= 30  # the refusal did not push it back
    clock.now += 31
    await limiter.sweep()
    assert len(limiter) == 0
    assert await limiter.acquire("r", rule, "a") == 0
