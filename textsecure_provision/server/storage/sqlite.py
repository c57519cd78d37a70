"""``Storage`` on one SQLite file (WAL), the default backend.

Why not aiosqlite: aiosqlite hops to its thread once per *statement*, so a
transaction spans several awaits and coroutines sharing the connection can
interleave inside it (needing an asyncio lock around every use). Here each
storage method is one plain function run on a dedicated single-thread
executor: one hop per operation, and the whole transaction runs without
interruption, so atomicity comes from the executor's order, not from a lock.
``sqlite3`` releases the GIL while SQLite works, so the event loop keeps going.

Durability: WAL with ``synchronous=NORMAL``: a committed transaction survives
the server process being killed (the fault tests' case); only a power cut can
lose the last few commits.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from textsecure_provision.errors import CodeRejectedError, NotFoundError, ServiceUnavailableError
from textsecure_provision.server.storage.base import (
    DEVICE_COLUMNS,
    MESSAGE_INSERT_COLUMNS,
    MESSAGE_SELECT_COLUMNS,
    GuessFailures,
    KeyBundle,
    NewDevice,
    NewMessage,
    PreKeyRecord,
    QueueQuota,
    SignedPreKeyRecord,
    StoredDevice,
    StoredMessage,
    check_schema_version,
    device_from_row,
    device_row,
    key_bundle,
    match_code,
    message_from_row,
    message_row,
    page_length,
    queued_by_device,
)
from textsecure_provision.server.storage.device_cache import DeviceCache
from textsecure_provision.server.storage.migrations import load_migrations, split_statements

log = logging.getLogger(__name__)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
READER_BUSY_TIMEOUT_MS = 20  # the loop-thread reader never waits long: it falls back instead


class SqliteStorage:
    def __init__(self, path: str) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # A read-only connection used on the event loop's own thread, for the one read every
        # authenticated request makes (get_device): an indexed point read in WAL mode takes
        # a few µs and never waits for the writer, while a hop to the database thread and back
        # cost ~25 % of the server's CPU per channel rendezvous (docs/performance.md).
        self._reader: sqlite3.Connection | None = None
        # Device records in memory (device_cache.py): this process is the file's only writer,
        # and each device write below drops its number's entries once committed.
        self.devices = DeviceCache()

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    # -- plumbing -------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise ServiceUnavailableError("the database is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            # Locked, full disk, I/O error: the client gets a clear 503, the log the cause.
            log.error("database error: %s: %s", type(exc).__name__, exc)
            raise ServiceUnavailableError("the database is unavailable; try again") from exc

    @property
    def con(self) -> sqlite3.Connection:
        assert self._con is not None, "storage not open"
        return self._con

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            result = fn(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return result

    # -- life cycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self.devices.reset(live=True)

    def _open_sync(self) -> None:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            path = Path(self.path)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                # Created 0600 before SQLite opens it; its -wal/-shm files copy this mode.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        con = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            uri=self.path.startswith("file:"),
        )
        self._con = con
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA foreign_keys = ON")
        self._migrate(con)
        if self.path != ":memory:" and not self.path.startswith("file:"):  # one database only
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute(f"PRAGMA busy_timeout = {READER_BUSY_TIMEOUT_MS}")
            reader.execute("PRAGMA query_only = ON")
            self._reader = reader

    def _migrate(self, con: sqlite3.Connection) -> None:
        migrations = load_migrations("sqlite")
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
        )
        for migration in migrations:
            con.execute("BEGIN IMMEDIATE")  # re-read inside: another process may be migrating
            try:
                current = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                check_schema_version(current, len(migrations))
                if migration.version <= current:
                    con.execute("ROLLBACK")
                    continue
                for statement in split_statements(migration.sql, sqlite3.complete_statement):
                    con.execute(statement)
                con.execute(
                    "INSERT INTO schema_version (version, name, applied_ms) "
                    "VALUES (?, ?, CAST(strftime('%s','now') AS INTEGER) * 1000)",
                    (migration.version, migration.name),
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            log.info("applied schema migration %04d_%s", migration.version, migration.name)

    async def close(self) -> None:
        if self._executor is None:
            return
        self.devices.reset(live=False)
        reader, self._reader = self._reader, None
        if reader is not None:  # on the loop's thread, the only one that uses it
            reader.close()
        executor = self._executor
        try:
            await self._run(self._close_sync)
        finally:
            self._executor = None
            executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    async def check(self) -> None:
        await self._run(lambda: self.con.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        row = await self._run(
            lambda: self.con.execute("SELECT MAX(version) FROM schema_version").fetchone()
        )
        return int(row[0] or 0)

    # -- codes ------------------------------------------------------------------------------
    async def issue_registration_code(
        self, number: str, code: str, expires_ms: int, now_ms: int
    ) -> str:
        def tx(con: sqlite3.Connection) -> str:
            con.execute(
                "INSERT INTO registration_codes (number, code, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (number) DO UPDATE SET code = excluded.code, "
                "expires_ms = excluded.expires_ms WHERE registration_codes.expires_ms <= ?",
                (number, code, expires_ms, now_ms),
            )
            (current,) = con.execute(
                "SELECT code FROM registration_codes WHERE number = ?", (number,)
            ).fetchone()
            return str(current)

        return await self._run(self._tx, tx)

    async def consume_registration_code(self, number: str, code: str, now_ms: int) -> bool:
        return await self._run(self._consume_code, "registration_codes", number, code, now_ms)

    async def put_provisioning_code(
        self, number: str, code: str, expires_ms: int, keep: int
    ) -> None:
        def tx(con: sqlite3.Connection) -> None:
            con.execute(
                "INSERT INTO provisioning_codes (number, code, expires_ms) VALUES (?, ?, ?)",
                (number, code, expires_ms),
            )
            con.execute(
                "DELETE FROM provisioning_codes WHERE number = ? AND id NOT IN "
                "(SELECT id FROM provisioning_codes WHERE number = ? ORDER BY id DESC LIMIT ?)",
                (number, number, keep),
            )

        await self._run(self._tx, tx)

    @staticmethod
    def _provisioning_codes(con: sqlite3.Connection, number: str) -> list[Any]:
        return con.execute(
            "SELECT id, code, expires_ms FROM provisioning_codes WHERE number = ?", (number,)
        ).fetchall()

    async def has_provisioning_code(self, number: str, code: str, now_ms: int) -> bool:
        rows = await self._run(self._provisioning_codes, self.con, number)
        return match_code(rows, code, now_ms) is not None

    async def add_device_with_code(
        self, number: str, code: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        def tx(con: sqlite3.Connection) -> int | None:
            code_id = match_code(self._provisioning_codes(con, number), code, now_ms)
            if code_id is None:
                raise CodeRejectedError("wrong, expired or already used provisioning code")
            device_id = self._add_device(con, number, device, now_ms, max_devices)
            if device_id is not None:
                con.execute("DELETE FROM provisioning_codes WHERE id = ?", (code_id,))
            return device_id

        return await self._run(self._tx, tx)

    def _consume_code(self, table: str, number: str, code: str, now_ms: int) -> bool:
        def tx(con: sqlite3.Connection) -> bool:
            row = con.execute(
                f"SELECT code, expires_ms FROM {table} WHERE number = ?",  # noqa: S608
                (number,),
            ).fetchone()
            if row is None:
                return False
            stored, expires_ms = row
            # Constant time (§4): the comparison must not tell how many digits were right.
            if not hmac.compare_digest(stored.encode(), code.encode()) or expires_ms <= now_ms:
                return False
            con.execute(f"DELETE FROM {table} WHERE number = ?", (number,))  # noqa: S608
            return True

        return self._tx(tx)

    # -- accounts and devices ------------------------------------------------------------------
    async def create_account(self, number: str, device: NewDevice, now_ms: int) -> None:
        def tx(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM accounts WHERE number = ?", (number,))  # cascades
            con.execute(
                "INSERT INTO accounts (number, identity_key, next_device_id, created_ms) "
                "VALUES (?, NULL, 2, ?)",
                (number, now_ms),
            )
            self._insert_device(con, number, 1, device, now_ms)

        try:
            await self._run(self._tx, tx)
        finally:
            self.devices.drop(number)  # after the commit (or the failure)

    @staticmethod
    def _insert_device(
        con: sqlite3.Connection, number: str, device_id: int, device: NewDevice, now_ms: int
    ) -> None:
        con.execute(
            f"INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            device_row(number, device_id, device, now_ms),  # sqlite3 stores a bool as 0/1
        )

    async def get_device(self, number: str, device_id: int) -> StoredDevice | None:
        cached = self.devices.get(number, device_id)
        if cached is not None:
            return cached
        generation = self.devices.generation
        record = await self._read_device(number, device_id)
        if record is not None:
            self.devices.put(record, generation)
        return record

    async def _read_device(self, number: str, device_id: int) -> StoredDevice | None:
        query = f"SELECT {DEVICE_COLUMNS} FROM devices WHERE number = ? AND device_id = ?"  # noqa: S608
        reader = self._reader
        if reader is not None and self._executor is not None:
            try:  # on this thread (see __init__); a busy database falls back to the thread
                row = reader.execute(query, (number, device_id)).fetchone()
                return None if row is None else device_from_row(row)
            except sqlite3.OperationalError:
                pass

        def op() -> StoredDevice | None:
            row = self.con.execute(query, (number, device_id)).fetchone()
            return None if row is None else device_from_row(row)

        return await self._run(op)

    async def list_devices(self, number: str) -> list[StoredDevice]:
        def op() -> list[StoredDevice]:
            rows = self.con.execute(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE number = ? ORDER BY device_id",  # noqa: S608
                (number,),
            ).fetchall()
            return [device_from_row(r) for r in rows]

        return await self._run(op)

    async def touch_device(self, number: str, device_id: int, now_ms: int) -> None:
        try:
            await self._run(
                lambda: self.con.execute(
                    "UPDATE devices SET last_seen_ms = ? WHERE number = ? AND device_id = ?",
                    (now_ms, number, device_id),
                )
            )
        finally:
            self.devices.drop(number)

    async def add_device(
        self, number: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        def tx(con: sqlite3.Connection) -> int | None:
            return self._add_device(con, number, device, now_ms, max_devices)

        return await self._run(self._tx, tx)

    def _add_device(
        self, con: sqlite3.Connection, number: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        row = con.execute(
            "SELECT next_device_id FROM accounts WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            raise NotFoundError("no such account")
        (count,) = con.execute(
            "SELECT COUNT(*) FROM devices WHERE number = ?", (number,)
        ).fetchone()
        if count >= max_devices:
            return None
        device_id = int(row[0])
        con.execute(
            "UPDATE accounts SET next_device_id = ? WHERE number = ?", (device_id + 1, number)
        )
        self._insert_device(con, number, device_id, device, now_ms)
        return device_id

    async def remove_device(self, number: str, device_id: int) -> bool:
        def tx(con: sqlite3.Connection) -> bool:
            cur = con.execute(
                "DELETE FROM devices WHERE number = ? AND device_id = ?", (number, device_id)
            )
            return cur.rowcount == 1

        try:
            return await self._run(self._tx, tx)
        finally:
            self.devices.drop(number)  # after the commit (or the failure)

    # -- keys ---------------------------------------------------------------------------------
    async def set_identity_key_if_unset(self, number: str, identity_key: bytes) -> bytes | None:
        def tx(con: sqlite3.Connection) -> bytes | None:
            con.execute(
                "UPDATE accounts SET identity_key = ? WHERE number = ? AND identity_key IS NULL",
                (identity_key, number),
            )
            row = con.execute(
                "SELECT identity_key FROM accounts WHERE number = ?", (number,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(self._tx, tx)

    async def get_identity_key(self, number: str) -> bytes | None:
        def op() -> bytes | None:
            row = self.con.execute(
                "SELECT identity_key FROM accounts WHERE number = ?", (number,)
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._run(op)

    async def replace_keys(
        self,
        number: str,
        device_id: int,
        signed_prekey: SignedPreKeyRecord,
        prekeys: Sequence[PreKeyRecord],
        last_resort: PreKeyRecord | None,
    ) -> None:
        def tx(con: sqlite3.Connection) -> None:
            key = (number, device_id)
            con.execute(
                "INSERT OR REPLACE INTO signed_prekeys "
                "(number, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)",
                (*key, signed_prekey.key_id, signed_prekey.public_key, signed_prekey.signature),
            )
            con.execute("DELETE FROM one_time_prekeys WHERE number = ? AND device_id = ?", key)
            con.executemany(
                "INSERT INTO one_time_prekeys (number, device_id, key_id, public_key) "
                "VALUES (?, ?, ?, ?)",
                [(*key, p.key_id, p.public_key) for p in prekeys],
            )
            if last_resort is not None:
                con.execute(
                    "INSERT OR REPLACE INTO last_resort_keys "
                    "(number, device_id, key_id, public_key) VALUES (?, ?, ?, ?)",
                    (*key, last_resort.key_id, last_resort.public_key),
                )

        await self._run(self._tx, tx)

    async def count_prekeys(self, number: str, device_id: int) -> int:
        def op() -> int:
            (count,) = self.con.execute(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE number = ? AND device_id = ?",
                (number, device_id),
            ).fetchone()
            return int(count)

        return await self._run(op)

    async def take_key_bundles(self, number: str, device_ids: Sequence[int]) -> list[KeyBundle]:
        def tx(con: sqlite3.Connection) -> list[KeyBundle]:
            bundles = []
            for device_id in device_ids:
                key = (number, device_id)
                dev = con.execute(
                    "SELECT registration_id FROM devices WHERE number = ? AND device_id = ?", key
                ).fetchone()
                if dev is None:
                    continue
                spk = con.execute(
                    "SELECT key_id, public_key, signature FROM signed_prekeys "
                    "WHERE number = ? AND device_id = ?",
                    key,
                ).fetchone()
                one = con.execute(
                    "DELETE FROM one_time_prekeys WHERE rowid = (SELECT rowid FROM "
                    "one_time_prekeys WHERE number = ? AND device_id = ? ORDER BY key_id LIMIT 1) "
                    "RETURNING key_id, public_key",
                    key,
                ).fetchone()
                if one is None:
                    one = con.execute(
                        "SELECT key_id, public_key FROM last_resort_keys "
                        "WHERE number = ? AND device_id = ?",
                        key,
                    ).fetchone()
                bundles.append(key_bundle(device_id, dev[0], spk, one))
            return bundles

        return await self._run(self._tx, tx)

    # -- messages -----------------------------------------------------------------------------
    async def store_messages(
        self, messages: Sequence[NewMessage], now_ms: int, quota: QueueQuota | None = None
    ) -> list[int]:
        def tx(con: sqlite3.Connection) -> list[int]:
            if quota is not None:
                full = _over_quota(con, messages, quota)
                if full:
                    return full
            con.executemany(
                f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [message_row(m, now_ms) for m in messages],
            )
            return []

        return await self._run(self._tx, tx)

    async def fetch_messages(
        self, number: str, device_id: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        def op() -> tuple[list[StoredMessage], bool]:
            # Sizes first (length() of a blob reads no body), then only the page's bodies.
            sizes = self.con.execute(
                "SELECT id, length(body) FROM messages "
                "WHERE number = ? AND device_id = ? ORDER BY id LIMIT ?",
                (number, device_id, limit + 1),
            ).fetchall()
            take = page_length([size for _, size in sizes], limit, max_bytes)
            if take == 0:
                return [], False
            rows = self.con.execute(
                f"SELECT {MESSAGE_SELECT_COLUMNS} FROM messages "  # noqa: S608
                "WHERE number = ? AND device_id = ? AND id <= ? ORDER BY id",
                (number, device_id, sizes[take - 1][0]),
            ).fetchall()
            return [message_from_row(r) for r in rows], len(sizes) > take

        return await self._run(op)

    async def delete_message(self, number: str, device_id: int, guid: str) -> bool:
        def op() -> bool:
            cur = self.con.execute(
                "DELETE FROM messages WHERE guid = ? AND number = ? AND device_id = ?",
                (guid, number, device_id),
            )
            return cur.rowcount == 1

        return await self._run(op)

    # -- housekeeping ---------------------------------------------------------------------------
    async def purge_expired(self, now_ms: int) -> int:
        def tx(con: sqlite3.Connection) -> int:
            a = con.execute("DELETE FROM registration_codes WHERE expires_ms <= ?", (now_ms,))
            b = con.execute("DELETE FROM provisioning_codes WHERE expires_ms <= ?", (now_ms,))
            con.execute("DELETE FROM limit_buckets WHERE full_at_ms <= ?", (now_ms,))
            con.execute("DELETE FROM guess_failures WHERE forget_at_ms <= ?", (now_ms,))
            return a.rowcount + b.rowcount

        return await self._run(self._tx, tx)

    # -- limits -----------------------------------------------------------------------------------
    async def save_limit_buckets(self, buckets: Sequence[tuple[str, str, int]]) -> None:
        await self._run(
            lambda: self.con.executemany(
                "INSERT OR REPLACE INTO limit_buckets (rule, key, full_at_ms) VALUES (?, ?, ?)",
                buckets,
            )
        )

    async def load_limit_buckets(self, now_ms: int, per_rule: int) -> list[tuple[str, str, int]]:
        def op() -> list[tuple[str, str, int]]:
            rows = self.con.execute(
                "SELECT rule, key, full_at_ms FROM (SELECT rule, key, full_at_ms, ROW_NUMBER() "
                "OVER (PARTITION BY rule ORDER BY full_at_ms DESC) AS n FROM limit_buckets "
                "WHERE full_at_ms > ?) WHERE n <= ?",
                (now_ms, per_rule),
            ).fetchall()
            return [(r[0], r[1], int(r[2])) for r in rows]

        return await self._run(op)

    async def get_guess_failures(self, rule: str, key: str, now_ms: int) -> GuessFailures | None:
        def op() -> GuessFailures | None:
            row = self.con.execute(
                "SELECT failures, last_ms FROM guess_failures "
                "WHERE rule = ? AND key = ? AND forget_at_ms > ?",
                (rule, key, now_ms),
            ).fetchone()
            return None if row is None else GuessFailures(int(row[0]), int(row[1]))

        return await self._run(op)

    async def add_guess_failure(
        self, rule: str, key: str, now_ms: int, forget_after_ms: int
    ) -> int:
        def tx(con: sqlite3.Connection) -> int:
            con.execute(
                "DELETE FROM guess_failures WHERE rule = ? AND key = ? AND forget_at_ms <= ?",
                (rule, key, now_ms),
            )
            (failures,) = con.execute(
                "INSERT INTO guess_failures (rule, key, failures, last_ms, forget_at_ms) "
                "VALUES (?, ?, 1, ?, ?) ON CONFLICT (rule, key) DO UPDATE SET "
                "failures = failures + 1, last_ms = excluded.last_ms, "
                "forget_at_ms = excluded.forget_at_ms RETURNING failures",
                (rule, key, now_ms, now_ms + forget_after_ms),
            ).fetchone()
            return int(failures)

        return await self._run(self._tx, tx)

    async def clear_guess_failures(self, rule: str, key: str) -> None:
        await self._run(
            lambda: self.con.execute(
                "DELETE FROM guess_failures WHERE rule = ? AND key = ?", (rule, key)
            )
        )


def _over_quota(
    con: sqlite3.Connection, messages: Sequence[NewMessage], quota: QueueQuota
) -> list[int]:
    """The destination devices whose queues these messages would overfill."""
    full = []
    for (number, device_id), (count, size) in queued_by_device(messages).items():
        held, held_bytes = con.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM messages "
            "WHERE number = ? AND device_id = ?",
            (number, device_id),
        ).fetchone()
        if held + count > quota.max_messages or held_bytes + size > quota.max_bytes:
            full.append(device_id)
    return sorted(full)
