"""Behaviour of the session layer (§7): ordering, bounds, tampering, persistence, garbage."""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import (
    DuplicateMessageError,
    MessageFormatError,
    MessageTooFarError,
    ProvisionError,
    SessionError,
)
from textsecure_provision.proto import whisper_pb2
from textsecure_provision.protocol.session import (
    MAX_FORWARD_JUMP,
    MAX_SKIPPED_KEYS,
    PREKEY_MESSAGE_TYPE,
    WHISPER_MESSAGE_TYPE,
    PreKeyBundle,
    PreKeyDecryption,
    Session,
    decrypt_message,
    decrypt_prekey_message,
    encrypt,
    initiate_session,
)
from textsecure_provision.protocol.session.state import MAX_ARCHIVED_STATES, MAX_RECEIVER_CHAINS

rng = secrets.token_bytes


@dataclass
class Device:
    """One device's long-term keys, as its store would hold them."""

    identity: KeyPair
    registration_id: int
    signed_prekey_id: int = 1
    signed_prekey: KeyPair = field(default_factory=KeyPair.generate)
    prekeys: dict[int, KeyPair] = field(default_factory=dict)

    @classmethod
    def new(cls, identity: KeyPair | None = None, prekeys: int = 5) -> Device:
        dev = cls(identity or KeyPair.generate(), secrets.randbelow(16380) + 1)
        dev.prekeys = {100 + i: KeyPair.generate() for i in range(prekeys)}
        return dev

    def bundle(self, *, with_prekey: bool = True) -> PreKeyBundle:
        sig = signing.sign(self.identity.private, self.signed_prekey.public.serialize())
        prekey_id = min(self.prekeys) if with_prekey and self.prekeys else None
        return PreKeyBundle(
            identity_key=self.identity.public,
            registration_id=self.registration_id,
            signed_prekey_id=self.signed_prekey_id,
            signed_prekey=self.signed_prekey.public,
            signed_prekey_signature=sig,
            prekey_id=prekey_id,
            prekey=None if prekey_id is None else self.prekeys[prekey_id].public,
        )

    def receive_prekey(self, session: Session | None, body: bytes) -> PreKeyDecryption:
        result = decrypt_prekey_message(
            session,
            body,
            our_identity=self.identity,
            our_registration_id=self.registration_id,
            signed_prekeys={self.signed_prekey_id: self.signed_prekey}.get,
            one_time_prekeys=self.prekeys.get,
            rng=rng,
        )
        if result.used_prekey_id is not None:
            del self.prekeys[result.used_prekey_id]  # as the store must
        return result


def receive(
    device: Device, session: Session | None, msg_type: int, body: bytes
) -> tuple[Session, bytes]:
    if msg_type == PREKEY_MESSAGE_TYPE:
        result = device.receive_prekey(session, body)
        return result.session, result.plaintext
    assert msg_type == WHISPER_MESSAGE_TYPE and session is not None
    return session, decrypt_message(session, body, rng=rng)


def start() -> tuple[Device, Device, Session, Session]:
    """Alice starts a session with Bob; Bob has received her first message."""
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    msg_type, body = encrypt(a, b"hello")
    b, plain = receive(bob, None, msg_type, body)
    assert plain == b"hello"
    return alice, bob, a, b


def snapshot(session: Session) -> str:
    return json.dumps(session.to_dict(), sort_keys=True)


# -- the happy paths --------------------------------------------------------------------------


def test_first_message_is_type_5_and_uses_the_one_time_prekey() -> None:
    alice, bob = Device.new(), Device.new()
    bundle = bob.bundle()
    a = initiate_session(alice.identity, alice.registration_id, bundle, rng)
    assert not a.has_received_reply
    msg_type, body = encrypt(a, b"NEW_DEVICE_REGISTERED")
    assert msg_type == PREKEY_MESSAGE_TYPE == 5
    assert body[0] == 0x33
    result = bob.receive_prekey(None, body)
    assert result.plaintext == b"NEW_DEVICE_REGISTERED"
    assert result.used_prekey_id == bundle.prekey_id
    assert result.their_identity == alice.identity.public
    assert result.their_registration_id == alice.registration_id
    assert result.session.remote_identity == alice.identity.public
    assert result.session.remote_registration_id == alice.registration_id
    assert result.session.has_received_reply  # the responder never sends type 5


def test_bundle_without_one_time_prekey() -> None:
    alice, bob = Device.new(), Device.new(prekeys=0)
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    result = bob.receive_prekey(None, encrypt(a, b"hi").body)
    assert (result.plaintext, result.used_prekey_id) == (b"hi", None)


def test_every_message_is_type_5_until_a_reply_arrives() -> None:
    _, bob, a, b = start()
    for i in range(30):
        msg_type, body = encrypt(a, b"m%d" % i)
        assert msg_type == PREKEY_MESSAGE_TYPE
        b, plain = receive(bob, b, msg_type, body)
        assert plain == b"m%d" % i
    assert bob.prekeys.keys() == set(range(101, 105)), "only the first message used a prekey"
    reply_type, reply = encrypt(b, b"ack")
    assert reply_type == WHISPER_MESSAGE_TYPE
    assert decrypt_message(a, reply, rng=rng) == b"ack"
    assert encrypt(a, b"after").msg_type == WHISPER_MESSAGE_TYPE


def test_replies_both_ways_many_rounds() -> None:
    _, _, a, b = start()
    for rnd in range(20):
        for n in range(rnd % 3 + 1):
            t, body = encrypt(b, b"b%d.%d" % (rnd, n))
            assert t == WHISPER_MESSAGE_TYPE
            assert decrypt_message(a, body, rng=rng) == b"b%d.%d" % (rnd, n)
        for n in range(rnd % 2 + 1):
            t, body = encrypt(a, b"a%d.%d" % (rnd, n))
            assert t == WHISPER_MESSAGE_TYPE
            assert decrypt_message(b, body, rng=rng) == b"a%d.%d" % (rnd, n)
    for s in (a, b):
        assert len(s.state.receiver_chains) <= MAX_RECEIVER_CHAINS


def test_out_of_order_within_a_chain() -> None:
    _, _, a, b = start()
    reply = encrypt(b, b"ack").body
    decrypt_message(a, reply, rng=rng)
    sent = [(i, encrypt(a, b"%d" % i).body) for i in range(40)]
    random.Random(7).shuffle(sent)
    for i, body in sent:
        assert decrypt_message(b, body, rng=rng) == b"%d" % i


def test_late_messages_from_an_older_chain() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    old = [encrypt(a, b"old%d" % i).body for i in range(3)]
    decrypt_message(b, old[1], rng=rng)
    decrypt_message(a, encrypt(b, b"ack2").body, rng=rng)  # Alice ratchets: new chain
    new = encrypt(a, b"new").body
    assert decrypt_message(b, new, rng=rng) == b"new"
    assert decrypt_message(b, old[2], rng=rng) == b"old2"
    assert decrypt_message(b, old[0], rng=rng) == b"old0"


def test_skip_up_to_the_bound_then_fill_in() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    bodies = [encrypt(a, b"%d" % i).body for i in range(MAX_FORWARD_JUMP + 1)]
    assert decrypt_message(b, bodies[MAX_FORWARD_JUMP], rng=rng) == b"%d" % MAX_FORWARD_JUMP
    assert decrypt_message(b, bodies[0], rng=rng) == b"0"
    assert decrypt_message(b, bodies[1234], rng=rng) == b"1234"


def test_beyond_the_bound_is_refused_and_changes_nothing() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    bodies = [encrypt(a, b"%d" % i).body for i in range(MAX_FORWARD_JUMP + 2)]
    before = snapshot(b)
    with pytest.raises(MessageTooFarError, match="ahead"):
        decrypt_message(b, bodies[MAX_FORWARD_JUMP + 1], rng=rng)
    assert snapshot(b) == before
    assert decrypt_message(b, bodies[0], rng=rng) == b"0"


def test_skipped_keys_are_bounded_oldest_dropped_first() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    bodies = [encrypt(a, b"%d" % i).body for i in range(MAX_SKIPPED_KEYS + 11)]
    decrypt_message(b, bodies[MAX_SKIPPED_KEYS], rng=rng)  # stores keys 0..1999
    decrypt_message(b, bodies[MAX_SKIPPED_KEYS + 10], rng=rng)  # 9 more: 0..8 dropped
    assert sum(len(c.skipped) for c in b.state.receiver_chains) == MAX_SKIPPED_KEYS
    with pytest.raises(DuplicateMessageError):  # its key was dropped: refused as a duplicate
        decrypt_message(b, bodies[0], rng=rng)
    assert decrypt_message(b, bodies[9], rng=rng) == b"9"


def test_duplicates_are_refused() -> None:
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    first = encrypt(a, b"one").body
    b = bob.receive_prekey(None, first).session
    with pytest.raises(SessionError):
        bob.receive_prekey(b, first)  # the same type-5 message again
    second = encrypt(a, b"two").body
    assert bob.receive_prekey(b, second).plaintext == b"two"
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    bodies = [encrypt(a, b"%d" % i).body for i in range(3)]
    for body in (bodies[2], bodies[0], bodies[1]):
        decrypt_message(b, body, rng=rng)
    for body in bodies:  # in order and skipped-then-used alike
        before = snapshot(b)
        with pytest.raises(DuplicateMessageError, match="already received"):
            decrypt_message(b, body, rng=rng)
        assert snapshot(b) == before


# -- tampering, truncation, wrong receiver ----------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def flip(body: bytes, bit: int) -> bytes:
    out = bytearray(body)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_bit_flip_of_a_whisper_message_is_refused() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    body = encrypt(a, b"DeviceControl{SENT_MESSAGE}").body
    before = snapshot(b)
    for bit in range(len(body) * 8):
        with pytest.raises(SessionError):
            decrypt_message(b, flip(body, bit), rng=rng)
    assert snapshot(b) == before, "failed messages must not change the session"
    assert decrypt_message(b, body, rng=rng) == b"DeviceControl{SENT_MESSAGE}"


def test_bit_flips_of_a_prekey_message() -> None:
    """Refused, except in the registration id: libaxolotl does not authenticate that field.

    The flips that may pass are those in the field's tag (the field is then unknown, so the id
    reads as 0) and in its value; every other bit is bound by the X3DH keys or the MAC.
    """
    alice = Device.new()
    bob = Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    body = encrypt(a, b"NEW_DEVICE_REGISTERED").body
    reg_field = bytes((0x28,)) + _varint(alice.registration_id)  # field 5, varint
    start_at = body.index(reg_field, len(body) - 20)
    unauthenticated = range(start_at * 8, (start_at + len(reg_field)) * 8)
    for bit in range(len(body) * 8):
        try:
            result = decrypt_prekey_message(
                None,
                flip(body, bit),
                our_identity=bob.identity,
                our_registration_id=bob.registration_id,
                signed_prekeys={bob.signed_prekey_id: bob.signed_prekey}.get,
                one_time_prekeys=bob.prekeys.get,
                rng=rng,
            )
        except SessionError:
            continue
        assert bit in unauthenticated, f"bit {bit} was flipped and still accepted"
        assert result.plaintext == b"NEW_DEVICE_REGISTERED"
        assert result.their_registration_id != alice.registration_id
    assert bob.receive_prekey(None, body).plaintext == b"NEW_DEVICE_REGISTERED"


def test_truncated_messages_are_refused() -> None:
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    prekey_body = encrypt(a, b"x" * 40).body
    for n in range(len(prekey_body)):
        with pytest.raises(SessionError):
            bob.receive_prekey(None, prekey_body[:n])
    b = bob.receive_prekey(None, prekey_body).session
    body = encrypt(b, b"y" * 40).body
    for n in range(len(body)):
        with pytest.raises(SessionError):
            decrypt_message(a, body[:n], rng=rng)
    assert decrypt_message(a, body, rng=rng) == b"y" * 40


def test_message_for_another_device_of_the_account_is_refused() -> None:
    """All devices of an account share one identity key; the MAC still binds the session."""
    alice = Device.new()
    shared = KeyPair.generate()
    dev2, dev3 = Device.new(shared), Device.new(shared)
    assert (
        dev2.signed_prekey_id == dev3.signed_prekey_id
        and dev2.prekeys.keys() == dev3.prekeys.keys()
    )
    to2 = initiate_session(alice.identity, alice.registration_id, dev2.bundle(), rng)
    to3 = initiate_session(alice.identity, alice.registration_id, dev3.bundle(), rng)
    for_2 = encrypt(to2, b"for device 2").body
    with pytest.raises(SessionError):
        dev3.receive_prekey(None, for_2)
    s2 = dev2.receive_prekey(None, for_2).session
    s3 = dev3.receive_prekey(None, encrypt(to3, b"for device 3").body).session
    decrypt_message(to2, encrypt(s2, b"r2").body, rng=rng)
    whisper_for_2 = encrypt(to2, b"again for 2").body
    with pytest.raises(SessionError):
        decrypt_message(s3, whisper_for_2, rng=rng)
    assert decrypt_message(s2, whisper_for_2, rng=rng) == b"again for 2"


def test_message_from_an_unexpected_identity_is_refused() -> None:
    alice, bob, mallory = Device.new(), Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    with pytest.raises(SessionError, match="unexpected identity"):
        decrypt_prekey_message(
            None,
            encrypt(a, b"x").body,
            our_identity=bob.identity,
            our_registration_id=bob.registration_id,
            signed_prekeys={bob.signed_prekey_id: bob.signed_prekey}.get,
            one_time_prekeys=bob.prekeys.get,
            rng=rng,
            expected_identity=mallory.identity.public,
        )


def test_repeated_prekey_message_cannot_swap_its_identity_key() -> None:
    """The second type-5 message reuses the session; its outer identityKey must still agree."""
    alice, bob, mallory = Device.new(), Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    b = bob.receive_prekey(None, encrypt(a, b"one").body).session
    second = encrypt(a, b"two").body
    proto = whisper_pb2.PreKeyWhisperMessage()
    proto.ParseFromString(second[1:])
    proto.identityKey = mallory.identity.public.serialize()
    forged = second[:1] + proto.SerializeToString()
    before = snapshot(b)
    with pytest.raises(SessionError, match="identity key"):
        bob.receive_prekey(b, forged)
    assert snapshot(b) == before
    result = bob.receive_prekey(b, second)
    assert (result.plaintext, result.their_identity) == (b"two", alice.identity.public)


def test_unknown_prekey_ids_are_refused() -> None:
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    body = encrypt(a, b"x").body
    bob.prekeys.clear()
    with pytest.raises(SessionError, match="one-time prekey"):
        bob.receive_prekey(None, body)
    bob.signed_prekey_id = 2
    with pytest.raises(SessionError, match="signed prekey"):
        bob.receive_prekey(None, body)


def test_bad_bundle_signature_is_refused() -> None:
    alice, bob, other = Device.new(), Device.new(), Device.new()
    good = bob.bundle()
    bad = PreKeyBundle(
        good.identity_key,
        good.registration_id,
        good.signed_prekey_id,
        other.signed_prekey.public,  # not the key Bob signed
        good.signed_prekey_signature,
    )
    with pytest.raises(SessionError, match="signature"):
        initiate_session(alice.identity, alice.registration_id, bad, rng)


def test_wrong_message_kind_is_refused() -> None:
    _, bob, a, b = start()
    prekey_body = encrypt(a, b"x").body
    with pytest.raises(SessionError):
        decrypt_message(b, prekey_body, rng=rng)
    whisper_body = encrypt(b, b"y").body
    with pytest.raises(SessionError):
        bob.receive_prekey(None, whisper_body)


# -- rebuilding and simultaneous starts -------------------------------------------------------


def test_rebuilt_session_archives_the_old_one() -> None:
    alice, bob, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    late = encrypt(a, b"late on the old session").body
    a2 = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng, previous=a)
    assert len(a2.previous_states) == 1 and not a2.has_received_reply
    b, plain = receive(bob, b, *encrypt(a2, b"fresh"))
    assert plain == b"fresh" and len(b.previous_states) == 1
    assert decrypt_message(b, late, rng=rng) == b"late on the old session"
    reply = encrypt(b, b"reply on the new session").body  # the old one was promoted
    assert decrypt_message(a2, reply, rng=rng) == b"reply on the new session"


def test_archived_states_are_bounded() -> None:
    alice, bob = Device.new(prekeys=0), Device.new(prekeys=0)
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    for _ in range(MAX_ARCHIVED_STATES + 5):
        a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng, previous=a)
    assert len(a.previous_states) == MAX_ARCHIVED_STATES


def test_simultaneous_initiation_converges() -> None:
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    b = initiate_session(bob.identity, bob.registration_id, alice.bundle(), rng)
    from_a, from_b = encrypt(a, b"hi bob"), encrypt(b, b"hi alice")
    a, plain_a = receive(alice, a, *from_b)
    b, plain_b = receive(bob, b, *from_a)
    assert (plain_a, plain_b) == (b"hi alice", b"hi bob")
    for i in range(4):
        t, body = encrypt(a, b"a%d" % i)
        b, got = receive(bob, b, t, body)
        assert got == b"a%d" % i
        t, body = encrypt(b, b"b%d" % i)
        a, got = receive(alice, a, t, body)
        assert got == b"b%d" % i


# -- persistence ------------------------------------------------------------------------------


def test_json_round_trip_then_continue() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    pending = [encrypt(a, b"%d" % i).body for i in range(5)]
    decrypt_message(b, pending[4], rng=rng)  # leaves 4 skipped keys in Bob's state
    a = Session.from_dict(json.loads(json.dumps(a.to_dict())))
    b_dict = json.loads(json.dumps(b.to_dict()))
    b = Session.from_dict(b_dict)
    assert b.to_dict() == b_dict
    for i in (0, 3, 1, 2):
        assert decrypt_message(b, pending[i], rng=rng) == b"%d" % i
    for i in range(3):
        assert decrypt_message(a, encrypt(b, b"r%d" % i).body, rng=rng) == b"r%d" % i
        assert decrypt_message(b, encrypt(a, b"s%d" % i).body, rng=rng) == b"s%d" % i


def test_pending_prekey_state_survives_a_round_trip() -> None:
    alice, bob = Device.new(), Device.new()
    a = initiate_session(alice.identity, alice.registration_id, bob.bundle(), rng)
    encrypt(a, b"one")
    a = Session.from_dict(json.loads(json.dumps(a.to_dict())))
    msg_type, body = encrypt(a, b"two")
    assert msg_type == PREKEY_MESSAGE_TYPE
    assert bob.receive_prekey(None, body).plaintext == b"two"


BAD_VALUES: list[object] = [None, "!!", -1, True, 2**32, "AAAA", [], {}, [[1, "AAAA"]]]
OPTIONAL: list[tuple[str, object]] = [
    ("pending_prekey", None),
    ("alice_base_key", None),
    ("receiver_chains", []),
]


def _mutations(d: dict[str, object]) -> list[object]:
    """The dict with one value at a time replaced by something invalid, at every level."""
    cur = json.loads(json.dumps(d))["current"]
    out: list[object] = [None, [], "x", {}, {**d, "format": 2}, {**d, "previous": "x"}]
    out.append({**d, "current": {**cur, "version": 2}})
    for key in cur:
        for bad in BAD_VALUES:
            if (key, bad) not in OPTIONAL:
                out.append({**d, "current": {**cur, key: bad}})
    for key in cur["sender_chain"]:
        for bad in BAD_VALUES:
            out.append({**d, "current": {**cur, "sender_chain": {**cur["sender_chain"], key: bad}}})
    for chain_key in ("ratchet_key", "chain", "skipped"):
        for bad in BAD_VALUES:
            if (chain_key, bad) == ("skipped", []):
                continue
            chains = [{**cur["receiver_chains"][0], chain_key: bad}]
            out.append({**d, "current": {**cur, "receiver_chains": chains}})
    return out


def test_malformed_session_dicts_raise_message_format_error() -> None:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    encrypt(a, b"skip")
    decrypt_message(b, encrypt(a, b"x").body, rng=rng)
    for session in (a, b):
        assert session.state.receiver_chains
        for bad in _mutations(session.to_dict()):
            with pytest.raises(MessageFormatError):
                Session.from_dict(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_garbage_session_dicts_raise_only_provision_errors(value: object) -> None:
    with pytest.raises(MessageFormatError):
        Session.from_dict(value)


# -- round trips and garbage ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> tuple[Session, Session]:
    _, _, a, b = start()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    return a, b


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plaintext=st.binary(max_size=2048), alice_sends=st.booleans())
def test_round_trip_of_random_plaintexts(
    pair: tuple[Session, Session], plaintext: bytes, alice_sends: bool
) -> None:
    a, b = pair
    sender, receiver = (a, b) if alice_sends else (b, a)
    msg_type, body = encrypt(sender, plaintext)
    assert msg_type == WHISPER_MESSAGE_TYPE
    assert decrypt_message(receiver, body, rng=rng) == plaintext


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300) | st.binary(max_size=300).map(lambda g: b"\x33" + g))
def test_garbage_bodies_raise_only_provision_errors(
    pair: tuple[Session, Session], garbage: bytes
) -> None:
    a, _ = pair
    bob = Device.new()
    before = snapshot(a)
    with pytest.raises(SessionError):
        decrypt_message(a, garbage, rng=rng)
    with pytest.raises(ProvisionError):
        bob.receive_prekey(None, garbage)
    assert snapshot(a) == before


def test_programmer_mistakes_stay_type_errors() -> None:
    _, _, a, _ = start()
    with pytest.raises(TypeError):
        encrypt(a, "text, not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decrypt_message(a, "text, not bytes", rng=rng)  # type: ignore[arg-type]
