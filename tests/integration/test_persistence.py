"""What survives a restart (§4: a stored message is kept until acknowledged)."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from textsecure_provision.errors import StoreError
from textsecure_provision.server.storage.sqlite import SqliteStorage

from .conftest import RunningServer
from .helpers import link, message, register, upload_keys


async def test_message_survives_a_restart(server_factory: Callable[..., RunningServer]) -> None:
    first = server_factory(db_name="persist")
    async with httpx.AsyncClient(base_url=first.url) as client:
        master = await register(client)
        await upload_keys(client, master, prekeys=4)
        second = await link(client, master)
        r = await client.put(
            f"/v1/messages/{master.number}",
            json={"messages": [message(second, b"kept across restarts")]},
            auth=master.auth,
        )
        assert r.status_code == 200
    first.stop()

    again = server_factory(db_name="persist")
    async with httpx.AsyncClient(base_url=again.url) as client:
        # Credentials, keys and the unacknowledged message are all still there.
        r = await client.get("/v1/messages/", auth=second.auth)
        assert r.status_code == 200
        (m,) = r.json()["messages"]
        assert base64.b64decode(m["body"]) == b"kept across restarts"
        assert (await client.get("/v1/keys/", auth=master.auth)).json() == {"count": 4}
        assert (
            await client.delete(f"/v1/messages/{m['guid']}", auth=second.auth)
        ).status_code == 200
    again.stop()

    third = server_factory(db_name="persist")
    async with httpx.AsyncClient(base_url=third.url) as client:
        r = await client.get("/v1/messages/", auth=second.auth)
        assert r.json()["messages"] == []  # acknowledged means gone, also after a restart


async def test_provisioning_code_survives_a_restart(
    server_factory: Callable[..., RunningServer],
) -> None:
    first = server_factory(db_name="codes")
    async with httpx.AsyncClient(base_url=first.url) as client:
        master = await register(client)
        code = (await client.get("/v1/devices/provisioning_code", auth=master.auth)).json()
    first.stop()
    again = server_factory(db_name="codes")
    async with httpx.AsyncClient(base_url=again.url) as client:
        r = await client.put(
            f"/v1/devices/{code['verificationCode']}",
            json={"registrationId": 9},
            auth=(master.number, base64.b64encode(b"p" * 16).decode()),
        )
        assert r.status_code == 200


async def test_migrations_apply_once_and_record_their_version(tmp_path: Path) -> None:
    path = str(tmp_path / "m.sqlite3")
    for _ in range(2):
        storage = SqliteStorage(path)
        await storage.open()
        assert await storage.schema_version() == 3
        await storage.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT version, name FROM schema_version").fetchall() == [
        (1, "initial"),
        (2, "provisioning_codes_per_link"),
        (3, "limits_and_quotas"),
    ]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert (Path(path).stat().st_mode & 0o777) == 0o600


async def test_a_database_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "future.sqlite3")
    storage = SqliteStorage(path)
    await storage.open()
    await storage.close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    con.commit()
    con.close()
    with pytest.raises(StoreError):
        await SqliteStorage(path).open()


async def test_long_poll_answers_promptly_when_the_server_stops(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as client:
        bob = await register(client)
        poll = asyncio.create_task(
            client.get("/v1/messages/", params={"wait": "50"}, auth=bob.auth)
        )
        # The stop must meet a parked long-poll, or the test would prove nothing.
        deadline = time.monotonic() + 5
        while not server.parked_long_polls():
            assert time.monotonic() < deadline, "the long-poll never parked"
            assert not poll.done(), f"the long-poll returned before parking: {poll.result()}"
            await asyncio.sleep(0.01)
        assert server.parked_long_polls() == 1
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        r = await asyncio.wait_for(poll, 10)
        assert r.status_code == 200
        assert r.json() == {"messages": [], "more": False}
        assert time.monotonic() - started < 5  # not the 50 s wait, nor the graceful timeout


async def test_upgrade_to_codes_per_link_keeps_outstanding_codes(tmp_path: Path) -> None:
    """A database of the first round (schema 1, one code per account) upgrades in place."""
    from textsecure_provision.server.storage.migrations import load_migrations, split_statements

    path = str(tmp_path / "v1.sqlite3")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(
        "CREATE TABLE schema_version "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
    )
    for statement in split_statements(load_migrations("sqlite")[0].sql, sqlite3.complete_statement):
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, 'initial', 0)")
    con.execute(
        "INSERT INTO accounts (number, identity_key, next_device_id, created_ms) "
        "VALUES ('+15550001111', NULL, 2, 0)"
    )
    con.execute("INSERT INTO provisioning_codes VALUES ('+15550001111', '123456789', 10000)")
    con.close()
    storage = SqliteStorage(path)
    await storage.open()
    try:
        assert await storage.schema_version() == 3
        assert await storage.has_provisioning_code("+15550001111", "123456789", 5)
        assert not await storage.has_provisioning_code("+15550001111", "123456789", 10000)
        await storage.put_provisioning_code("+15550001111", "223456789", 20000, keep=5)
        assert await storage.has_provisioning_code("+15550001111", "123456789", 5)  # both kept
    finally:
        await storage.close()
