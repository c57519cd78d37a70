"""The limiter interface and ``Limits``, the server's rules applied through one limiter."""

from __future__ import annotations

import math
from typing import Protocol

from textsecure_provision.errors import RateLimitedError
from textsecure_provision.server.config import Rule
from textsecure_provision.server.metrics import Metrics


class RateLimiter(Protocol):
    async def open(self) -> None:
        """Called once the storage is open (persistent.py puts saved buckets back)."""

    async def acquire(self, name: str, rule: Rule, key: str) -> float:
        """Take one token; 0.0 if allowed, else the seconds until one is available."""

    async def peek(self, name: str, rule: Rule, key: str) -> float:
        """Like ``acquire`` but takes nothing: is the bucket empty right now?"""

    async def sweep(self) -> None:
        """Forget buckets that are full again (housekeeping)."""

    async def check(self) -> None:
        """Raise ``ServiceUnavailableError`` if the limiter's backend is down."""

    async def close(self) -> None: ...




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
