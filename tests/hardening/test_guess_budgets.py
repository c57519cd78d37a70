"""Issue 12 #4: junk aimed at a victim's number spends none of its guesses, and a guesser at
another address meets its own limit long before the number's: the owner still links.

Under the DEFAULT limits, against a real server on loopback. Other addresses are real
(127.0.0.x source addresses). Before the fix, 10 malformed ``PUT /v1/devices/{code}`` from
anywhere spent the number's 10 guesses and the owner's own link failed with 429.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from textsecure_provision.server.config import LockoutRule, RateLimits

from . import normal_link
from .support import TEST_CODE, LiveServer, new_number, new_password, start_live_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="binds to 127.0.0.2+")

DEFAULTS = RateLimits()
LOCKOUT = LockoutRule()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_live_server(db_url=f"sqlite:///{tmp_path / 'relay.sqlite3'}")
    yield srv
    srv.stop()


def client_from(server: LiveServer, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=10.0)


ATTRS = {"registrationId": 5, "fetchesMessages": True}


async def junk_links(c: httpx.AsyncClient, number: str) -> list[tuple[int, str]]:
    """Ten malformed links aimed at ``number``: each fails on its own (no code is checked)."""
    out = []
    for i in range(4):  # not JSON / not an object / no registrationId / a bad field
        body = [b"{", b"[]", b"{}", b'{"registrationId": -1}'][i]
        r = await c.put("/v1/devices/123456789", content=body, auth=(number, new_password()))
        out.append((r.status_code, r.json()["error"]))
    for password in ("short", "bm90IGVub3VnaA==", "!!not base64!!"):  # weak passwords
        r = await c.put("/v1/devices/123456789", json=ATTRS, auth=(number, password))
        out.append((r.status_code, r.json()["error"]))
    for code in ("abc", "12", "0123456789"):  # can never be a provisioning code
        r = await c.put(f"/v1/devices/{code}", json=ATTRS, auth=(number, new_password()))
        out.append((r.status_code, r.json()["error"]))
    return out


def test_malformed_links_spend_no_guess(server: LiveServer) -> None:
    async def scenario() -> None:
        master = await normal_link.register_master(server.url)
        async with client_from(server, "127.0.0.2") as junk:
            for _ in range(3):  # 30 junk requests: three times the old per-number budget
                statuses = await junk_links(junk, master.number)
                assert [s for s, _ in statuses] == [400] * 10, statuses
        assert "provisioning code is 6 to 9 decimal digits" in statuses[-1][1]
        # The owner links (from 127.0.0.1) as if nothing had happened.
        seconds = await normal_link.link(server.url, master)
        print(f"\nafter 30 junk links at the number: the owner's link took {seconds:.2f} s")
        assert seconds < normal_link.LINK_TIMEOUT_S
        assert server.services.metrics.rate_limit_refusals == {}

    asyncio.run(scenario())


def test_owner_links_while_other_addresses_spray_wrong_codes(server: LiveServer) -> None:
    per_address, per_number = DEFAULTS.code_guess_address, DEFAULTS.code_guess_number
    assert per_address is not None and per_number is not None
    sprayers = [f"127.0.0.{i}" for i in range(3, 8)]
    # Five addresses spend their whole budgets, together half of the number's.
    assert len(sprayers) * per_address.count <= per_number.count // 2

    async def spray(address: str, number: str) -> list[int]:
        async with client_from(server, address) as c:
            statuses = []
            for i in range(per_address.count + 3):
                r = await c.put(
                    f"/v1/devices/{100_000_000 + i}", json=ATTRS, auth=(number, new_password())
                )
                statuses.append(r.status_code)
            return statuses

    async def scenario() -> None:
        master = await normal_link.register_master(server.url)
        sprays = asyncio.gather(*(spray(a, master.number) for a in sprayers))
        link = normal_link.link(server.url, master)  # runs while they spray
        results, seconds = await asyncio.gather(sprays, link)
        for statuses in results:
            assert statuses == [403] * per_address.count + [429] * 3, statuses
        print(f"\nduring a spray from {len(sprayers)} addresses: the owner's link took {seconds:.2f} s")
        assert seconds < normal_link.LINK_TIMEOUT_S
        # And once more after the spray: the number's budget still has room.
        await normal_link.link(server.url, master)

    asyncio.run(scenario())


def test_code_requests_from_another_address_do_not_starve_the_owner(server: LiveServer) -> None:
    per_address = DEFAULTS.sms_code_address
    assert per_address is not None

    async def scenario() -> None:
        victim = new_number()
        async with client_from(server, "127.0.0.8") as attacker:
            for _ in range(per_address.count):
                assert (await attacker.get(f"/v1/accounts/sms/code/{victim}")).status_code == 200
            r = await attacker.get(f"/v1/accounts/sms/code/{victim}")
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
            junk = await attacker.get("/v1/accounts/sms/code/not-a-number")
            assert junk.status_code == 400  # malformed: spends nothing, refused as such
        async with client_from(server, "127.0.0.1") as owner:
            assert (await owner.get(f"/v1/accounts/sms/code/{victim}")).status_code == 200

    asyncio.run(scenario())


def test_registration_code_lockout_backs_off_per_number(server: LiveServer) -> None:
    """5 wrong codes free, then a wait doubling from 60 s per wrong code; junk counts
    nothing; the right code is refused while locked out and clears the count once in."""
    now = [1_800_000_000_000]
    server.services.clock_ms = lambda: now[0]
    victim = new_number()

    async def guess(c: httpx.AsyncClient, code: str, password: str | None = None) -> httpx.Response:
        return await c.put(
            f"/v1/accounts/code/{code}", json=ATTRS, auth=(victim, password or new_password())
        )

    async def scenario() -> None:
        async with client_from(server, "127.0.0.9") as c:
            for junk in ("abc", "1", "1234567890123"):
                assert (await guess(c, junk)).status_code == 400
            assert (await guess(c, "999999", "weak")).status_code == 400
            for i in range(LOCKOUT.free):
                assert (await guess(c, f"{100000 + i}")).status_code == 403, i
            waits = []
            for step in range(3):
                r = await guess(c, "100100")
                assert r.status_code == 429, r.text
                assert r.json()["error"] == "too many wrong codes for this number; try again later"
                assert (await guess(c, TEST_CODE)).status_code == 429  # even the right one
                waits.append(int(r.headers["retry-after"]))
                now[0] += waits[-1] * 1000
                assert (await guess(c, f"{200000 + step}")).status_code == 403
            assert waits == [60, 120, 240]
            r = await guess(c, TEST_CODE)
            assert r.status_code == 429 and int(r.headers["retry-after"]) == 480
            now[0] += 480_000
            assert (await guess(c, TEST_CODE)).status_code == 200  # registered
            assert (await guess(c, "100000")).status_code == 403  # the count starts again

    asyncio.run(scenario())


def test_code_requests_by_someone_else_never_void_the_owners_code(tmp_path: Path) -> None:
    """``log`` mode: while the owner's code is unexpired, a request from anyone delivers the
    same code again (before, each request replaced it: a stranger asking once a minute kept
    the owner from ever registering)."""
    srv = start_live_server(
        db_url=f"sqlite:///{tmp_path / 'log.sqlite3'}", registration_codes="log",
        test_registration_code=None,
    )  # fmt: skip
    delivered: list[str] = []
    srv.services.delivery = type("D", (), {"deliver": lambda self, n, c: delivered.append(c)})()
    victim = new_number()

    async def scenario() -> int:
        async with client_from(srv, "127.0.0.1") as owner, client_from(srv, "127.0.0.20") as other:
            assert (await owner.get(f"/v1/accounts/sms/code/{victim}")).status_code == 200
            for _ in range(3):
                assert (await other.get(f"/v1/accounts/sms/code/{victim}")).status_code == 200
            r = await owner.put(
                f"/v1/accounts/code/{delivered[0]}", json=ATTRS, auth=(victim, new_password())
            )
            return r.status_code

    try:
        assert asyncio.run(scenario()) == 200
    finally:
        srv.stop()
    assert len(delivered) == 4 and len(set(delivered)) == 1
