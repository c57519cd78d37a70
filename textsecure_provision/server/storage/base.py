"""What the server keeps, behind one interface (``Storage``), for SQLite now and Postgres later.

Every method is a coroutine that runs as one transaction: a backend never
leaves half an operation behind. Times come in as arguments (milliseconds since
the epoch) so backends hold no clock and tests can move time. A backend that
cannot reach its database raises ``ServiceUnavailableError`` (503); any other
``ProvisionError`` a method may raise is named in its docstring.

Policy (who may do what, which status) lives in policy/; a backend only keeps
its promises about atomicity, listed per method.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from textsecure_provision.errors import StoreError


@dataclass(frozen=True)
class NewDevice:
    """A device about to be stored (§4 device attributes + the password hash)."""

    registration_id: int
    fetches_messages: bool
    name: str | None
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class StoredDevice:
    """What the server keeps about one device of an account (not the client's ``StoredDevice``,
    which is a device's own record, with its private keys, in its data folder)."""

    number: str
    device_id: int
    registration_id: int
    fetches_messages: bool
    name: str | None
    password_hash: str = field(repr=False)
    created_ms: int
    last_seen_ms: int


# The ``devices`` columns in the order both backends insert and select them.
DEVICE_COLUMNS = (
    "number, device_id, registration_id, fetches_messages, name, password_hash, "
    "created_ms, last_seen_ms"
)


def device_row(number: str, device_id: int, device: NewDevice, now_ms: int) -> tuple[Any, ...]:
    """The values of a new ``devices`` row, in ``DEVICE_COLUMNS`` order."""
    return (
        number,
        device_id,
        device.registration_id,
        device.fetches_messages,
        device.name,
        device.password_hash,
        now_ms,
        now_ms,
    )


def device_from_row(row: Sequence[Any]) -> StoredDevice:
    """A ``devices`` row, in the column order both backends select, as a record."""
    return StoredDevice(
        number=row[0],
        device_id=row[1],
        registration_id=row[2],
        fetches_messages=bool(row[3]),
        name=row[4],
        password_hash=row[5],
        created_ms=row[6],
        last_seen_ms=row[7],
    )


def queued_by_device(messages: Sequence[NewMessage]) -> dict[tuple[str, int], tuple[int, int]]:
    """(number, device) → (messages, body bytes) that a send adds to each queue."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for m in messages:
        count, size = out.get((m.number, m.device_id), (0, 0))
        out[(m.number, m.device_id)] = (count + 1, size + len(m.body))
    return out


def page_length(sizes: Sequence[int], limit: int, max_bytes: int | None) -> int:
    """How many of the oldest messages (body ``sizes``, in order) make one fetch page: at
    most ``limit``, and past the first (always sent, so a page is never empty while
    messages wait), no more than ``max_bytes`` in all."""
    total = 0
    for i, size in enumerate(sizes[:limit]):
        total += size
        if i > 0 and max_bytes is not None and total > max_bytes:
            return i
    return min(len(sizes), limit)


@dataclass(frozen=True)
class SignedPreKeyRecord:
    key_id: int
    public_key: bytes  # 33-byte serialized (§2)
    signature: bytes  # 64 bytes (§7)


@dataclass(frozen=True)
class PreKeyRecord:
    key_id: int
    public_key: bytes


@dataclass(frozen=True)
class KeyBundle:
    """One device's part of ``GET /v1/keys/{number}/{device}`` (§4)."""

    device_id: int
    registration_id: int
    signed_prekey: SignedPreKeyRecord | None
    prekey: PreKeyRecord | None  # a one-time prekey, or the last-resort key, or None


def key_bundle(
    device_id: int,
    registration_id: int,
    signed: Sequence[Any] | None,
    prekey: Sequence[Any] | None,
) -> KeyBundle:
    """A bundle from the rows both backends read: ``(key_id, public_key, signature)`` of
    the signed prekey and ``(key_id, public_key)`` of the one-time or last-resort key."""
    return KeyBundle(
        device_id=device_id,
        registration_id=registration_id,
        signed_prekey=None
        if signed is None
        else SignedPreKeyRecord(signed[0], bytes(signed[1]), bytes(signed[2])),
        prekey=None if prekey is None else PreKeyRecord(prekey[0], bytes(prekey[1])),
    )


@dataclass(frozen=True)
class NewMessage:
    guid: str
    number: str  # destination account
    device_id: int  # destination device
    source: str
    source_device: int
    type: int
    timestamp: int
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class StoredMessage:
    guid: str
    source: str
    source_device: int
    type: int
    timestamp: int
    body: bytes = field(repr=False)


# The ``messages`` columns a store inserts, and those a fetch reads back.
MESSAGE_INSERT_COLUMNS = (
    "guid, number, device_id, source, source_device, type, timestamp, body, received_ms"
)
MESSAGE_SELECT_COLUMNS = "guid, source, source_device, type, timestamp, body"


def message_row(m: NewMessage, now_ms: int) -> tuple[Any, ...]:
    """The values of a new ``messages`` row, in ``MESSAGE_INSERT_COLUMNS`` order."""
    return (
        m.guid,
        m.number,
        m.device_id,
        m.source,
        m.source_device,
        m.type,
        m.timestamp,
        m.body,
        now_ms,
    )


def message_from_row(r: Sequence[Any]) -> StoredMessage:
    """A row of ``MESSAGE_SELECT_COLUMNS`` as a record."""
    return StoredMessage(r[0], r[1], r[2], r[3], r[4], bytes(r[5]))


@dataclass(frozen=True)
class QueueQuota:
    """What one device's queue may hold until acknowledged (count and body bytes)."""

    max_messages: int
    max_bytes: int


@dataclass(frozen=True)
class GuessFailures:
    """Wrong guesses in a row at one secret, and when the last one came."""

    failures: int
    last_ms: int


def check_schema_version(current: int, known: int) -> None:
    """Refuse a database that a newer server has migrated past the ``known`` migrations."""
    if current > known:
        raise StoreError(
            f"the database has schema version {current}, newer than this server "
            f"knows ({known}); upgrade textsecure-provision"
        )


def match_code(rows: Iterable[tuple[Any, str, int]], code: str, now_ms: int) -> Any | None:
    """The key of the unexpired row whose code is ``code``, or None.

    Every row is compared, in constant time, so timing tells neither how many
    digits were right nor which of the outstanding codes matched.
    """
    found = None
    wanted = code.encode()
    for key, stored, expires_ms in rows:
        if hmac.compare_digest(stored.encode(), wanted) and expires_ms > now_ms:
            found = key
    return found


class Storage(Protocol):
    # -- life cycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and apply pending schema migrations (versioned, in order, each atomic)."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise ``ServiceUnavailableError`` if the database does not answer."""

    def describe(self) -> str:
        """Where the data lives, for logs (no password)."""

    # -- registration codes (§4 GET /v1/accounts/sms/code) ------------------------------
    async def issue_registration_code(
        self, number: str, code: str, expires_ms: int, now_ms: int
    ) -> str:
        """The number's unexpired code if it has one (kept as it is, so a request from
        someone else never voids the code its owner is typing), else ``code``, stored."""

    async def consume_registration_code(self, number: str, code: str, now_ms: int) -> bool:
        """True once if ``code`` is the number's unexpired code (constant-time compare);
        the code is then deleted, so two concurrent calls cannot both succeed."""

    # -- accounts and devices -----------------------------------------------------------
    async def create_account(self, number: str, device: NewDevice, now_ms: int) -> None:
        """Make ``number`` an account whose only device is device 1. An existing account
        of that number is replaced with everything it held (devices, keys, messages)."""

    async def get_device(self, number: str, device_id: int) -> StoredDevice | None: ...

    async def list_devices(self, number: str) -> list[StoredDevice]:
        """The account's devices by id; empty if there is no such account."""

    async def touch_device(self, number: str, device_id: int, now_ms: int) -> None:
        """Set last_seen."""

    async def put_provisioning_code(
        self, number: str, code: str, expires_ms: int, keep: int
    ) -> None:
        """Add a provisioning code for ``number``; of its codes only the ``keep`` newest stay
        (§4: a code belongs to one link, several may be outstanding, the oldest go first)."""

    async def has_provisioning_code(self, number: str, code: str, now_ms: int) -> bool:
        """True if ``code`` is one of the number's unexpired codes (constant time; kept)."""

    async def add_device_with_code(
        self, number: str, code: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        """Consume ``code`` and add the device in ONE transaction (§4), as ``add_device``:
        the new device id, or None if the account is full (the code is then kept).
        Raises ``CodeRejectedError`` if ``code`` is not an unexpired code of the number
        (or there is no such account), so two links can never spend one code."""

    async def add_device(
        self, number: str, device: NewDevice, now_ms: int, max_devices: int
    ) -> int | None:
        """Add a device with the next unused id (ids are never reused within an account);
        None if the account already has ``max_devices``. Raises ``NotFoundError`` if there
        is no such account. Count and insert are one transaction."""

    async def remove_device(self, number: str, device_id: int) -> bool:
        """Delete the device with its keys and messages; False if there was none."""

    # -- keys ---------------------------------------------------------------------------
    async def set_identity_key_if_unset(self, number: str, identity_key: bytes) -> bytes | None:
        """Set the account's identity key if it has none; return the key it now has
        (None if there is no such account)."""

    async def get_identity_key(self, number: str) -> bytes | None: ...

    async def replace_keys(
        self,
        number: str,
        device_id: int,
        signed_prekey: SignedPreKeyRecord,
        prekeys: Sequence[PreKeyRecord],
        last_resort: PreKeyRecord | None,
    ) -> None:
        """Set the device's signed prekey and replace its one-time prekeys; the last-resort
        key is replaced only if one is given."""

    async def count_prekeys(self, number: str, device_id: int) -> int: ...

    async def take_key_bundles(self, number: str, device_ids: Sequence[int]) -> list[KeyBundle]:
        """For each existing device in ``device_ids`` (in that order), its signed prekey and
        one one-time prekey, which is deleted as it is handed out (each goes out once);
        with none left, the last-resort key (kept). Missing devices are skipped."""

    # -- messages -------------------------------------------------------------------------
    async def store_messages(
        self, messages: Sequence[NewMessage], now_ms: int, quota: QueueQuota | None = None
    ) -> list[int]:
        """Store all or none. Kept until acknowledged, across restarts (§4). With a quota,
        nothing is stored if a destination device's queue would then hold more than it
        allows: the answer is those devices' ids (empty when stored). Checking and storing
        are one transaction per destination device."""

    async def fetch_messages(
        self, number: str, device_id: int, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """The oldest messages for the device, at most ``limit`` and, after the first, at
        most ``max_bytes`` of bodies; and whether more are waiting."""

    async def delete_message(self, number: str, device_id: int, guid: str) -> bool:
        """Acknowledge: delete the device's message ``guid``; False if it had none."""

    # -- housekeeping ---------------------------------------------------------------------
    async def purge_expired(self, now_ms: int) -> int:
        """Delete expired registration and provisioning codes, refilled limit buckets and
        forgotten guess failures; returns how many codes."""

    # -- limits that survive a restart (limits/persistent.py, limits/backoff.py) -----------
    async def save_limit_buckets(self, buckets: Sequence[tuple[str, str, int]]) -> None:
        """Upsert ``(rule, key, full_at_ms)`` rows."""

    async def load_limit_buckets(
        self, now_ms: int, per_rule: int
    ) -> list[tuple[str, str, int]]:
        """The buckets not yet full again, at most ``per_rule`` per rule, most spent first."""

    async def get_guess_failures(self, rule: str, key: str, now_ms: int) -> GuessFailures | None:
        """The failures counted for ``key``, unless forgotten by ``now_ms``."""

    async def add_guess_failure(
        self, rule: str, key: str, now_ms: int, forget_after_ms: int
    ) -> int:
        """Count one more failure (atomically) and return how many there are now; the row
        is forgotten ``forget_after_ms`` after this failure."""

    async def clear_guess_failures(self, rule: str, key: str) -> None: ...
