"""SqliteStorage.get_device reads on the event loop's thread (a read-only connection): it
must see every committed change at once, and fall back to the database thread when SQLite
answers busy."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.server.storage.base import NewDevice
from textsecure_provision.server.storage.sqlite import SqliteStorage

NUMBER = "+15550001234"


def device(password_hash: str) -> NewDevice:
    return NewDevice(
        registration_id=7, fetches_messages=True, name=None, password_hash=password_hash
    )


@pytest.fixture
async def storage(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = SqliteStorage(str(tmp_path / "relay.sqlite3"))
    await store.open()
    yield store
    await store.close()


async def test_reads_see_each_commit_at_once(storage: SqliteStorage) -> None:
    assert storage._reader is not None  # the loop-thread path is the one under test
    assert await storage.get_device(NUMBER, 1) is None
    await storage.create_account(NUMBER, device("hash-1"), 1_000)
    first = await storage.get_device(NUMBER, 1)
    assert first is not None and first.password_hash == "hash-1"
    # Registering again replaces the account (a new password): the next read has it.
    await storage.create_account(NUMBER, device("hash-2"), 2_000)
    again = await storage.get_device(NUMBER, 1)
    assert again is not None and again.password_hash == "hash-2"
    assert await storage.remove_device(NUMBER, 1)
    assert await storage.get_device(NUMBER, 1) is None


async def test_busy_reader_falls_back_to_the_database_thread(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.create_account(NUMBER, device("hash-1"), 1_000)

    class Busy:
        def execute(self, *args: Any) -> Any:
            raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(storage, "_reader", Busy())
    record = await storage.get_device(NUMBER, 1)
    assert record is not None and record.password_hash == "hash-1"


async def test_the_reader_refuses_writes(storage: SqliteStorage) -> None:
    assert storage._reader is not None
    with pytest.raises(sqlite3.OperationalError):
        storage._reader.execute("DELETE FROM devices")


async def test_memory_databases_use_the_thread_only() -> None:
    store = SqliteStorage(":memory:")
    await store.open()
    try:
        assert store._reader is None  # a second connection would open another database
        await store.create_account(NUMBER, device("hash-1"), 1_000)
        assert (await store.get_device(NUMBER, 1)) is not None
    finally:
        await store.close()


async def test_a_cached_device_needs_no_read_until_its_number_is_written(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.create_account(NUMBER, device("hash-1"), 1_000)
    first = await storage.get_device(NUMBER, 1)
    reads: list[object] = []

    async def counted(*args: Any) -> Any:
        reads.append(args)
        raise AssertionError("read the database for a cached device")

    monkeypatch.setattr(storage, "_read_device", counted)
    assert await storage.get_device(NUMBER, 1) == first
    assert reads == []
    monkeypatch.undo()
    await storage.touch_device(NUMBER, 1, 90_000)  # a write to the number drops its entries
    touched = await storage.get_device(NUMBER, 1)
    assert touched is not None and touched.last_seen_ms == 90_000
