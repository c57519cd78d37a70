"""The registration code's lockout: wrong guesses at one number wait longer and longer.

A 6-digit code has only 9 × 10^5 values, so a token bucket's steady refill (the
old 10 per hour) let a patient guesser try ~87,600 times a year: ~10 % odds.
Here the first ``free`` wrong guesses cost nothing, then each next guess must
wait ``first_s``, doubling with each wrong guess, up to ``max_s``: with the
defaults (5, 1 min, 1 day) that is 15 guesses on the first day and one a day
after, ~380 a year (odds ~4 × 10^-4, docs/security.md). A right guess clears
the count; ``forget_s`` after the last wrong one it is forgotten (long enough
that pausing does not pay: 15 guesses per 31 days is below one a day).

The count lives in the database (``Storage.*_guess_failures``), so it survives
a restart and is shared by every node of a PostgreSQL deployment.
"""

from __future__ import annotations

import math

from textsecure_provision.errors import RateLimitedError
from textsecure_provision.server.config import LockoutRule
from textsecure_provision.server.metrics import Metrics
from textsecure_provision.server.storage.base import Storage


class Lockout:
    """``check`` before a guess (429 while locked out), then ``failed`` or ``succeeded``."""

    def __init__(self, name: str, rule: LockoutRule, storage: Storage, metrics: Metrics) -> None:
        self.name = name
        self.rule = rule
        self.storage = storage
        self.metrics = metrics

    async def check(self, key: str, now_ms: int) -> None:
        state = await self.storage.get_guess_failures(self.name, key, now_ms)
        if state is None:
            return
        wait_s = self.rule.wait_s(state.failures) - (now_ms - state.last_ms) / 1000
        if wait_s > 0:
            self.metrics.rate_limited(self.name)
            raise RateLimitedError(
                "too many wrong codes for this number; try again later",
                retry_after=math.ceil(wait_s),
            )

    async def failed(self, key: str, now_ms: int) -> None:
        await self.storage.add_guess_failure(
            self.name, key, now_ms, int(self.rule.forget_s * 1000)
        )

    async def succeeded(self, key: str) -> None:
        await self.storage.clear_guess_failures(self.name, key)
