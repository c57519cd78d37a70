"""The data folder: modes checked every time, atomic writes, one writer, corrupt files refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from device_records import device_record  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import StoreError
from textsecure_provision.store import DeviceRecord, DeviceStore, PendingLink, files
from textsecure_provision.store.lock import folder_lock
from textsecure_provision.store.record import (
    decode_pending,
    decode_record,
    encode_pending,
    encode_record,
)
from textsecure_provision.store.store import PENDING_FILE, RECORD_FILE


def make_record(number: str = "+15550001111", device_id: int = 1) -> DeviceRecord:
    return device_record(
        number, device_id, trusted_servers=("https://relay.example.org",), name="laptop"
    )


def make_pending() -> PendingLink:
    return PendingLink(
        device_init=b"\x0a\x01x",
        ephemeral=KeyPair.generate(),
        channel_server="http://127.0.0.1:8080",
        trusted_servers=("http://127.0.0.1:8080",),
        received_ms=1000,
        expires_ms=601_000,
        name=None,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (mode(p), p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


# -- encoding -----------------------------------------------------------------------------------


def test_record_round_trips() -> None:
    record = make_record()
    assert decode_record(encode_record(record)) == record


def test_pending_round_trips() -> None:
    pending = make_pending()
    assert decode_pending(encode_pending(pending)) == pending


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("identity_key_pair"),
        lambda d: d.update(number="5550001111"),
        lambda d: d.update(device_id="1"),
        lambda d: d.update(device_id=True),
        lambda d: d.update(version=99),
        lambda d: d.update(identity_key_pair="not base64!"),
        lambda d: d["prekeys"][0].update(public=d["prekeys"][1]["public"]),  # pair mismatch
        lambda d: d.update(trusted_servers=[1]),
        lambda d: d["signed_prekey"].pop("signature"),
    ],
)
def test_corrupt_record_is_store_error(mutate) -> None:
    doc = json.loads(encode_record(make_record()))
    mutate(doc)
    with pytest.raises(StoreError):
        decode_record(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
def test_garbage_record_is_store_error(data: bytes) -> None:
    with pytest.raises(StoreError):
        decode_record(data)


def test_record_repr_hides_secrets() -> None:
    record = make_record()
    text = repr(record)
    assert record.password not in text
    assert record.identity.private.raw.hex() not in text


# -- modes ----------------------------------------------------------------------------------------


def test_nothing_is_created_until_a_commit(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    assert store.load_record() is None
    assert store.load_pending() is None
    with pytest.raises(StoreError, match="no account"):
        store.require_record()
    assert not (tmp_path / "data").exists()


def test_commit_creates_folder_0700_and_files_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = DeviceStore(tmp_path / "a" / "data")
        store.commit_record(make_record())
        store.commit_json("sessions", {"x": 1})
    finally:
        os.umask(old)
    assert mode(store.path) == 0o700
    assert mode(store.path / RECORD_FILE) == 0o600
    assert mode(store.path / "sessions.json") == 0o600
    assert store.load_json("sessions") == {"x": 1}


@pytest.mark.parametrize("bad_mode", [0o755, 0o750, 0o701, 0o770])
def test_open_folder_is_refused(tmp_path: Path, bad_mode: int) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_record(make_record())
    os.chmod(store.path, bad_mode)
    with pytest.raises(StoreError, match="open to other users") as info:
        store.load_record()
    assert info.value.exit_code == 9
    assert "chmod 700" in info.value.hint
    with pytest.raises(StoreError):
        store.commit_record(make_record(), replace=True)  # not repaired silently either
    assert mode(store.path) == bad_mode


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660])
def test_open_file_is_refused(tmp_path: Path, bad_mode: int) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_record(make_record())
    os.chmod(store.path / RECORD_FILE, bad_mode)
    with pytest.raises(StoreError, match="0600"):
        store.load_record()


def test_any_open_file_in_the_folder_is_refused(tmp_path: Path) -> None:
    # Checked on every run, for every file: a stray readable copy counts too.
    store = DeviceStore(tmp_path / "data")
    store.commit_record(make_record())
    stray = store.path / "backup.json"
    stray.write_text("{}")
    os.chmod(stray, 0o644)
    with pytest.raises(StoreError, match=r"backup\.json"):
        store.load_record()


def test_open_sub_folder_is_refused(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_record(make_record())
    (store.path / "sessions").mkdir(mode=0o755)
    os.chmod(store.path / "sessions", 0o755)
    with pytest.raises(StoreError, match="sessions"):
        store.check()


def test_symlinked_record_is_refused(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_record(make_record())
    real = tmp_path / "elsewhere.json"
    os.replace(store.path / RECORD_FILE, real)
    (store.path / RECORD_FILE).symlink_to(real)
    with pytest.raises(StoreError, match="regular file"):
        store.load_record()


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        DeviceStore(path).load_record()


# -- commits ----------------------------------------------------------------------------------


def test_commit_refuses_to_overwrite_an_account(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    first = make_record()
    store.commit_record(first)
    before = snapshot(store.path)
    with pytest.raises(StoreError, match="already holds account"):
        store.commit_record(make_record(device_id=2))
    assert snapshot(store.path) == before
    assert store.require_record() == first
    second = make_record(device_id=3)
    store.commit_record(second, replace=True)
    assert store.require_record() == second


def test_pending_link_lifecycle(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    pending = make_pending()
    store.commit_pending(pending)
    assert mode(store.path / PENDING_FILE) == 0o600
    assert store.load_pending() == pending
    store.commit_record(make_record())  # a stored device makes the pending link moot
    assert store.load_pending() is None
    with pytest.raises(StoreError, match="already holds"):
        store.commit_pending(pending)


def test_remove_pending(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_pending(make_pending())
    store.remove_pending()
    assert store.load_pending() is None
    assert list(store.path.iterdir()) == []


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    store = DeviceStore(tmp_path / "data")
    first = make_record()
    store.commit_record(first)
    before = snapshot(store.path)

    def broken_replace(src, dst):  # the rename fails (disk full, EIO, ...)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(StoreError, match="cannot write"):
        store.commit_record(make_record(device_id=2), replace=True)
    monkeypatch.undo()
    assert snapshot(store.path) == before
    assert store.require_record() == first


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    files.ensure_dir(folder)
    target = folder / "f.json"
    files.atomic_write(target, b"one")
    files.atomic_write(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    assert [p.name for p in folder.iterdir()] == ["f.json"]


@pytest.mark.parametrize("name", ["../x", "device", "pending_link.json", "", "A", "a/b"])
def test_other_modules_cannot_use_reserved_or_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        DeviceStore(tmp_path).commit_json(name, {})


def test_corrupt_json_document_is_store_error(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "data")
    store.commit_json("sessions", {})
    (store.path / "sessions.json").write_text("{nope")
    with pytest.raises(StoreError, match="corrupt"):
        store.load_json("sessions")


# -- the lock ---------------------------------------------------------------------------------

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def lock_holder(tmp_path: Path):
    folder = tmp_path / "data"
    files.ensure_dir(folder)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_lock_held_by_another_process_is_store_error(lock_holder) -> None:
    folder, _ = lock_holder
    with (
        pytest.raises(StoreError, match="locked by another") as info,
        folder_lock(folder, wait_s=0.2),
    ):
        pass
    assert info.value.exit_code == 9


def test_lock_is_free_again_once_the_holder_exits(lock_holder) -> None:
    folder, proc = lock_holder
    proc.stdin.close()
    proc.wait(timeout=10)
    with folder_lock(folder, wait_s=1.0):
        pass
    store = DeviceStore(folder)
    store.commit_record(make_record())
    assert store.require_record().number == "+15550001111"


def test_commit_waits_for_the_lock_and_leaves_no_file_when_it_gives_up(
    lock_holder, monkeypatch
) -> None:
    folder, _ = lock_holder
    monkeypatch.setattr(
        "textsecure_provision.store.store.folder_lock",
        lambda path: folder_lock(path, wait_s=0.2),
    )
    with pytest.raises(StoreError, match="locked"):
        DeviceStore(folder).commit_record(make_record())
    assert list(folder.iterdir()) == []


def test_default_data_dir_is_a_device_folder_in_the_user_data_dir(monkeypatch, tmp_path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_DATA_HOME is the Linux convention")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert DeviceStore().path == tmp_path / "textsecure-provision" / "device"
