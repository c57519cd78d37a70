"""``within`` bounds an await in time and, unlike 3.11's ``asyncio.wait_for``, never loses a
cancellation (a Ctrl-C) that arrives in the loop turn in which its step finishes."""

from __future__ import annotations

import asyncio
import sys

import pytest

from textsecure_provision.deadlines import within


async def _cancel_as_the_step_finishes(bound: object) -> asyncio.Task[int]:
    step: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(bound(step, 10))  # type: ignore[operator]
    await asyncio.sleep(0)  # one loop turn: the task now waits on the step
    step.set_result(1)
    task.cancel()  # in the same turn: as asyncio.run does on Ctrl-C
    return task


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no asyncio.timeout")
async def test_a_cancellation_as_the_step_finishes_is_kept() -> None:
    task = await _cancel_as_the_step_finishes(within)
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the wait_for behaviour of 3.11")
async def test_wait_for_would_have_lost_it() -> None:
    # Why `within` exists: this is what the flows' waits did before.
    task = await _cancel_as_the_step_finishes(asyncio.wait_for)
    assert await task == 1


async def test_the_bound_and_the_result() -> None:
    assert await within(asyncio.sleep(0, "done"), 5) == "done"
    with pytest.raises(TimeoutError):
        await within(asyncio.get_running_loop().create_future(), 0.01)
