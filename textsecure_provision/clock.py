"""The wall clock in milliseconds since the epoch: the unit of every timestamp on the wire (§4)
and in the store. One function, so a test or a reader finds every use of the clock in one grep.
Only the edges call it: the core (``crypto/``, ``protocol/``) is given times, it reads no clock.
This module imports nothing from the package."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
