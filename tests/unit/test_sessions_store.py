"""sessions.json: round trips, atomic 0600 commits under the lock, used prekeys deleted, corruption."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from device_records import device_record  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.errors import StoreError
from textsecure_provision.protocol.encoding import b64encode
from textsecure_provision.protocol.prekeys import (
    LAST_RESORT_KEY_ID,
    generate_signed_prekey,
)
from textsecure_provision.protocol.session import PreKeyBundle, Session, encrypt, initiate_session
from textsecure_provision.store import DeviceRecord, DeviceStore
from textsecure_provision.store.sessions import (
    MAX_PROCESSED_GUIDS,
    SESSIONS_FILE,
    KnownDevice,
    SessionBook,
    SessionStore,
    decode_book,
    encode_book,
)

NUMBER = "+15550001111"


def make_record(device_id: int = 1) -> DeviceRecord:
    return device_record(NUMBER, device_id)


def make_session(record: DeviceRecord) -> Session:
    """A real initiator session towards another device of the same account."""
    spk = generate_signed_prekey(record.identity, 9)
    bundle = PreKeyBundle(
        identity_key=record.identity.public,
        registration_id=77,
        signed_prekey_id=spk.key_id,
        signed_prekey=spk.key_pair.public,
        signed_prekey_signature=spk.signature,
    )
    return initiate_session(record.identity, record.registration_id, bundle, os.urandom)


@pytest.fixture
def store(tmp_path: Path) -> DeviceStore:
    s = DeviceStore(tmp_path / "dev")
    s.commit_record(make_record())
    return s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_book_round_trip() -> None:
    record = make_record()
    session = make_session(record)
    encrypt(session, b"advance the chain")
    book = SessionBook()
    book.put(NUMBER, 2, session)
    book.mark_stale(NUMBER, 3)
    book.record_device(KnownDevice(2, 77, 1_700_000_000_123))
    book.mark_processed("guid-1")
    again = decode_book(encode_book(book))
    assert again.peers() == [(NUMBER, 2)]
    restored = again.session(NUMBER, 2)
    assert restored is not None
    assert restored.to_dict() == session.to_dict()
    assert again.is_stale(NUMBER, 3) and not again.is_stale(NUMBER, 2)
    assert again.devices == {2: KnownDevice(2, 77, 1_700_000_000_123)}
    assert again.was_processed("guid-1") and not again.was_processed("guid-2")
    # a session that was never decoded is written back byte for byte
    assert json.loads(encode_book(again)) == json.loads(encode_book(book))


def test_put_clears_stale_and_drop_forgets() -> None:
    record = make_record()
    book = SessionBook()
    book.mark_stale(NUMBER, 2)
    book.put(NUMBER, 2, make_session(record))
    assert not book.is_stale(NUMBER, 2)
    book.drop(NUMBER, 2)
    assert book.session(NUMBER, 2) is None and book.peers() == []


def test_processed_guids_are_bounded() -> None:
    book = SessionBook()
    for i in range(MAX_PROCESSED_GUIDS + 10):
        book.mark_processed(f"g{i}")
    assert len(book.processed) == MAX_PROCESSED_GUIDS
    assert not book.was_processed("g0")
    assert book.was_processed(f"g{MAX_PROCESSED_GUIDS + 9}")


def test_update_commits_atomically_with_0600(store: DeviceStore) -> None:
    sessions = SessionStore(store)
    assert sessions.load().peers() == []
    record = store.require_record()
    with sessions.update() as book:
        book.put(NUMBER, 2, make_session(record))
    path = store.path / SESSIONS_FILE
    assert mode(path) == 0o600
    assert mode(store.path) == 0o700
    assert sessions.load().peers() == [(NUMBER, 2)]
    assert not [p for p in store.path.iterdir() if p.name.startswith(".tmp-")]


def test_update_writes_nothing_when_the_block_fails(store: DeviceStore) -> None:
    sessions = SessionStore(store)
    record = store.require_record()
    with sessions.update() as book:
        book.put(NUMBER, 2, make_session(record))
    before = (store.path / SESSIONS_FILE).read_bytes()
    with pytest.raises(RuntimeError), sessions.update() as book:
        book.drop(NUMBER, 2)
        book.use_prekey(record.prekeys[0].key_id)
        raise RuntimeError("crash before commit")
    assert (store.path / SESSIONS_FILE).read_bytes() == before
    assert len(store.require_record().prekeys) == 3


def test_unchanged_update_writes_no_file(store: DeviceStore) -> None:
    with SessionStore(store).update() as book:
        assert book.session(NUMBER, 2) is None
    assert not (store.path / SESSIONS_FILE).exists()


def test_used_prekey_is_deleted_from_the_record(store: DeviceStore) -> None:
    record = store.require_record()
    used = record.prekeys[1].key_id
    with SessionStore(store).update() as book:
        book.put(NUMBER, 2, make_session(record))
        book.use_prekey(used)
        book.use_prekey(LAST_RESORT_KEY_ID)  # the last-resort key is never deleted
        book.use_prekey(None)
    after = store.require_record()
    assert [k.key_id for k in after.prekeys] == [
        k.key_id for k in record.prekeys if k.key_id != used
    ]
    assert after.last_resort_key == record.last_resort_key
    assert after.signed_prekey == record.signed_prekey  # kept
    assert after.identity == record.identity
    assert mode(store.path / "device.json") == 0o600
    # the private key is gone from the file, not only from the list
    gone = record.prekeys[1].key_pair.private.serialize()
    assert b64encode(gone) not in (store.path / "device.json").read_text()


def test_used_prekey_deletion_edits_the_file_without_decoding_keys(
    store: DeviceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a message's commit and its acknowledgement (B2): no key pair is decoded and
    checked again, and the file is exactly what ``encode_record`` writes for the rest."""
    import dataclasses

    from textsecure_provision.store import record as record_module
    from textsecure_provision.store.record import encode_record

    record = store.require_record()
    used = record.prekeys[0].key_id

    def no_decoding(*args: object, **kw: object) -> None:
        raise AssertionError("decoded the device record again to delete a prekey")

    monkeypatch.setattr(record_module, "decode_record", no_decoding)
    monkeypatch.setattr(record_module.KeyPair, "from_private", no_decoding)
    with SessionStore(store).update() as book:
        book.use_prekey(used)
    monkeypatch.undo()
    kept = tuple(k for k in record.prekeys if k.key_id != used)
    expected = encode_record(dataclasses.replace(record, prekeys=kept))
    assert (store.path / "device.json").read_bytes() == expected


def test_a_corrupt_prekey_list_is_refused_when_deleting(store: DeviceStore) -> None:
    path = store.path / "device.json"
    doc = json.loads(path.read_text())
    doc["prekeys"][1] = {"key_id": "4"}
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    with pytest.raises(StoreError, match="corrupt"), SessionStore(store).update() as book:
        book.use_prekey(3)
    assert path.read_bytes() == before


def test_open_sessions_file_is_refused(store: DeviceStore) -> None:
    record = store.require_record()
    with SessionStore(store).update() as book:
        book.put(NUMBER, 2, make_session(record))
    os.chmod(store.path / SESSIONS_FILE, 0o644)
    with pytest.raises(StoreError, match="open to other users"):
        SessionStore(store).load()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b"[" * 100_000,  # nesting deep enough to exhaust the parser's recursion
        b'{"format": 2, "sessions": {}, "devices": {}, "stale": [], "processed": []}',
        b'{"format": 1, "sessions": [], "devices": {}, "stale": [], "processed": []}',
        b'{"format": 1, "sessions": {"+1": {"x": {}}}, "devices": {}, "stale": [], '
        b'"processed": []}',
        b'{"format": 1, "sessions": {}, "devices": {"2": {"announced_ms": true}}, '
        b'"stale": [], "processed": []}',
        b'{"format": 1, "sessions": {}, "devices": {}, "stale": [["+1"]], "processed": []}',
        b'{"format": 1, "sessions": {}, "devices": {}, "stale": [], "processed": [1]}',
    ],
)
def test_corrupt_file_is_a_store_error(store: DeviceStore, content: bytes) -> None:
    path = store.path / SESSIONS_FILE
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(StoreError):
        SessionStore(store).load()


def test_corrupt_session_fails_when_used(store: DeviceStore) -> None:
    path = store.path / SESSIONS_FILE
    doc = {
        "format": 1,
        "sessions": {NUMBER: {"2": {"format": 1, "current": {"version": 2}, "previous": []}}},
        "devices": {},
        "stale": [],
        "processed": [],
    }
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    book = SessionStore(store).load()  # lazily decoded: loading works
    with pytest.raises(StoreError, match="device 2") as info:
        book.session(NUMBER, 2)
    assert "new-device-registered" in info.value.hint


def test_concurrent_updates_lose_nothing(store: DeviceStore) -> None:
    # Each update opens its own descriptor, so the folder lock serialises threads too.
    sessions = SessionStore(store)

    def worker(n: int) -> None:
        for i in range(8):
            with sessions.update() as book:
                book.mark_processed(f"w{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(sessions.load().processed) == 32
