"""Known answers for the session layer (§7): RFC 5869 HKDF and the libaxolotl v3 session vector.

``tests/vectors/session_v3.json`` was made by an independent libaxolotl port with deterministic
keys. Injecting the keys it generated, in order, must reproduce every message byte for byte;
and its messages must decrypt on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair, PublicKey
from textsecure_provision.errors import SessionError
from textsecure_provision.protocol.session import (
    PREKEY_MESSAGE_TYPE,
    WHISPER_MESSAGE_TYPE,
    PreKeyBundle,
    Session,
    decrypt_message,
    decrypt_prekey_message,
    encrypt,
    initiate_session,
)
from textsecure_provision.protocol.session.primitives import hkdf_sha256
from textsecure_provision.protocol.session.wire import (
    decode_prekey_whisper_message,
    decode_whisper_message,
)

h = bytes.fromhex

# -- RFC 5869 appendix A, cases 1-3 (SHA-256) -------------------------------------------------

RFC5869 = [
    (  # case 1
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (  # case 2: longer inputs
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (  # case 3: zero-length salt and info
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869)
def test_hkdf_rfc5869(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    assert hkdf_sha256(h(ikm), h(salt), h(info), length).hex() == okm


# -- the libaxolotl v3 session ----------------------------------------------------------------

LIBAXOLOTL_TYPES = {3: PREKEY_MESSAGE_TYPE, 1: WHISPER_MESSAGE_TYPE}  # see the vector's "note"


class KeyFeed:
    """An ``rng`` that hands out one party's generated private keys, in order."""

    def __init__(self, vector: dict[str, Any], who: str) -> None:
        self.keys = [h(k["private"]) for k in vector["generated_keys_in_order"] if k["by"] == who]

    def __call__(self, n: int) -> bytes:
        assert n == 32, "the session layer asked for something other than a private key"
        assert self.keys, "the session layer generated more keys than libaxolotl did"
        return self.keys.pop(0)


def identity(vector: dict[str, Any], who: str) -> KeyPair:
    pair = KeyPair.from_private(h(vector[who]["identity_private"]))
    assert pair.public.serialize().hex() == vector[who]["identity_public"]
    return pair


def bob_bundle(vector: dict[str, Any]) -> PreKeyBundle:
    bob = vector["bob"]
    return PreKeyBundle(
        identity_key=PublicKey.from_bytes(h(bob["identity_public"])),
        registration_id=bob["registration_id"],
        signed_prekey_id=bob["signed_prekey"]["id"],
        signed_prekey=PublicKey.from_bytes(h(bob["signed_prekey"]["public"])),
        signed_prekey_signature=h(bob["signed_prekey"]["signature"]),
        prekey_id=bob["one_time_prekey"]["id"],
        prekey=PublicKey.from_bytes(h(bob["one_time_prekey"]["public"])),
    )


def bob_lookups(
    vector: dict[str, Any],
) -> tuple[Callable[[int], KeyPair | None], Callable[[int], KeyPair | None]]:
    bob = vector["bob"]
    signed = {bob["signed_prekey"]["id"]: KeyPair.from_private(h(bob["signed_prekey"]["private"]))}
    one_time = {
        bob["one_time_prekey"]["id"]: KeyPair.from_private(h(bob["one_time_prekey"]["private"]))
    }
    return signed.get, one_time.get


def bob_receives_prekey(
    vector: dict[str, Any], session: Session | None, body: bytes, rng: KeyFeed
) -> tuple[Session, bytes, int | None]:
    signed, one_time = bob_lookups(vector)
    result = decrypt_prekey_message(
        session,
        body,
        our_identity=identity(vector, "bob"),
        our_registration_id=vector["bob"]["registration_id"],
        signed_prekeys=signed,
        one_time_prekeys=one_time,
        rng=rng,
    )
    assert result.their_identity == identity(vector, "alice").public
    assert result.their_registration_id == vector["alice"]["registration_id"]
    return result.session, result.plaintext, result.used_prekey_id


def test_vector_keys_are_consistent(session_vector: dict[str, Any]) -> None:
    for key in session_vector["generated_keys_in_order"]:
        assert KeyPair.from_private(h(key["private"])).public.serialize().hex() == key["public"]
    for name in ("signed_prekey", "one_time_prekey"):
        k = session_vector["bob"][name]
        assert KeyPair.from_private(h(k["private"])).public.serialize().hex() == k["public"]


def test_bobs_signed_prekey_signature_verifies_in_2014_form(
    session_vector: dict[str, Any],
) -> None:
    bundle = bob_bundle(session_vector)
    sig = bundle.signed_prekey_signature
    assert sig[63] & 0x80, "the vector's signature should carry the sign bit (2014 form)"
    assert signing.verify(bundle.identity_key, bundle.signed_prekey.serialize(), sig)
    bundle.verify()  # no exception
    forged = sig[:10] + bytes((sig[10] ^ 1,)) + sig[11:]
    with pytest.raises(SessionError):
        PreKeyBundle(bundle.identity_key, 1, 5, bundle.signed_prekey, forged).verify()


def test_alice_reproduces_her_prekey_messages(session_vector: dict[str, Any]) -> None:
    rng = KeyFeed(session_vector, "alice")
    alice = initiate_session(
        identity(session_vector, "alice"),
        session_vector["alice"]["registration_id"],
        bob_bundle(session_vector),
        rng,
    )
    for vec in session_vector["messages"][:2]:
        msg_type, body = encrypt(alice, h(vec["plaintext"]))
        assert msg_type == LIBAXOLOTL_TYPES[vec["type"]] == PREKEY_MESSAGE_TYPE
        assert body.hex() == vec["bytes"]


def test_whole_conversation_reproduces_every_byte(session_vector: dict[str, Any]) -> None:
    """Alice → Bob ×2 (type 5), Bob → Alice, Alice → Bob (type 6), keys injected in order."""
    alice_rng, bob_rng = KeyFeed(session_vector, "alice"), KeyFeed(session_vector, "bob")
    alice = initiate_session(
        identity(session_vector, "alice"),
        session_vector["alice"]["registration_id"],
        bob_bundle(session_vector),
        alice_rng,
    )
    bob: Session | None = None
    used_prekeys = []
    for vec in session_vector["messages"]:
        plaintext = h(vec["plaintext"])
        if vec["from"] == "alice":
            msg_type, body = encrypt(alice, plaintext)
        else:
            assert bob is not None
            msg_type, body = encrypt(bob, plaintext)
        assert msg_type == LIBAXOLOTL_TYPES[vec["type"]]
        assert body.hex() == vec["bytes"], f"{vec['kind']} from {vec['from']} differs"
        if vec["from"] == "alice" and msg_type == PREKEY_MESSAGE_TYPE:
            bob, got, used = bob_receives_prekey(session_vector, bob, body, bob_rng)
            used_prekeys.append(used)
        elif vec["from"] == "alice":
            assert bob is not None
            got = decrypt_message(bob, body, rng=bob_rng)
        else:
            got = decrypt_message(alice, body, rng=alice_rng)
        assert got == plaintext
    assert used_prekeys == [session_vector["bob"]["one_time_prekey"]["id"], None]
    assert alice_rng.keys == [] and bob_rng.keys == [], "every generated key was used, in order"


def test_bob_decrypts_alices_messages_as_given(session_vector: dict[str, Any]) -> None:
    msgs = session_vector["messages"]
    rng = KeyFeed(session_vector, "bob")
    bob, first, used = bob_receives_prekey(session_vector, None, h(msgs[0]["bytes"]), rng)
    assert (first, used) == (h(msgs[0]["plaintext"]), 31)
    assert (
        bob.state.sender_ratchet.public.serialize().hex()
        == (session_vector["generated_keys_in_order"][2]["public"])
    ), "Bob's first ratchet key is made when the first message arrives"
    bob, second, used = bob_receives_prekey(session_vector, bob, h(msgs[1]["bytes"]), rng)
    assert (second, used) == (h(msgs[1]["plaintext"]), None)
    assert decrypt_message(bob, h(msgs[3]["bytes"]), rng=rng) == h(msgs[3]["plaintext"])
    with pytest.raises(SessionError):  # and only once
        decrypt_message(bob, h(msgs[3]["bytes"]), rng=rng)


def test_alice_decrypts_bobs_reply_as_given(session_vector: dict[str, Any]) -> None:
    msgs = session_vector["messages"]
    rng = KeyFeed(session_vector, "alice")
    alice = initiate_session(
        identity(session_vector, "alice"),
        session_vector["alice"]["registration_id"],
        bob_bundle(session_vector),
        rng,
    )
    assert not alice.has_received_reply
    assert decrypt_message(alice, h(msgs[2]["bytes"]), rng=rng) == h(msgs[2]["plaintext"])
    assert alice.has_received_reply
    assert encrypt(alice, b"x").msg_type == WHISPER_MESSAGE_TYPE


def test_vector_messages_decode_field_by_field(session_vector: dict[str, Any]) -> None:
    msgs = session_vector["messages"]
    keys = session_vector["generated_keys_in_order"]
    pkm = decode_prekey_whisper_message(h(msgs[0]["bytes"]))
    assert (pkm.registration_id, pkm.prekey_id, pkm.signed_prekey_id) == (4321, 31, 5)
    assert pkm.base_key.serialize().hex() == keys[0]["public"]
    assert pkm.identity_key.serialize().hex() == session_vector["alice"]["identity_public"]
    assert pkm.message.ratchet_key.serialize().hex() == keys[1]["public"]
    assert (pkm.message.counter, pkm.message.previous_counter) == (0, 0)
    assert decode_prekey_whisper_message(h(msgs[1]["bytes"])).message.counter == 1
    reply = decode_whisper_message(h(msgs[2]["bytes"]))
    assert reply.ratchet_key.serialize().hex() == keys[2]["public"]
    later = decode_whisper_message(h(msgs[3]["bytes"]))
    assert later.ratchet_key.serialize().hex() == keys[3]["public"]
    # libaxolotl's previousCounter is the index of the last message on the previous chain
    assert (later.counter, later.previous_counter) == (0, 1)
