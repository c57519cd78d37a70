"""The PostgreSQL store on its own: migrations, and the atomicity promises of storage/base.py
under real concurrency (several pooled connections racing, as several nodes would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from textsecure_provision.errors import CodeRejectedError, InvalidInputError, StoreError
from textsecure_provision.server.storage.base import NewDevice, PreKeyRecord, SignedPreKeyRecord
from textsecure_provision.server.storage.postgres import PostgresStorage

from .conftest import SharedServices

pytestmark = [pytest.mark.postgres]

NUMBER = "+15550001234"


def _device(registration_id: int = 1) -> NewDevice:
    return NewDevice(registration_id, True, None, "pbkdf2_sha256$1$x$y")


@pytest.fixture
async def url(shared_services: SharedServices) -> str:
    return shared_services.db_url(shared_services.new_scope(), "store")


@pytest.fixture
async def stores(url: str) -> AsyncIterator[list[PostgresStorage]]:
    """Two stores on one schema: two nodes' pools."""
    pair = [PostgresStorage(url), PostgresStorage(url)]
    await asyncio.gather(*(s.open() for s in pair))  # two nodes starting at once
    try:
        yield pair
    finally:
        for s in pair:
            await s.close()


async def test_migrations_apply_once_even_when_nodes_start_together(
    stores: list[PostgresStorage], url: str
) -> None:
    assert [await s.schema_version() for s in stores] == [3, 3]
    con = await asyncpg.connect(url.split("?")[0])
    try:
        schema = stores[0].schema
        rows = await con.fetch(f'SELECT version, name FROM "{schema}".schema_version')
        assert [tuple(r) for r in rows] == [
            (1, "initial"),
            (2, "provisioning_codes_per_link"),
            (3, "limits_and_quotas"),
        ]
        await con.execute(f"INSERT INTO \"{schema}\".schema_version VALUES (99, 'future', 0)")
    finally:
        await con.close()
    with pytest.raises(StoreError, match="newer than this server"):
        await PostgresStorage(url).open()


async def _link_or_rejected(store: PostgresStorage, code: str, now: int, i: int) -> int | None:
    try:
        return await store.add_device_with_code(NUMBER, code, _device(i), now, max_devices=20)
    except CodeRejectedError:
        return None


async def test_a_code_is_consumed_once_by_racing_nodes(stores: list[PostgresStorage]) -> None:
    a, b = stores
    await a.create_account(NUMBER, _device(), 1)
    for round_ in range(3):
        await a.put_provisioning_code(NUMBER, "123456789", 10_000, keep=5)
        results = await asyncio.gather(
            *(_link_or_rejected(s, "123456789", 5, i) for i, s in enumerate((a, b) * 4))
        )
        assert sorted(results, key=lambda r: r or 0) == [None] * 7 + [2 + round_]
    await a.put_provisioning_code(NUMBER, "123456789", 10, keep=5)
    assert not await b.has_provisioning_code(NUMBER, "123456789", 10)  # expired
    assert await _link_or_rejected(b, "123456789", 10, 9) is None
    assert await _link_or_rejected(b, "000000000", 5, 9) is None
    assert len(await a.list_devices(NUMBER)) == 4


async def test_several_codes_outstanding_oldest_dropped(stores: list[PostgresStorage]) -> None:
    a, b = stores
    await a.create_account(NUMBER, _device(), 1)
    codes = [f"1234567{i:02d}" for i in range(7)]
    for code in codes:
        await a.put_provisioning_code(NUMBER, code, 10_000, keep=5)
    alive = [await b.has_provisioning_code(NUMBER, c, 5) for c in codes]
    assert alive == [False, False, True, True, True, True, True]
    assert await b.add_device_with_code(NUMBER, codes[2], _device(1), 5, max_devices=6) == 2
    assert await a.add_device_with_code(NUMBER, codes[6], _device(2), 5, max_devices=6) == 3
    assert not await a.has_provisioning_code(NUMBER, codes[2], 5)
    assert await a.has_provisioning_code(NUMBER, codes[3], 5)


async def test_racing_links_never_exceed_max_devices_or_reuse_ids(
    stores: list[PostgresStorage],
) -> None:
    a, b = stores
    await a.create_account(NUMBER, _device(), 1)
    ids = await asyncio.gather(
        *(s.add_device(NUMBER, _device(i), 2, max_devices=6) for i, s in enumerate((a, b) * 5))
    )
    added = sorted(i for i in ids if i is not None)
    assert added == [2, 3, 4, 5, 6]  # five fit next to device 1, each id once
    assert ids.count(None) == 5
    assert [d.device_id for d in await b.list_devices(NUMBER)] == [1, 2, 3, 4, 5, 6]


async def test_each_one_time_prekey_goes_out_once(stores: list[PostgresStorage]) -> None:
    a, b = stores
    await a.create_account(NUMBER, _device(), 1)
    spk = SignedPreKeyRecord(1, b"\x05" + b"s" * 32, b"g" * 64)
    prekeys = [PreKeyRecord(i, b"\x05" + bytes([i]) * 32) for i in range(1, 21)]
    last_resort = PreKeyRecord(0xFFFFFF, b"\x05" + b"l" * 32)
    await a.replace_keys(NUMBER, 1, spk, prekeys, last_resort)
    bundles = await asyncio.gather(*(s.take_key_bundles(NUMBER, [1]) for s in (a, b) * 15))
    handed = [bundle[0].prekey.key_id for bundle in bundles if bundle[0].prekey is not None]
    one_time = sorted(k for k in handed if k != 0xFFFFFF)
    assert one_time == list(range(1, 21))  # each exactly once
    assert handed.count(0xFFFFFF) == 10  # then the last-resort key, which stays
    assert await b.count_prekeys(NUMBER, 1) == 0


async def test_racing_registrations_of_one_number_leave_one_account(
    stores: list[PostgresStorage],
) -> None:
    a, b = stores
    await asyncio.gather(
        *(s.create_account(NUMBER, _device(i), i) for i, s in enumerate((a, b) * 4))
    )
    devices = await a.list_devices(NUMBER)
    assert [d.device_id for d in devices] == [1]


async def test_the_identity_key_is_set_once(stores: list[PostgresStorage]) -> None:
    a, b = stores
    await a.create_account(NUMBER, _device(), 1)
    keys = [bytes([5, i]) + b"k" * 31 for i in range(8)]
    results = await asyncio.gather(
        *(s.set_identity_key_if_unset(NUMBER, k) for s, k in zip((a, b) * 4, keys, strict=True))
    )
    assert len(set(results)) == 1 and results[0] in keys
    assert await b.get_identity_key(NUMBER) == results[0]
    assert await a.set_identity_key_if_unset("+15559999999", keys[0]) is None


def test_urls_are_checked_and_passwords_never_shown() -> None:
    with pytest.raises(InvalidInputError):
        PostgresStorage("postgresql://u@h/db?schema=Robert'); DROP TABLE x;--")
    with pytest.raises(InvalidInputError):
        PostgresStorage("postgresql://u@h/db?pool_size=0")
    store = PostgresStorage("postgresql://relay:hunter2@db:5432/relay?schema=r&sslmode=require")
    assert "hunter2" not in store.describe()
    assert store.describe() == "postgresql://relay:***@db:5432/relay (schema r)"
