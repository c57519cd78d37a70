"""The device's data folder: one ``DeviceStore`` per folder.

Layout (every file 0600, the folder 0700)::

    <data dir>/device.json        DeviceRecord: account, credentials, keys
    <data dir>/pending_link.json  PendingLink from `secondary listen --no-verify`

Nothing is created until something is committed, so a command that fails
before its commit leaves the folder exactly as it was (§8). Commits take the
folder lock, so two processes never write at once, and re-check under the lock
what they checked earlier (a second link never overwrites an account).
Other modules (e.g. sessions) may keep their own files with ``load_json`` /
``commit_json``, which follow the same rules.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from textsecure_provision.errors import StoreError
from textsecure_provision.store import files
from textsecure_provision.store.lock import folder_lock
from textsecure_provision.store.record import (
    DeviceRecord,
    PendingLink,
    decode_pending,
    decode_record,
    encode_pending,
    encode_record,
)

T = TypeVar("T")

APP_NAME = "textsecure-provision"
RECORD_FILE = "device.json"
PENDING_FILE = "pending_link.json"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
NO_ACCOUNT_HINT = (
    "Run `provision register` (first device) or `provision secondary` (new device), "
    "or pass the right --data-dir."
)


def default_data_dir() -> Path:
    """``device/`` in the platform's user data folder (~/.local/share/textsecure-provision).

    A sub-folder, not the app folder itself: ``provision server`` keeps its
    default database in ``server/`` beside it, and that must not count as a
    file of this device's store.
    """
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False)) / "device"


class DeviceStore:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_data_dir()
        # flock is not reentrant across descriptors; the store is, per thread.
        self._held = threading.local()

    def __repr__(self) -> str:
        return f"DeviceStore({str(self.path)!r})"

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> bool:
        """Re-check the folder and its files (run on every command); True if it exists."""
        return files.check_dir(self.path)

    def require_writable(self) -> None:
        """Fail now, before anything is sent or received, if a commit could not write here.

        Creates nothing (a failed command leaves no folder behind): an existing folder is
        checked as usual and must be writable; a missing one needs its nearest existing
        parent to be a writable folder, where ``locked`` will create it.
        """
        if self.check():
            files.require_writable_dir(self.path, self.path)
            return
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        files.require_writable_dir(parent, self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Create the folder if needed, then hold its lock (reentrant for this store)."""
        if getattr(self._held, "locked", False):
            yield
            return
        files.ensure_dir(self.path)
        with folder_lock(self.path):
            self._held.locked = True
            try:
                yield
            finally:
                self._held.locked = False

    # -- the device record ------------------------------------------------------------------
    def load_record(self) -> DeviceRecord | None:
        return self._load(RECORD_FILE, decode_record, encode_record)

    def require_record(self) -> DeviceRecord:
        record = self.load_record()
        if record is None:
            raise StoreError(f"no account in the data folder {self.path}", hint=NO_ACCOUNT_HINT)
        return record

    def require_no_record(self) -> None:
        """Refuse to link or register over an existing account."""
        record = self.load_record()
        if record is not None:
            raise StoreError(
                f"the data folder {self.path} already holds account {record.number} "
                f"(device {record.device_id})",
                hint="Use another --data-dir for a new device, or `provision reset` to unlink "
                "and delete this one; nothing was changed.",
            )

    def commit_record(self, record: DeviceRecord, *, replace: bool = False) -> None:
        """Write the record atomically. Refuses to overwrite an account unless ``replace``.

        Also drops a pending link: once a device is stored, a pending one is moot.
        """
        with self.locked():
            if not replace:
                self.require_no_record()
            files.atomic_write(self.path / RECORD_FILE, encode_record(record))
            files.remove_file(self.path / PENDING_FILE)

    # -- the pending link -------------------------------------------------------------------
    def load_pending(self) -> PendingLink | None:
        return self._load(PENDING_FILE, decode_pending, encode_pending)

    def commit_pending(self, pending: PendingLink) -> None:
        with self.locked():
            self.require_no_record()
            files.atomic_write(self.path / PENDING_FILE, encode_pending(pending))

    def remove_pending(self) -> None:
        if self.check():
            with self.locked():
                files.remove_file(self.path / PENDING_FILE)

    def _load(
        self, name: str, decode: Callable[[bytes, str], T], encode: Callable[[T], bytes]
    ) -> T | None:
        """The value in file ``name``, or None. Decoding clamps private keys
        (crypto/keys.py): a file written before clamping is rewritten once in canonical
        form, so that what is on disk is what we send."""
        if not self.check():
            return None
        data = files.read_file(self.path / name)
        if data is None:
            return None
        value = decode(data, f"{self.path / name}")
        canonical = encode(value)
        if canonical != data:
            self._rewrite(name, data, canonical)
        return value

    def _rewrite(self, name: str, seen: bytes, canonical: bytes) -> None:
        """Replace ``name`` by its canonical form, unless another process changed it since."""
        with self.locked():
            if files.read_file(self.path / name) == seen:
                files.atomic_write(self.path / name, canonical)

    # -- other modules' files ---------------------------------------------------------------
    def load_json(self, name: str) -> Any | None:
        """A JSON document kept by another module (e.g. sessions), or None."""
        if not self.check():
            return None
        data = files.read_file(self.path / _file_name(name))
        if data is None:
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise StoreError(f"{self.path / _file_name(name)} is corrupt (not JSON)") from exc

    def commit_json(self, name: str, doc: Any) -> None:
        with self.locked():
            files.atomic_write(self.path / _file_name(name), (json.dumps(doc) + "\n").encode())


def _file_name(name: str) -> str:
    full = name if name.endswith(".json") else f"{name}.json"
    if not _NAME.fullmatch(name) or full in (RECORD_FILE, PENDING_FILE):
        raise ValueError(f"not a usable store file name: {name!r}")
    return full
