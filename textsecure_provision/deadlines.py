"""``within``: an awaitable bounded in time, without ``asyncio.wait_for``'s lost Ctrl-C.

On Python 3.11 ``wait_for`` swallows a cancellation that arrives in the loop turn in which its
step finishes: the step's result is returned and the cancellation is gone. A Ctrl-C is such a
cancellation (``asyncio.run`` cancels the main task), so a command waiting in a long poll or on
its channel could go on waiting after it (the transport met it first:
tests/unit/test_transport_streams.py; tests/unit/test_deadlines.py pins both behaviours).
``asyncio.timeout`` (3.11+) keeps it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(step: Awaitable[T], seconds: float | None) -> T:
    """``step``, or ``TimeoutError`` after ``seconds`` (None: no bound)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await step
    return await asyncio.wait_for(step, seconds)  # pragma: no cover - Python 3.10
