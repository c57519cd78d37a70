"""The budgets around one guess at a code: junk spends nothing, a guesser meets its own limit.

A request reaches ``code_guess`` only once it passed every check that does not
need the code (credentials, body, password strength, the code's format), so a
malformed request never spends a guess. Then: refused (429) while the address's
or the number's budget is spent or the number is locked out, whatever is
guessed, so a guesser cut off cannot tell a right code from a wrong one. Only
a wrong code (``CodeRejectedError``) spends: one token per address, one per
number, one lockout step. Checking and spending happen under a lock on the
address and then on the number, so concurrent guesses are counted one by one
(across nodes, the overshoot is at most one guess per node).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from textsecure_provision.errors import CodeRejectedError
from textsecure_provision.server.limits.backoff import Lockout
from textsecure_provision.server.services import Services


@asynccontextmanager
async def code_guess(
    svc: Services,
    *,
    address_rule: str,
    address: str,
    number: str,
    number_rule: str | None = None,
    lockout: Lockout | None = None,
) -> AsyncIterator[None]:
    """``async with code_guess(...): <check the code, raising CodeRejectedError if wrong>``."""

    async def check() -> None:
        await svc.limits.check_not_blocked(address_rule, address)
        if number_rule is not None:
            await svc.limits.check_not_blocked(number_rule, number)
        if lockout is not None:
            await lockout.check(number, svc.clock_ms())

    await check()  # before waiting for the locks: a cut-off guesser does not queue
    async with svc.guess_gate.hold("a:" + address), svc.guess_gate.hold("n:" + number):
        await check()
        try:
            yield
        except CodeRejectedError:
            await svc.limits.record(address_rule, address)
            if number_rule is not None:
                await svc.limits.record(number_rule, number)
            if lockout is not None:
                await lockout.failed(number, svc.clock_ms())
            raise
        if lockout is not None:
            await lockout.succeeded(number)
