"""Brute force under the DEFAULT limits (server/config.py RateLimits), against a real server.

Each test proves one cut-off exactly where docs/security.md says it is: the last allowed
guess, the first refused one (429 + Retry-After), that even the right secret is refused
once cut off, and what another address or another number still gets. Other client
addresses are real: the test binds its sockets to 127.0.0.2, 127.0.0.3, ... (all of
127/8 is loopback on Linux), so the server sees distinct peers.

The limiter's clock is injected (monotonic seconds) so that "after 6 minutes one more
guess" is proven without waiting 6 minutes.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from textsecure_provision.server.config import LockoutRule, RateLimits, Rule
from textsecure_provision.server.limits import MemoryRateLimiter

from .support import (
    TEST_CODE,
    LiveServer,
    new_number,
    new_password,
    provisioning_code,
    register,
    start_live_server,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="binds to 127.0.0.2+")

DEFAULTS = RateLimits()
LOCKOUT = LockoutRule()
DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def make_server(tmp_path: Path, clock: FakeMonotonic) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(**fields: object) -> LiveServer:
        srv = start_live_server(
            db_url=f"sqlite:///{tmp_path / f'relay{len(started)}.sqlite3'}",
            limiter=MemoryRateLimiter(clock=clock),
            **fields,
        )
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server()  # the default RateLimits()


def client_from(server: LiveServer, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=10.0)


def guess_code(client: httpx.Client, number: str, code: str) -> httpx.Response:
    return client.put(
        f"/v1/devices/{code}", json={"registrationId": 5}, auth=(number, new_password())
    )


def wrong_code(right: str, i: int) -> str:
    wrong = str(100_000_000 + i)
    return wrong if wrong != right else str(100_000_001 + i)


def assert_refused(r: httpx.Response, rule: Rule) -> int:
    assert r.status_code == 429, r.text
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= math.ceil(rule.period_s / rule.count)  # one token's refill time
    return retry


# -- provisioning codes: PUT /v1/devices/{code} ---------------------------------------------


def test_code_guesses_per_number_are_cut_off_whatever_the_address(
    server: LiveServer, clock: FakeMonotonic
) -> None:
    rule, per_address = DEFAULTS.code_guess_number, DEFAULTS.code_guess_address
    assert rule == Rule(100, 3600) and per_address == Rule(10, 3600)
    with client_from(server) as c:
        master = register(c)
        right = provisioning_code(c, master)
    # The guesser spreads its guesses over ten addresses, each spending its whole budget:
    # the per-number budget holds.
    clients = [client_from(server, f"127.0.0.{i}") for i in range(2, 14)]
    try:
        for i in range(rule.count):
            r = guess_code(clients[i % 10], master.number, wrong_code(right, i))
            assert r.status_code == 403, (i, r.text)
        retry = assert_refused(guess_code(clients[10], master.number, wrong_code(right, 999)), rule)
        assert retry > 30  # ~ 36 s: one guess per 36 s from now on
        # Once cut off, even the right code waits (checked before the code is looked at) ...
        assert_refused(guess_code(clients[11], master.number, right), rule)
        # ... from every address, and without spending the master's own code.
        assert_refused(guess_code(clients[10], master.number, right), rule)
        # One token comes back per 36 s: one more guess then. The right code spends none
        # (only wrong guesses count), so one more wrong guess may follow, and no more.
        clock.now += rule.period_s / rule.count
        assert guess_code(clients[10], master.number, right).status_code == 200
        assert guess_code(clients[11], master.number, wrong_code(right, 998)).status_code == 403
        assert_refused(guess_code(clients[11], master.number, wrong_code(right, 997)), rule)
    finally:
        for c in clients:
            c.close()


def test_code_guesses_per_address_are_cut_off_across_numbers(server: LiveServer) -> None:
    per_address = DEFAULTS.code_guess_address
    assert per_address == Rule(10, 3600)
    with client_from(server, "127.0.0.14") as guesser, client_from(server, "127.0.0.15") as other:
        for i in range(per_address.count):  # one wrong guess at each of ten numbers
            assert guess_code(guesser, new_number(), str(100_000_000 + i)).status_code == 403
        fresh = new_number()
        # A fresh number has its own budget, but this address has none left.
        assert_refused(guess_code(guesser, fresh, "100000000"), per_address)
        # Another address still may (it is the per-address limit that cut it off).
        assert guess_code(other, fresh, "100000000").status_code == 403
        # A malformed guess is refused as such and spends nothing (issue 12 #4).
        assert guess_code(other, fresh, "12345").status_code == 400


def test_provisioning_code_requests_per_account(server: LiveServer) -> None:
    rule = DEFAULTS.provisioning_code_number
    assert rule == Rule(20, 3600)
    with client_from(server) as c:
        master = register(c)
        for _ in range(rule.count):
            assert c.get("/v1/devices/provisioning_code", auth=master.auth).status_code == 200
        assert_refused(c.get("/v1/devices/provisioning_code", auth=master.auth), rule)


# -- passwords: every authenticated request -------------------------------------------------


def test_wrong_passwords_per_address(server: LiveServer, clock: FakeMonotonic) -> None:
    rule = DEFAULTS.auth_failure_address
    assert rule == Rule(30, 600)
    with client_from(server) as c:
        master = register(c)
        victims = [master.number, *(register(c).number for _ in range(2))]
    with client_from(server, "127.0.0.7") as guesser, client_from(server, "127.0.0.8") as other:
        for i in range(rule.count):  # spread over three accounts: the budget is the address's
            r = guesser.get("/v1/devices/", auth=(victims[i % 3], new_password()))
            assert r.status_code == 401, (i, r.text)
        assert_refused(guesser.get("/v1/devices/", auth=(victims[0], new_password())), rule)
        # Cut off before any hashing: even the right password from this address waits.
        assert_refused(guesser.get("/v1/devices/", auth=master.auth), rule)
        # The account itself is not locked: its owner elsewhere gets in.
        assert other.get("/v1/devices/", auth=master.auth).status_code == 200
        # One failure comes back every 20 s.
        clock.now += rule.period_s / rule.count
        assert guesser.get("/v1/devices/", auth=master.auth).status_code == 200  # success: free
        assert guesser.get("/v1/devices/", auth=(master.number, new_password())).status_code == 401
        assert_refused(guesser.get("/v1/devices/", auth=(master.number, new_password())), rule)


# -- registration codes: PUT /v1/accounts/code/{code} ---------------------------------------


def register_with(client: httpx.Client, number: str, code: str) -> httpx.Response:
    return client.put(f"/v1/accounts/code/{code}", json={"registrationId": 5}, auth=(number, new_password()))


def test_registration_code_guesses_per_number(server: LiveServer) -> None:
    """The lockout is the number's, whatever the address: after LOCKOUT.free wrong codes,
    every guess waits, even the right one; another number is not affected."""
    victim = new_number()
    clients = [client_from(server, f"127.0.0.{i}") for i in (16, 17)]
    try:
        for i in range(LOCKOUT.free):
            assert register_with(clients[i % 2], victim, f"{i:06d}").status_code == 403
        r = register_with(clients[0], victim, "999999")
        assert r.status_code == 429 and int(r.headers["retry-after"]) == LOCKOUT.first_s
        assert register_with(clients[1], victim, TEST_CODE).status_code == 429  # even the right one
        assert register_with(clients[0], new_number(), TEST_CODE).status_code == 200
    finally:
        for c in clients:
            c.close()


def test_registration_code_guesses_per_address(server: LiveServer) -> None:
    per_address = DEFAULTS.registration_guess_address
    assert per_address == Rule(20, 3600)
    below_lockout = LOCKOUT.free - 1
    with client_from(server, "127.0.0.18") as guesser, client_from(server, "127.0.0.19") as other:
        for _ in range(per_address.count // below_lockout):
            number = new_number()
            for i in range(below_lockout):
                assert register_with(guesser, number, f"{i:06d}").status_code == 403
        fresh = new_number()
        assert_refused(register_with(guesser, fresh, "000000"), per_address)
        assert register_with(other, fresh, TEST_CODE).status_code == 200


class CapturingDelivery:
    """Stands in for the operator reading the log (``--registration-codes log``)."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def deliver(self, number: str, code: str) -> None:
        self.codes[number] = code


def test_registration_codes_in_log_mode(make_server: Callable[..., LiveServer]) -> None:
    """The delivered code (6 digits, 10 minutes) behind both limits: code requests per
    address, and the number's lockout (the right code is refused once locked out)."""
    srv = make_server(registration_codes="log", test_registration_code=None)
    delivery = CapturingDelivery()
    srv.services.delivery = delivery
    requests_rule = DEFAULTS.sms_code_address
    assert requests_rule == Rule(20, 3600)
    victim = new_number()
    with client_from(srv) as c:
        for _ in range(requests_rule.count):
            assert c.get(f"/v1/accounts/sms/code/{victim}").status_code == 200
        assert_refused(c.get(f"/v1/accounts/sms/code/{victim}"), requests_rule)
        right = delivery.codes[victim]
        assert re.fullmatch(r"[1-9][0-9]{5}", right)
        for i in range(LOCKOUT.free):
            guess = f"{100000 + i}" if f"{100000 + i}" != right else "999999"
            assert register_with(c, victim, guess).status_code == 403
        r = register_with(c, victim, right)
        assert r.status_code == 429 and int(r.headers["retry-after"]) == LOCKOUT.first_s


# -- the figures of docs/security.md ---------------------------------------------------------


def per_hour(rule: Rule, hours: float = 1.0) -> tuple[int, int]:
    """(guesses in the first hour, guesses per hour after): the bucket starts full."""
    refill = rule.count * 3600 / rule.period_s
    return int(rule.count + refill * hours), int(refill)


def test_documented_figures_match_the_defaults() -> None:
    """docs/security.md quotes these numbers; a change of defaults must change the doc."""
    text = DOC.read_text()
    figures = {
        "code_guess_number": (200, 100),
        "code_guess_address": (20, 10),
        "registration_guess_address": (40, 20),
        "auth_failure_address": (210, 180),
        "sms_code_number": (80, 40),
        "sms_code_address": (40, 20),
        "provisioning_code_number": (40, 20),
        "key_fetch_pair": (12, 6),
    }
    for name, expected in figures.items():
        rule = getattr(DEFAULTS, name)
        assert rule is not None and per_hour(rule) == expected, name
        first, after = expected
        row = re.search(rf"`{name}`[^\n]*", text)
        assert row, f"docs/security.md has no row for {name}"
        assert f"| {first} |" in row.group(0) and f"| {after} |" in row.group(0), row.group(0)
    # A provisioning code: 9 digits, no leading zero; 10 minutes; 100 guesses at once + 1/36 s.
    space = 9 * 10**8
    per_code = 100 + 600 / 36
    assert f"{per_code / space:.1e}" in text  # ≈ 1.3e-07 per issued code
    # Up to 5 codes outstanding per account: a guess may hit any of them.
    assert f"{5 * per_code / space:.1e}" in text  # ≈ 6.5e-07 per 10 minutes
    # The registration lockout: guesses on the first day and in a year (limits/backoff.py).
    times, t = [], 0.0
    for failures in range(1000):
        t += LOCKOUT.wait_s(failures)
        times.append(t)
    first_day = sum(1 for x in times if x <= 86_400)
    year = sum(1 for x in times if x <= 365 * 86_400)
    assert (first_day, year) == (15, 379)
    assert f"{year / (9 * 10**5):.1e}" in text  # ≈ 4.2e-04 per year


# -- the in-memory limiter under a spray of fresh keys (server/limits.py) ---------------------


def test_rate_limiter_memory_is_bounded_under_a_spray_of_fresh_keys() -> None:
    """An attacker with many addresses (an IPv6 /64, a botnet) or many numbers makes one new
    bucket per request, each still 'not full' for an hour: memory stays bounded, and a
    request past the bound stays cheap (it was a 31 ms rebuild of the whole table)."""
    import asyncio
    import time

    from textsecure_provision.server.limits import MAX_BUCKETS

    limiter = MemoryRateLimiter(clock=FakeMonotonic())
    rule = Rule(200, 3600)

    async def spray() -> float:
        for i in range(MAX_BUCKETS):
            await limiter.acquire("sms_code_address", rule, f"2001:db8::{i:x}")
        started = time.perf_counter()
        for i in range(1000):  # past the bound
            await limiter.acquire("sms_code_address", rule, f"2001:db8:1::{i:x}")
        return (time.perf_counter() - started) / 1000

    per_acquire_s = asyncio.run(spray())
    print(f"\none acquire past MAX_BUCKETS costs {per_acquire_s * 1e6:.0f} µs (amortized)")
    assert len(limiter) <= MAX_BUCKETS
    # Structural, not timed: one pass shrank the rule to the low-water mark, so the next
    # ~10% of acquires do no sweeping at all (the cost is amortized, not paid per request).
    from textsecure_provision.server.limits import LOW_WATER

    assert len(limiter) < MAX_BUCKETS - (MAX_BUCKETS - LOW_WATER) // 2


def test_a_spent_number_is_not_forgotten_under_a_spray_of_fresh_numbers() -> None:
    import asyncio

    from textsecure_provision.server.limits import MAX_BUCKETS

    limiter = MemoryRateLimiter(clock=FakeMonotonic())
    rule = DEFAULTS.code_guess_number
    assert rule is not None

    async def attack() -> float:
        for _ in range(rule.count):  # the victim's number: cut off
            assert await limiter.acquire("code_guess_number", rule, "+15550001111") == 0
        assert await limiter.acquire("code_guess_number", rule, "+15550001111") > 0
        for i in range(MAX_BUCKETS + 1):  # one guess each at fresh numbers
            await limiter.acquire("code_guess_number", rule, f"+1666{i:08d}")
        return await limiter.acquire("code_guess_number", rule, "+15550001111")

    assert asyncio.run(attack()) > 0  # still cut off


def test_concurrent_wrong_passwords_cannot_overshoot_the_budget(server: LiveServer) -> None:
    """Wrong guesses sent all at once are still counted one by one (no race past the check)."""
    import asyncio

    rule = DEFAULTS.auth_failure_address
    assert rule is not None
    with client_from(server) as c:
        number = register(c).number

    async def burst() -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.9")
        async with httpx.AsyncClient(base_url=server.url, transport=transport) as ac:
            replies = await asyncio.gather(
                *(ac.get("/v1/devices/", auth=(number, new_password())) for _ in range(4 * rule.count))
            )
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) == rule.count  # exactly the budget, never more
