"""Private keys are clamped everywhere (§2), so a libaxolotl (2014) device can sign with them.

Known answers come from vectors/device_init.json, whose ``identity_private_unclamped`` is the
identity key before clamping; the old (first-round) vector's unclamped ephemeral keys are
written out here.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import libaxolotl2014
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_store import make_record

from textsecure_provision.crypto import envelope, signing
from textsecure_provision.crypto.keys import KeyPair, PrivateKey, PublicKey, clamp, is_clamped
from textsecure_provision.proto import provisioning_pb2 as pb
from textsecure_provision.protocol.messages import IdentityKeyPayload, encode_identity_key
from textsecure_provision.protocol.prekeys import verify_signed_prekey
from textsecure_provision.protocol.provisioning import open_device_init
from textsecure_provision.store import DeviceStore
from textsecure_provision.store.record import encode_record
from textsecure_provision.store.store import RECORD_FILE

# The first round's vector, before the keys were clamped: same public keys.
OLD_SECONDARY_PRIVATE = bytes.fromhex("a8" * 32)
OLD_MASTER_PRIVATE = bytes.fromhex("b0" + "11" * 31)


def h(v: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(v[key])


def unclamp(scalar: bytes) -> bytes:
    """A scalar that clamps to ``scalar``: low three bits and the top bit set."""
    return bytes((scalar[0] | 7,)) + scalar[1:31] + bytes((scalar[31] | 0x80,))


def test_clamp_known_answers(device_init_vector: dict[str, Any]) -> None:
    v = device_init_vector
    assert clamp(h(v, "identity_private_unclamped")) == h(v, "identity_private")
    assert clamp(OLD_SECONDARY_PRIVATE) == h(v, "secondary_ephemeral_private")
    assert clamp(OLD_MASTER_PRIVATE) == h(v, "master_ephemeral_private")
    assert is_clamped(h(v, "identity_private"))
    assert not is_clamped(h(v, "identity_private_unclamped"))


def test_private_key_is_clamped_when_built(device_init_vector: dict[str, Any]) -> None:
    v = device_init_vector
    key = PrivateKey.from_bytes(h(v, "identity_private_unclamped"))
    assert key.serialize() == h(v, "identity_private")
    assert key.public_key().serialize() == h(v, "identity_public33")


@given(st.binary(min_size=32, max_size=32))
def test_generated_keys_are_clamped_and_public_unchanged(raw: bytes) -> None:
    pair = KeyPair.generate(lambda n: raw)
    assert is_clamped(pair.private.serialize())
    # X25519 clamps internally, so the public key is the one of the unclamped scalar too.
    assert pair.public == KeyPair.from_private(raw).public


def test_unclamped_identity_seals_to_the_same_device_init(
    device_init_vector: dict[str, Any],
) -> None:
    v = device_init_vector
    payload = IdentityKeyPayload(
        identity_key_pair=KeyPair.from_private(h(v, "identity_private_unclamped")),
        phone_number="+15550001111",
        server="https://relay.example.org",
        master_supports_sms=False,
        provisioning_code=123456789,
    )
    plaintext = encode_identity_key(payload)
    assert plaintext == h(v, "identity_key_message_plaintext")
    secondary = KeyPair.from_private(h(v, "secondary_ephemeral_private"))
    master = KeyPair.from_private(OLD_MASTER_PRIVATE)  # unclamped ephemeral: same bytes too
    sealed = envelope.seal_with(plaintext, secondary.public, master, h(v, "iv"))
    assert sealed.identity_key_message == h(v, "identity_key_message")


def test_received_unclamped_key_is_clamped_before_use(
    device_init_vector: dict[str, Any],
) -> None:
    """A master that sends an unclamped key (as our first round did) still links usably."""
    v = device_init_vector
    identity_public = h(v, "identity_public33")
    structure = pb.IdentityKeyPairStructure(
        publicKey=identity_public, privateKey=h(v, "identity_private_unclamped")
    ).SerializeToString()
    plaintext = pb.IdentityKey(
        identityKey=structure,
        phoneNumber="+15550001111",
        server="https://relay.example.org",
        masterSupportsSms=False,
        provisioningCode=123456789,
    ).SerializeToString()
    secondary = KeyPair.from_private(h(v, "secondary_ephemeral_private"))
    sealed = envelope.seal_with(
        plaintext, secondary.public, KeyPair.from_private(h(v, "master_ephemeral_private")),
        h(v, "iv"),
    )
    device_init = pb.DeviceInit(
        masterEphemeralPubKey=sealed.master_ephemeral.serialize(),
        identityKeyMessage=sealed.identity_key_message,
    ).SerializeToString()
    opened = open_device_init(device_init, secondary)
    pair = opened.payload.identity_key_pair
    assert pair.private.serialize() == h(v, "identity_private")
    assert pair.public.serialize() == identity_public


def test_libaxolotl_2014_signature_with_the_device_init_key_verifies(
    device_init_vector: dict[str, Any],
) -> None:
    """Sign as libaxolotl 2014 does with the key the DeviceInit carries: it must verify."""
    v = device_init_vector
    secondary = KeyPair.from_private(h(v, "secondary_ephemeral_private"))
    identity = open_device_init(h(v, "device_init"), secondary).payload.identity_key_pair
    prekey = KeyPair.generate()
    message = prekey.public.serialize()
    signature = libaxolotl2014.curve25519_sign(
        identity.private.serialize(), message, os.urandom(64)
    )
    assert verify_signed_prekey(identity.public, prekey.public, signature)
    # Tampering still fails: the check is real.
    assert not signing.verify(identity.public, message[:-1] + b"\x00", signature)


def test_libaxolotl_2014_signature_with_an_unclamped_key_fails(
    device_init_vector: dict[str, Any],
) -> None:
    """Why clamping matters: the same peer, handed the unclamped scalar, signs invalidly."""
    v = device_init_vector
    public = PublicKey.from_bytes(h(v, "identity_public33"))
    message = b"\x05" + bytes(32)
    signature = libaxolotl2014.curve25519_sign(
        h(v, "identity_private_unclamped"), message, bytes(64)
    )
    assert not signing.verify(public, message, signature)


def test_our_signatures_verify_for_any_generated_identity() -> None:
    for _ in range(5):
        identity = KeyPair.generate()
        prekey = KeyPair.generate()
        signature = signing.sign(identity.private, prekey.public.serialize())
        assert verify_signed_prekey(identity.public, prekey.public, signature)
        peer_sig = libaxolotl2014.curve25519_sign(
            identity.private.serialize(), prekey.public.serialize(), os.urandom(64)
        )
        assert verify_signed_prekey(identity.public, prekey.public, peer_sig)


# -- the data folder: written before clamping, rewritten once on first load ---------------------


def _unclamp_record_file(path: Path, identity_unclamped: bytes, public: bytes) -> None:
    doc = json.loads(path.read_bytes())
    structure = pb.IdentityKeyPairStructure.FromString(
        base64.b64decode(doc["identity_key_pair"])
    )
    structure.privateKey = identity_unclamped
    structure.publicKey = public
    doc["identity_key_pair"] = base64.b64encode(structure.SerializeToString()).decode()
    for key in [doc["signed_prekey"], *doc["prekeys"], doc["last_resort_key"]]:
        key["private"] = base64.b64encode(unclamp(base64.b64decode(key["private"]))).decode()
    path.write_bytes((json.dumps(doc, indent=1) + "\n").encode())


def test_stored_unclamped_keys_are_clamped_and_rewritten_once(
    tmp_path: Path, device_init_vector: dict[str, Any]
) -> None:
    v = device_init_vector
    store = DeviceStore(tmp_path / "dev")
    record = make_record()
    store.commit_record(record)
    path = store.path / RECORD_FILE
    _unclamp_record_file(path, h(v, "identity_private_unclamped"), h(v, "identity_public33"))
    before = path.read_bytes()

    loaded = store.require_record()

    # Known answer: the identity key is the vector's clamped one, the public key unchanged.
    assert loaded.identity.private.serialize() == h(v, "identity_private")
    assert loaded.identity.public.serialize() == h(v, "identity_public33")
    assert [k.key_pair.private for k in loaded.prekeys] == [
        k.key_pair.private for k in record.prekeys
    ]
    assert loaded.signed_prekey.key_pair.private == record.signed_prekey.key_pair.private
    after = path.read_bytes()
    assert after != before and after == encode_record(loaded)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in store.path.iterdir()] == [RECORD_FILE]  # no temp file left

    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    assert store.require_record() == loaded
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)  # once only


def test_clamped_store_is_not_rewritten(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "dev")
    store.commit_record(make_record())
    path = store.path / RECORD_FILE
    inode = path.stat().st_ino
    store.require_record()
    assert path.stat().st_ino == inode


@pytest.mark.parametrize("field", ["identity", "prekey"])
def test_rewrite_keeps_a_corrupt_file_untouched(tmp_path: Path, field: str) -> None:
    """A record that does not decode is refused (exit 9) and left byte-identical."""
    store = DeviceStore(tmp_path / "dev")
    store.commit_record(make_record())
    path = store.path / RECORD_FILE
    doc = json.loads(path.read_bytes())
    if field == "identity":
        doc["identity_key_pair"] = base64.b64encode(b"\x0a\x01").decode()
    else:
        doc["prekeys"][0]["private"] = base64.b64encode(bytes(31)).decode()
    path.write_bytes(json.dumps(doc).encode())
    before = path.read_bytes()
    from textsecure_provision.errors import StoreError

    with pytest.raises(StoreError, match="corrupt"):
        store.require_record()
    assert path.read_bytes() == before
