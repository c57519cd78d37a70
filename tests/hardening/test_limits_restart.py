"""Issue 12 #9: the guess budgets survive a restart (SQLite, and PostgreSQL without Redis).
Before, every bucket was full again after a restart: a guesser cut off got a fresh budget
each time the server restarted.

Three guessers are cut off (wrong provisioning codes, wrong registration codes, wrong
passwords), each from its own 127.0.0.x address; the server stops; a new server starts
on the same database; all three are still refused, and the owner still links.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from textsecure_provision.server.config import LockoutRule, RateLimits

from . import normal_link
from .support import TEST_CODE, LiveServer, new_number, new_password, start_live_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="binds to 127.0.0.2+")

POSTGRES_URL = os.environ.get(
    "PROVISION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
LIMITS = RateLimits()
ATTRS = {"registrationId": 5, "fetchesMessages": True}


async def _drop_schema(schema: str) -> None:
    import asyncpg

    con = await asyncpg.connect(POSTGRES_URL.split("?")[0], timeout=10)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.sqlite3'}"
        return
    schema = f"h12b_restart_{secrets.token_hex(4)}"
    try:
        asyncio.run(_drop_schema(schema))
    except OSError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield f"{POSTGRES_URL}?schema={schema}"
    asyncio.run(_drop_schema(schema))


def client_from(server: LiveServer, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=10.0)


async def guesses(server: LiveServer, number: str, victim: str) -> dict[str, list[int]]:
    """Each guesser spends its budget and one try more."""
    out: dict[str, list[int]] = {"code": [], "registration": [], "password": []}
    async with client_from(server, "127.0.0.2") as c:
        for i in range(11):
            r = await c.put(f"/v1/devices/{100_000_000 + i}", json=ATTRS, auth=(number, new_password()))
            out["code"].append(r.status_code)
    async with client_from(server, "127.0.0.3") as c:
        for i in range(6):
            r = await c.put(f"/v1/accounts/code/{100_000 + i}", json=ATTRS, auth=(victim, new_password()))
            out["registration"].append(r.status_code)
    async with client_from(server, "127.0.0.4") as c:
        for _ in range(31):
            r = await c.get("/v1/devices/", auth=(number, new_password()))
            out["password"].append(r.status_code)
    return out


def test_guess_budgets_survive_a_restart(db_url: str) -> None:
    per_address, lockout = LIMITS.code_guess_address, LockoutRule()
    auth = LIMITS.auth_failure_address
    assert per_address is not None and auth is not None
    victim = new_number()

    first = start_live_server(db_url=db_url)
    try:
        master = asyncio.run(normal_link.register_master(first.url))
        before = asyncio.run(guesses(first, master.number, victim))
    finally:
        first.stop()
    assert before["code"] == [403] * per_address.count + [429]
    assert before["registration"] == [403] * lockout.free + [429]
    assert before["password"] == [401] * auth.count + [429]

    second = start_live_server(db_url=db_url)  # the same database
    try:
        after = asyncio.run(guesses(second, master.number, victim))
        # The owner, from its own address, links as before.
        assert asyncio.run(normal_link.link(second.url, master)) < normal_link.LINK_TIMEOUT_S
        # And the registration code still works for a number nobody guessed at.
        async def register_fresh() -> int:
            async with client_from(second, "127.0.0.3") as c:
                r = await c.put(f"/v1/accounts/code/{TEST_CODE}", json=ATTRS, auth=(new_number(), new_password()))
                return r.status_code

        assert asyncio.run(register_fresh()) == 200
    finally:
        second.stop()
    assert after == {"code": [429] * 11, "registration": [429] * 6, "password": [429] * 31}
