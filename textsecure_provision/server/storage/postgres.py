"""``Storage`` on PostgreSQL (asyncpg, pooled): what several relay nodes share.

``postgresql://user[:password]@host[:port]/db[?schema=NAME&pool_size=N&...]``:
``schema`` puts every table in that schema (created if missing; tests give each
test its own), ``pool_size`` caps the pool (default 10 connections per node);
other query parameters go to asyncpg (``sslmode``, server settings...).

Each storage method is one transaction on one pooled connection, with the same
promises as the SQLite store (storage/base.py). Where SQLite gets atomicity from
``BEGIN IMMEDIATE`` (one writer at a time), this store takes row locks instead,
so unrelated accounts never wait on each other:

* codes are read ``FOR UPDATE`` before being consumed: of two concurrent
  consumers the second sees the row gone (single use, §4);
* ``create_account`` takes a transaction-scoped advisory lock on the number, so
  two registrations of one number replace each other instead of colliding;
* ``add_device`` locks the account row (count + next id + insert are atomic);
* key uploads and bundle fetches lock the device row ``FOR NO KEY UPDATE``, so
  a one-time prekey goes out once even when two fetches race.

**Device records are cached per node** (``get_device``, the read behind every
authenticated request, would otherwise be a round trip per request). A
trigger on ``devices`` (installed at start) sends ``NOTIFY`` on every update
or delete, from any node, at commit; each node LISTENs on a connection of its
own and drops the number's entries when told. So a removed device or a
re-registered number stops authenticating on every node within a notification
(~1 ms), and at once on the node that made the change. Only hits are cached
(a new device is read on first use); while the listening connection is down,
nothing is cached and every read goes to the database; an entry is also
re-read after ``CACHE_MAX_AGE_S`` whatever happens.

When the database cannot be reached (down, restarting, connection lost, pool
exhausted for too long) a method raises ``ServiceUnavailableError`` (503). The
pool drops broken connections and opens new ones on the next request, so a
node recovers by itself once PostgreSQL is back. Any other database error is a
bug and surfaces as a 500 with its traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from textsecure_provision.errors import (
    CodeRejectedError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
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
from textsecure_provision.server.storage.migrations import load_migrations
from textsecure_provision.server.urls import redact_url

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT_S = 5.0  # a node must answer 503 quickly when the database is unreachable
ACQUIRE_TIMEOUT_S = 10.0  # every pooled connection busy this long: overloaded, answer 503
COMMAND_TIMEOUT_S = 10.0  # every statement here is small; longer means something is stuck
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MIGRATION_LOCK = "textsecure_provision:migrate"
DEVICE_TOPIC = "textsecure_provision_devices"  # NOTIFY channel: "<schema> <number>"
POOL_CLOSE_S = 5.0  # a stop waits this long for busy connections, then cuts them
LISTEN_PING_S = 5.0  # the listening connection is checked this often (and reconnected)
_NOTIFY_TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION provision_device_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{DEVICE_TOPIC}', TG_TABLE_SCHEMA || ' ' || OLD.number);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER devices_changed AFTER UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION provision_device_changed();
"""

# Errors that mean "the database is not reachable right now", never "this request is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,  # connection lost or rejected
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    # Releasing a connection whose server went away mid-query: the pool's reset finds the
    # protocol in a broken state ("cannot switch to state …") and drops the connection.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.SerializationError,  # transient: the client may retry
    asyncpg.exceptions.DeadlockDetectedError,
)


def parse_postgres_url(url: str) -> tuple[str, str | None, int]:
    """Split our own parameters (``schema``, ``pool_size``) off a postgresql:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise InvalidInputError("a PostgreSQL URL starts with postgresql://")
    schema: str | None = None
    pool_size = DEFAULT_POOL_SIZE
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            if not _SCHEMA.fullmatch(value):
                raise InvalidInputError(
                    "schema= takes a lowercase name: letters, digits and _ (at most 63)"
                )
            schema = value
        elif key == "pool_size":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                raise InvalidInputError("pool_size= takes a number from 1 to 1000")
            pool_size = int(value)
        else:
            rest.append((key, value))
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return dsn, schema, pool_size


async def _keep_session(con: Any) -> None:
    """The pool's reset on release, made a no-op: asyncpg's default costs a round trip per
    storage call (``RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()``) to undo
    session state this store never creates: its locks are transaction-scoped, it opens no
    cursors outside transactions, never LISTENs and never SETs. A connection that comes back
    broken is still dropped by the pool (it checks ``is_closed`` on acquire)."""


def _rowcount(status: str) -> int:
    """asyncpg returns the command tag ("DELETE 1"); the count is its last word."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStorage:
    def __init__(self, url: str) -> None:
        self._dsn, self.schema, self.pool_size = parse_postgres_url(url)
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self.devices = DeviceCache()
        self._table_schema = ""  # where the tables are: notifications name it
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()  # set while the listening connection is up
        self.listener_pid: int | None = None  # its backend's pid (tests cut it)

    def describe(self) -> str:
        where = redact_url(self._url)
        return f"{where} (schema {self.schema})" if self.schema else where

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _guard(self, quiet: bool = False) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            # The client gets a clear 503; the log gets the cause (never a parameter value).
            if not quiet:
                log.error("database unavailable: %s: %s", type(exc).__name__, exc)
            raise ServiceUnavailableError("the database is unavailable; try again") from exc

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ServiceUnavailableError("the database is not open")
        return self._pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        """One transaction on one pooled connection (READ COMMITTED + the row locks above)."""
        with self._guard():
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as con, con.transaction():
                yield con

    @asynccontextmanager
    async def _con(self) -> AsyncIterator[Any]:
        """One connection for a single statement (its own implicit transaction)."""
        with self._guard():
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as con:
                yield con

    # -- life cycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, create the schema if named, migrate. A node that cannot reach its
        database at start refuses to start (its supervisor retries) rather than serve 503s."""
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            with self._guard():
                if self.schema:
                    await self._create_schema()
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,  # no floor to keep up (and log about) while the database is down
                    max_size=self.pool_size,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=COMMAND_TIMEOUT_S,
                    max_inactive_connection_lifetime=60.0,
                    server_settings={"application_name": "textsecure-provision", **settings},
                    reset=_keep_session,
                )
            await self._migrate()
            await self._install_trigger()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        except BaseException as exc:
            await self.close()
            if isinstance(exc, ServiceUnavailableError):
                raise ServiceUnavailableError(
                    f"cannot reach PostgreSQL at {self.describe()}"
                ) from exc
            raise

    async def _create_schema(self) -> None:
        con = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            async with con.transaction():
                # Two nodes starting at once: the lock makes the second see the first's schema.
                await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _MIGRATION_LOCK)
                await con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        finally:
            await con.close()

    async def _migrate(self) -> None:
        migrations = load_migrations("postgres")
        for migration in migrations:
            applied = False
            async with self._tx() as con:
                # Serialises nodes that start together; each re-reads the version under it.
                await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _MIGRATION_LOCK)
                await con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
                )
                current = await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                check_schema_version(current, len(migrations))
                if migration.version <= current:
                    continue
                await con.execute(migration.sql)  # simple protocol: the whole file at once
                await con.execute(
                    "INSERT INTO schema_version (version, name, applied_ms) "
                    "VALUES ($1, $2, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)",
                    migration.version,
                    migration.name,
                )
                applied = True
            if applied:
                log.info("applied schema migration %04d_%s", migration.version, migration.name)

    async def _install_trigger(self) -> None:
        """(Re)install the devices trigger that feeds the cache's invalidation; every start
        does it, so it always matches this code (under the migration lock: nodes race)."""
        async with self._tx() as con:
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _MIGRATION_LOCK)
            await con.execute(_NOTIFY_TRIGGER_SQL)
            self._table_schema = str(await con.fetchval("SELECT current_schema()"))

    async def _listen(self) -> None:
        """Keep one connection LISTENing for device changes; the cache is live only while
        it is up (and starts empty each time it comes up: changes may have been missed)."""
        settings = {"search_path": self.schema} if self.schema else {}
        while True:
            con = None
            lost = asyncio.Event()

            def on_lost(_con: Any, lost: asyncio.Event = lost) -> None:
                self._listener_down()
                lost.set()  # reconnect now, not at the next ping

            try:
                con = await asyncpg.connect(
                    self._dsn,
                    timeout=CONNECT_TIMEOUT_S,
                    server_settings={"application_name": "textsecure-provision", **settings},
                )
                con.add_termination_listener(on_lost)
                await con.add_listener(DEVICE_TOPIC, self._on_device_changed)
                self.listener_pid = con.get_server_pid()
                self.devices.reset(live=True)
                self._listening.set()
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTEN_PING_S)
                    if lost.is_set():
                        raise ConnectionError("the listening connection was closed")
                    # The ping finds a cut the termination listener did not see.
                    await con.fetchval("SELECT 1", timeout=LISTEN_PING_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # down or unreachable: no cache until it is back
                log.debug("device cache listener: %s: %s", type(exc).__name__, exc)
            finally:
                self._listener_down()
                if con is not None:
                    con.terminate()
            await asyncio.sleep(1.0)  # reconnect backoff, not a race fix

    def _listener_down(self) -> None:
        if self.devices.live:  # logged once when it goes, not at every retry
            log.warning("device cache off until its listening connection is back")
        self._listening.clear()
        self.devices.reset(live=False)

    def _on_device_changed(self, _con: Any, _pid: int, _topic: str, payload: str) -> None:
        schema, _, number = payload.partition(" ")
        if schema == self._table_schema:
            self.devices.drop(number)

    async def wait_listening(self, timeout: float) -> bool:
        """True once the cache's listener is up (tests wait on it instead of sleeping)."""
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        self.devices.reset(live=False)  # first: stopping is not "the listener was lost"
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                # Bounded: a connection held by a stuck request must not keep a stop waiting.
                await asyncio.wait_for(pool.close(), POOL_CLOSE_S)
            except Exception as exc:  # the database may be gone; the connections go anyway
                log.warning("closing the database pool: %s: %s", type(exc).__name__, exc)
                pool.terminate()

    async def check(self) -> None:
        # /health reports the failure; logging it at every probe would flood the log.
        with self._guard(quiet=True):
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as con:
                await con.fetchval("SELECT 1")

    async def schema_version(self) -> int:
        async with self._con() as con:
            return int(await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    # -- codes ---------------------------------------------------------------------------------
    async def issue_registration_code(
        self, number: str, code: str, expires_ms: int, now_ms: int
    ) -> str:
        async with self._tx() as con:
            await con.execute(
                "INSERT INTO registration_codes (number, code, expires_ms) VALUES ($1, $2, $3) "
                "ON CONFLICT (number) DO UPDATE SET code = excluded.code, "
                "expires_ms = excluded.expires_ms WHERE registration_codes.expires_ms <= $4",
                number,
                code,
                expires_ms,
                now_ms,
            )
            current = await con.fetchval(
                "SELECT code FROM registration_codes WHERE number = $1", number
            )
        return str(current)

    async def consume_registration_code(self, number: str, code: str, now_ms: int) -> bool:
        return await self._consume_code("registration_codes", number, code, now_ms)

    async def put_provisioning_code(
        self, number: str, code: str, expires_ms: int, keep: int
    ) -> None:
        async with self._tx() as con:
            await con.execute(
                "INSERT INTO provisioning_codes (number, code, expires_ms) VALUES ($1, $2, $3)",
                number,
                code,
                expires_ms,
            )
            await con.execute(
                "DELETE FROM provisioning_codes WHERE number = $1 AND id NOT IN "
                "(SELECT id FROM provisioning_codes WHERE number = $1 ORDER BY id DESC LIMIT $2)",
                number,
                keep,
            )

    _SELECT_PROVISIONING_CODES = (
        "SELECT id, code, expires_ms FROM provisioning_codes WHERE number = $1"
    )

    async def has_provisioning_code(self, number: str, code: str, now_ms: int) -> bool:
        async with self._con() as con:
            rows = await con.fetch(self._SELECT_PROVISIONING_CODES, number)
        return match_code((tuple(r) for r in rows), code, now_ms) is not None

    async def add_device_with_code(
        self, number: str, code: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        async with self._tx() as con:
            # Lock the account row first: the code check, count and insert are one unit.
            next_id = await con.fetchval(
                "SELECT next_device_id FROM accounts WHERE number = $1 FOR UPDATE", number
            )
            rows = await con.fetch(self._SELECT_PROVISIONING_CODES, number)
            code_id = match_code((tuple(r) for r in rows), code, now_ms)
            if next_id is None or code_id is None:
                raise CodeRejectedError("wrong, expired or already used provisioning code")
            device_id = await self._add_device(
                con, number, int(next_id), device, now_ms, max_devices
            )
            if device_id is not None:
                await con.execute("DELETE FROM provisioning_codes WHERE id = $1", code_id)
            return device_id

    async def _consume_code(self, table: str, number: str, code: str, now_ms: int) -> bool:
        async with self._tx() as con:
            row = await con.fetchrow(
                f"SELECT code, expires_ms FROM {table} WHERE number = $1 FOR UPDATE",  # noqa: S608
                number,
            )
            if row is None:
                return False
            # Constant time (§4): the comparison must not tell how many digits were right.
            if not hmac.compare_digest(row[0].encode(), code.encode()) or row[1] <= now_ms:
                return False
            await con.execute(f"DELETE FROM {table} WHERE number = $1", number)  # noqa: S608
            return True

    # -- accounts and devices ------------------------------------------------------------------
    async def create_account(self, number: str, device: NewDevice, now_ms: int) -> None:
        async with self._tx() as con:
            # Two registrations of one number: the second waits, then replaces the first.
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "account:" + number)
            await con.execute("DELETE FROM accounts WHERE number = $1", number)  # cascades
            await con.execute(
                "INSERT INTO accounts (number, identity_key, next_device_id, created_ms) "
                "VALUES ($1, NULL, 2, $2)",
                number,
                now_ms,
            )
            await self._insert_device(con, number, 1, device, now_ms)
        self.devices.drop(number)  # after the commit: a read from now on sees the new rows

    @staticmethod
    async def _insert_device(
        con: Any, number: str, device_id: int, device: NewDevice, now_ms: int
    ) -> None:
        await con.execute(
            f"INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",  # noqa: S608
            *device_row(number, device_id, device, now_ms),
        )

    async def get_device(self, number: str, device_id: int) -> StoredDevice | None:
        cached = self.devices.get(number, device_id)
        if cached is not None:
            return cached
        generation = self.devices.generation
        async with self._con() as con:
            row = await con.fetchrow(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE number = $1 AND device_id = $2",  # noqa: S608
                number,
                device_id,
            )
        if row is None:
            return None
        record = device_from_row(row)
        self.devices.put(record, generation)
        return record

    async def list_devices(self, number: str) -> list[StoredDevice]:
        async with self._con() as con:
            rows = await con.fetch(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE number = $1 ORDER BY device_id",  # noqa: S608
                number,
            )
        return [device_from_row(r) for r in rows]

    async def touch_device(self, number: str, device_id: int, now_ms: int) -> None:
        async with self._con() as con:
            await con.execute(
                "UPDATE devices SET last_seen_ms = $1 WHERE number = $2 AND device_id = $3",
                now_ms,
                number,
                device_id,
            )
        self.devices.drop(number)

    async def add_device(
        self, number: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        async with self._tx() as con:
            next_id = await con.fetchval(
                "SELECT next_device_id FROM accounts WHERE number = $1 FOR UPDATE", number
            )
            if next_id is None:
                raise NotFoundError("no such account")
            return await self._add_device(con, number, int(next_id), device, now_ms, max_devices)

    async def _add_device(
        self,
        con: Any,
        number: str,
        device_id: int,
        device: NewDevice,
        now_ms: int,
        max_devices: int,
    ) -> int | None:
        """In the caller's transaction, which holds the account row (``FOR UPDATE``)."""
        count = await con.fetchval("SELECT COUNT(*) FROM devices WHERE number = $1", number)
        if count >= max_devices:
            return None
        await con.execute(
            "UPDATE accounts SET next_device_id = $1 WHERE number = $2", device_id + 1, number
        )
        await self._insert_device(con, number, device_id, device, now_ms)
        return device_id

    async def remove_device(self, number: str, device_id: int) -> bool:
        async with self._con() as con:
            status = await con.execute(
                "DELETE FROM devices WHERE number = $1 AND device_id = $2", number, device_id
            )
        self.devices.drop(number)
        return _rowcount(status) == 1

    # -- keys ----------------------------------------------------------------------------------
    async def set_identity_key_if_unset(self, number: str, identity_key: bytes) -> bytes | None:
        async with self._con() as con:
            # One statement: a concurrent setter blocks on the row, then keeps the first key.
            value = await con.fetchval(
                "UPDATE accounts SET identity_key = COALESCE(identity_key, $2) "
                "WHERE number = $1 RETURNING identity_key",
                number,
                identity_key,
            )
        return None if value is None else bytes(value)

    async def get_identity_key(self, number: str) -> bytes | None:
        async with self._con() as con:
            value = await con.fetchval(
                "SELECT identity_key FROM accounts WHERE number = $1", number
            )
        return None if value is None else bytes(value)

    async def replace_keys(
        self,
        number: str,
        device_id: int,
        signed_prekey: SignedPreKeyRecord,
        prekeys: Sequence[PreKeyRecord],
        last_resort: PreKeyRecord | None,
    ) -> None:
        async with self._tx() as con:
            # Serialise with other uploads and bundle fetches for this device.
            await con.execute(
                "SELECT 1 FROM devices WHERE number = $1 AND device_id = $2 FOR NO KEY UPDATE",
                number,
                device_id,
            )
            await con.execute(
                "INSERT INTO signed_prekeys (number, device_id, key_id, public_key, signature) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (number, device_id) DO UPDATE SET "
                "key_id = EXCLUDED.key_id, public_key = EXCLUDED.public_key, "
                "signature = EXCLUDED.signature",
                number,
                device_id,
                signed_prekey.key_id,
                signed_prekey.public_key,
                signed_prekey.signature,
            )
            await con.execute(
                "DELETE FROM one_time_prekeys WHERE number = $1 AND device_id = $2",
                number,
                device_id,
            )
            if prekeys:
                # One statement for up to 200 keys (unnest), not one round trip per key.
                await con.execute(
                    "INSERT INTO one_time_prekeys (number, device_id, key_id, public_key) "
                    "SELECT $1, $2, k, p FROM unnest($3::bigint[], $4::bytea[]) AS t(k, p)",
                    number,
                    device_id,
                    [p.key_id for p in prekeys],
                    [p.public_key for p in prekeys],
                )
            if last_resort is not None:
                await con.execute(
                    "INSERT INTO last_resort_keys (number, device_id, key_id, public_key) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (number, device_id) DO UPDATE SET "
                    "key_id = EXCLUDED.key_id, public_key = EXCLUDED.public_key",
                    number,
                    device_id,
                    last_resort.key_id,
                    last_resort.public_key,
                )

    async def count_prekeys(self, number: str, device_id: int) -> int:
        async with self._con() as con:
            count = await con.fetchval(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE number = $1 AND device_id = $2",
                number,
                device_id,
            )
        return int(count)

    async def take_key_bundles(self, number: str, device_ids: Sequence[int]) -> list[KeyBundle]:
        async with self._tx() as con:
            # Lock the devices in id order (never two fetches locking in opposite orders).
            rows = await con.fetch(
                "SELECT device_id, registration_id FROM devices "
                "WHERE number = $1 AND device_id = ANY($2::integer[]) "
                "ORDER BY device_id FOR NO KEY UPDATE",
                number,
                list(device_ids),
            )
            registration = {r[0]: r[1] for r in rows}
            bundles = []
            for device_id in device_ids:
                if device_id not in registration:
                    continue
                spk = await con.fetchrow(
                    "SELECT key_id, public_key, signature FROM signed_prekeys "
                    "WHERE number = $1 AND device_id = $2",
                    number,
                    device_id,
                )
                one = await con.fetchrow(
                    "DELETE FROM one_time_prekeys WHERE number = $1 AND device_id = $2 AND "
                    "key_id = (SELECT MIN(key_id) FROM one_time_prekeys "
                    "WHERE number = $1 AND device_id = $2) RETURNING key_id, public_key",
                    number,
                    device_id,
                )
                if one is None:
                    one = await con.fetchrow(
                        "SELECT key_id, public_key FROM last_resort_keys "
                        "WHERE number = $1 AND device_id = $2",
                        number,
                        device_id,
                    )
                bundles.append(key_bundle(device_id, registration[device_id], spk, one))
            return bundles

    # -- messages ------------------------------------------------------------------------------
    async def store_messages(
        self, messages: Sequence[NewMessage], now_ms: int, quota: QueueQuota | None = None
    ) -> list[int]:
        async with self._tx() as con:
            if quota is not None:
                full = await _over_quota(con, messages, quota)
                if full:
                    return full
            await con.executemany(
                f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}) "  # noqa: S608
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [message_row(m, now_ms) for m in messages],
            )
        return []

    async def fetch_messages(
        self, number: str, device_id: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        async with self._con() as con:
            # Sizes first (octet_length reads no body), then only the page's bodies.
            sizes = await con.fetch(
                "SELECT id, octet_length(body) FROM messages "
                "WHERE number = $1 AND device_id = $2 ORDER BY id LIMIT $3",
                number,
                device_id,
                limit + 1,
            )
            take = page_length([r[1] for r in sizes], limit, max_bytes)
            if take == 0:
                return [], False
            rows = await con.fetch(
                f"SELECT {MESSAGE_SELECT_COLUMNS} FROM messages "  # noqa: S608
                "WHERE number = $1 AND device_id = $2 AND id <= $3 ORDER BY id",
                number,
                device_id,
                sizes[take - 1][0],
            )
        return [message_from_row(r) for r in rows], len(sizes) > take

    async def delete_message(self, number: str, device_id: int, guid: str) -> bool:
        async with self._con() as con:
            status = await con.execute(
                "DELETE FROM messages WHERE guid = $1 AND number = $2 AND device_id = $3",
                guid,
                number,
                device_id,
            )
        return _rowcount(status) == 1

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_expired(self, now_ms: int) -> int:
        async with self._tx() as con:
            a = await con.execute("DELETE FROM registration_codes WHERE expires_ms <= $1", now_ms)
            b = await con.execute("DELETE FROM provisioning_codes WHERE expires_ms <= $1", now_ms)
            await con.execute("DELETE FROM limit_buckets WHERE full_at_ms <= $1", now_ms)
            await con.execute("DELETE FROM guess_failures WHERE forget_at_ms <= $1", now_ms)
        return _rowcount(a) + _rowcount(b)

    # -- limits --------------------------------------------------------------------------------
    async def save_limit_buckets(self, buckets: Sequence[tuple[str, str, int]]) -> None:
        async with self._con() as con:
            await con.executemany(
                "INSERT INTO limit_buckets (rule, key, full_at_ms) VALUES ($1, $2, $3) "
                "ON CONFLICT (rule, key) DO UPDATE SET full_at_ms = excluded.full_at_ms",
                buckets,
            )

    async def load_limit_buckets(self, now_ms: int, per_rule: int) -> list[tuple[str, str, int]]:
        async with self._con() as con:
            rows = await con.fetch(
                "SELECT rule, key, full_at_ms FROM (SELECT rule, key, full_at_ms, ROW_NUMBER() "
                "OVER (PARTITION BY rule ORDER BY full_at_ms DESC) AS n FROM limit_buckets "
                "WHERE full_at_ms > $1) AS spent WHERE n <= $2",
                now_ms,
                per_rule,
            )
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def get_guess_failures(self, rule: str, key: str, now_ms: int) -> GuessFailures | None:
        async with self._con() as con:
            row = await con.fetchrow(
                "SELECT failures, last_ms FROM guess_failures "
                "WHERE rule = $1 AND key = $2 AND forget_at_ms > $3",
                rule,
                key,
                now_ms,
            )
        return None if row is None else GuessFailures(int(row[0]), int(row[1]))

    async def add_guess_failure(
        self, rule: str, key: str, now_ms: int, forget_after_ms: int
    ) -> int:
        async with self._tx() as con:
            await con.execute(
                "DELETE FROM guess_failures WHERE rule = $1 AND key = $2 AND forget_at_ms <= $3",
                rule,
                key,
                now_ms,
            )
            failures = await con.fetchval(
                "INSERT INTO guess_failures (rule, key, failures, last_ms, forget_at_ms) "
                "VALUES ($1, $2, 1, $3, $4) ON CONFLICT (rule, key) DO UPDATE SET "
                "failures = guess_failures.failures + 1, last_ms = excluded.last_ms, "
                "forget_at_ms = excluded.forget_at_ms RETURNING failures",
                rule,
                key,
                now_ms,
                now_ms + forget_after_ms,
            )
        return int(failures)

    async def clear_guess_failures(self, rule: str, key: str) -> None:
        async with self._con() as con:
            await con.execute("DELETE FROM guess_failures WHERE rule = $1 AND key = $2", rule, key)


async def _over_quota(con: Any, messages: Sequence[NewMessage], quota: QueueQuota) -> list[int]:
    """The destination devices whose queues these messages would overfill. Each device's
    row is locked first, so two concurrent sends cannot both fit into the last room."""
    full = []
    for (number, device_id), (count, size) in sorted(queued_by_device(messages).items()):
        await con.execute(
            "SELECT 1 FROM devices WHERE number = $1 AND device_id = $2 FOR UPDATE",
            number,
            device_id,
        )
        held, held_bytes = await con.fetchrow(
            "SELECT COUNT(*), COALESCE(SUM(octet_length(body)), 0) FROM messages "
            "WHERE number = $1 AND device_id = $2",
            number,
            device_id,
        )
        if held + count > quota.max_messages or held_bytes + size > quota.max_bytes:
            full.append(device_id)
    return sorted(full)
