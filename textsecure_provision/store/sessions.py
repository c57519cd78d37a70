"""Sessions with the account's other devices, and what this device learnt from them (§7).

One file, ``sessions.json`` (0600, written atomically like every file of the store)::

    {"format": 1,
     "sessions":  {"+15550001111": {"2": <Session.to_dict()>}},   # per (number, device id)
     "devices":   {"3": {"registration_id": 77, "announced_ms": 1700000000000}},
     "stale":     [["+15550001111", 2]],      # rebuild from a fresh bundle before the next send
     "processed": ["<guid>", ...]}            # messages whose effect is stored (newest last)

One file rather than one per device: a send to every device commits all their
sessions in one write, before the ``PUT`` (so a crash after it can never reuse
a message key). The identity key, the signed prekey and the one-time prekeys
stay in ``device.json``; ``SessionStore.update`` deletes a used one-time
prekey from it, after the session that used it is written (§7: a prekey is
used once, and a crash in between only leaves an unused private key behind,
never a session that can't be rebuilt).

Everything happens under the folder lock, so ``receive``, ``master scan`` and
``send-control`` running at once in one folder never lose each other's writes.
Sessions are decoded lazily: a message touches only its sender's session.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textsecure_provision.errors import InvalidInputError, StoreError
from textsecure_provision.protocol.prekeys import LAST_RESORT_KEY_ID
from textsecure_provision.protocol.session import Session
from textsecure_provision.store import files
from textsecure_provision.store.record import drop_prekeys
from textsecure_provision.store.store import RECORD_FILE, DeviceStore

SESSIONS_FILE = "sessions.json"
SESSIONS_FORMAT = 1
MAX_PROCESSED_GUIDS = 512
"""Enough to recognise a redelivered message (a crash between commit and acknowledgement)."""

PeerKey = tuple[str, int]
"""(phone number, device id) of the other end of a session."""


@dataclass(frozen=True)
class KnownDevice:
    """A device of our account that announced itself with NEW_DEVICE_REGISTERED."""

    device_id: int
    registration_id: int | None
    announced_ms: int


@dataclass
class SessionBook:
    """The content of ``sessions.json``; change it inside ``SessionStore.update()``."""

    _raw: dict[PeerKey, Any] = field(default_factory=dict, repr=False)
    _decoded: dict[PeerKey, Session] = field(default_factory=dict, repr=False)
    devices: dict[int, KnownDevice] = field(default_factory=dict)
    stale: set[PeerKey] = field(default_factory=set)
    processed: list[str] = field(default_factory=list)
    used_prekeys: set[int] = field(default_factory=set)
    """One-time prekeys to delete from ``device.json`` when the update commits."""
    changed: bool = False

    # -- sessions ---------------------------------------------------------------------------
    def peers(self) -> list[PeerKey]:
        return sorted(set(self._raw) | set(self._decoded))

    def session(self, number: str, device_id: int) -> Session | None:
        key = (number, device_id)
        if key in self._decoded:
            return self._decoded[key]
        raw = self._raw.get(key)
        if raw is None:
            return None
        try:
            session = Session.from_dict(raw)
        except InvalidInputError as exc:
            raise StoreError(
                f"the stored session with device {device_id} of {number} is corrupt",
                hint="Remove sessions.json from the data folder, then run "
                "`provision send-control new-device-registered` to rebuild every session.",
            ) from exc
        self._decoded[key] = session
        return session

    def put(self, number: str, device_id: int, session: Session) -> None:
        """Store (or replace) a session; it is no longer stale."""
        key = (number, device_id)
        self._decoded[key] = session
        self._raw.pop(key, None)
        self.stale.discard(key)
        self.changed = True

    def drop(self, number: str, device_id: int) -> None:
        key = (number, device_id)
        if key in self._raw or key in self._decoded or key in self.stale:
            self._raw.pop(key, None)
            self._decoded.pop(key, None)
            self.stale.discard(key)
            self.changed = True

    def mark_stale(self, number: str, device_id: int) -> None:
        if (number, device_id) not in self.stale:
            self.stale.add((number, device_id))
            self.changed = True

    def is_stale(self, number: str, device_id: int) -> bool:
        return (number, device_id) in self.stale

    # -- devices, messages, prekeys ---------------------------------------------------------
    def record_device(self, device: KnownDevice) -> None:
        self.devices[device.device_id] = device
        self.changed = True

    def was_processed(self, guid: str) -> bool:
        return guid in self.processed

    def mark_processed(self, guid: str) -> None:
        if guid not in self.processed:
            self.processed.append(guid)
            del self.processed[:-MAX_PROCESSED_GUIDS]
            self.changed = True

    def use_prekey(self, key_id: int | None) -> None:
        """Delete this one-time prekey on commit (never the last-resort key)."""
        if key_id is not None and key_id != LAST_RESORT_KEY_ID:
            self.used_prekeys.add(key_id)


# -- encoding -----------------------------------------------------------------------------------


def encode_book(book: SessionBook) -> bytes:
    sessions: dict[str, dict[str, Any]] = {}
    for number, device_id in book.peers():
        key = (number, device_id)
        decoded = book._decoded.get(key)
        doc = decoded.to_dict() if decoded is not None else book._raw[key]
        sessions.setdefault(number, {})[str(device_id)] = doc
    out = {
        "format": SESSIONS_FORMAT,
        "sessions": sessions,
        "devices": {
            str(d.device_id): {"registration_id": d.registration_id, "announced_ms": d.announced_ms}
            for d in sorted(book.devices.values(), key=lambda d: d.device_id)
        },
        "stale": [[n, d] for n, d in sorted(book.stale)],
        "processed": list(book.processed),
    }
    return (json.dumps(out, separators=(",", ":")) + "\n").encode()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _device_id(text: object, what: str) -> int:
    if not isinstance(text, str) or not text.isdecimal() or not 0 < int(text) < 2**31:
        raise StoreError(f"{what} is corrupt (a device id)")
    return int(text)


def decode_book(data: bytes, what: str = SESSIONS_FILE) -> SessionBook:
    """Parse ``sessions.json``; anything unexpected is a ``StoreError`` (exit 9).

    Session contents are checked when a session is first used (``SessionBook.session``).
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        raise StoreError(f"{what} is corrupt (not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("format") != SESSIONS_FORMAT:
        raise StoreError(f"{what} has an unknown format")
    sessions, devices = doc.get("sessions"), doc.get("devices")
    stale, processed = doc.get("stale"), doc.get("processed")
    if not (
        isinstance(sessions, dict)
        and isinstance(devices, dict)
        and isinstance(stale, list)
        and isinstance(processed, list)
        and all(isinstance(g, str) for g in processed)
    ):
        raise StoreError(f"{what} is corrupt")
    book = SessionBook(processed=list(processed[-MAX_PROCESSED_GUIDS:]))
    for number, per_device in sessions.items():
        if not isinstance(number, str) or not isinstance(per_device, dict):
            raise StoreError(f"{what} is corrupt (sessions)")
        for device_text, raw in per_device.items():
            if not isinstance(raw, dict):
                raise StoreError(f"{what} is corrupt (a session)")
            book._raw[(number, _device_id(device_text, what))] = raw
    for device_text, info in devices.items():
        device_id = _device_id(device_text, what)
        reg = info.get("registration_id") if isinstance(info, dict) else None
        announced = info.get("announced_ms") if isinstance(info, dict) else None
        if (
            not (reg is None or _is_int(reg))
            or not isinstance(announced, int)
            or isinstance(announced, bool)
        ):
            raise StoreError(f"{what} is corrupt (devices)")
        book.devices[device_id] = KnownDevice(device_id, reg, announced)
    for item in stale:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not _is_int(item[1])
        ):
            raise StoreError(f"{what} is corrupt (stale)")
        book.stale.add((item[0], item[1]))
    return book


# -- the store ----------------------------------------------------------------------------------


class SessionStore:
    """``sessions.json`` of one data folder, and the one-time prekeys in its ``device.json``."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    @property
    def path(self) -> Path:
        return self.store.path / SESSIONS_FILE

    def load(self) -> SessionBook:
        """A snapshot, without the lock (for reading; change things with ``update``)."""
        if not self.store.check():
            return SessionBook()
        data = files.read_file(self.path)
        return SessionBook() if data is None else decode_book(data, str(self.path))

    @contextmanager
    def update(self) -> Iterator[SessionBook]:
        """Lock the folder, load, let the caller change the book, and commit it on success.

        Commit order: ``sessions.json`` first, then the used one-time prekeys are removed
        from ``device.json``. If the block raises, nothing is written.
        """
        with self.store.locked():
            data = files.read_file(self.path)
            book = SessionBook() if data is None else decode_book(data, str(self.path))
            yield book
            if book.changed:
                files.atomic_write(self.path, encode_book(book))
            if book.used_prekeys:
                self._delete_prekeys(book.used_prekeys)
                book.used_prekeys = set()
            book.changed = False

    def _delete_prekeys(self, key_ids: set[int]) -> None:
        # Under the folder lock already (store.commit_record would take it again). The file
        # is edited, not decoded again: see drop_prekeys.
        path = self.store.path / RECORD_FILE
        data = files.read_file(path)
        if data is None:
            self.store.require_record()  # raises: the account is gone from the folder
            return
        updated = drop_prekeys(data, key_ids, str(path))
        if updated is not None:
            files.atomic_write(path, updated)
