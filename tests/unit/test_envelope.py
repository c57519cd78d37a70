"""Behaviour of the DeviceInit envelope: round trips, tampering, truncation, check order (§5)."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from textsecure_provision.crypto import envelope
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import EnvelopeError, MessageFormatError, ProvisionError
from textsecure_provision.protocol.messages import IdentityKeyPayload
from textsecure_provision.protocol.provisioning import open_device_init, seal_device_init

SECONDARY = KeyPair.from_private(bytes(range(32)))
IDENTITY = KeyPair.from_private(bytes(range(1, 33)))
SEALED = envelope.seal(b"identity key bytes", SECONDARY.public)


def payload(number: str = "+15550001111", code: int = 42) -> IdentityKeyPayload:
    return IdentityKeyPayload(IDENTITY, number, "https://relay.example.org", True, code)


@settings(max_examples=50, deadline=None)
@given(
    priv=st.binary(min_size=32, max_size=32),
    digits=st.text("0123456789", min_size=8, max_size=15),
    code=st.integers(0, 2**32 - 1),
    sms=st.booleans(),
)
def test_round_trip_random_identities(priv: bytes, digits: str, code: int, sms: bool) -> None:
    pay = IdentityKeyPayload(
        KeyPair.from_private(priv), "+" + digits, "https://a.example", sms, code
    )
    sealed = seal_device_init(pay, SECONDARY.public)
    opened = open_device_init(sealed.device_init, SECONDARY)
    assert opened.payload == pay
    assert opened.confirmation == sealed.confirmation


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300))
def test_round_trip_any_plaintext(plaintext: bytes) -> None:
    sealed = envelope.seal(plaintext, SECONDARY.public)
    assert len(sealed.identity_key_message) % 16 == 1  # version + iv + blocks + 32-byte mac
    assert (
        envelope.open_envelope(
            sealed.master_ephemeral, sealed.identity_key_message, SECONDARY
        ).plaintext
        == plaintext
    )


def test_every_single_bit_flip_of_the_message_is_refused() -> None:
    msg = SEALED.identity_key_message
    for i in range(len(msg) * 8):
        flipped = bytearray(msg)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(EnvelopeError):
            envelope.open_envelope(SEALED.master_ephemeral, bytes(flipped), SECONDARY)


def test_every_bit_flip_of_the_ephemeral_key_is_refused() -> None:
    raw = SEALED.master_ephemeral.serialize()
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        sealed_init = seal_device_init(payload(), SECONDARY.public)
        data = sealed_init.device_init
        key_at = data.index(b"\x0a\x21") + 2  # field 1, length 33
        tampered = bytearray(data)
        tampered[key_at + i // 8] ^= 1 << (i % 8)
        with pytest.raises((EnvelopeError, MessageFormatError)):
            open_device_init(bytes(tampered), SECONDARY)


def test_every_truncation_is_refused() -> None:
    msg = SEALED.identity_key_message
    for n in range(len(msg)):
        with pytest.raises(EnvelopeError):
            envelope.open_envelope(SEALED.master_ephemeral, msg[:n], SECONDARY)


def test_wrong_recipient_key_is_refused() -> None:
    other = KeyPair.from_private(bytes(range(5, 37)))
    with pytest.raises(EnvelopeError):
        envelope.open_envelope(SEALED.master_ephemeral, SEALED.identity_key_message, other)


def test_version_is_checked_first() -> None:
    bad = b"\x32" + SEALED.identity_key_message[1:]
    with pytest.raises(EnvelopeError, match="version"):
        envelope.open_envelope(SEALED.master_ephemeral, bad, SECONDARY)
    with pytest.raises(EnvelopeError, match="version"):
        envelope.open_envelope(SEALED.master_ephemeral, b"", SECONDARY)


def test_length_is_checked_before_mac() -> None:
    short = SEALED.identity_key_message[:64]
    with pytest.raises(EnvelopeError, match="length"):
        envelope.open_envelope(SEALED.master_ephemeral, short, SECONDARY)
    not_blocks = SEALED.identity_key_message + b"\x00"
    with pytest.raises(EnvelopeError, match="length"):
        envelope.open_envelope(SEALED.master_ephemeral, not_blocks, SECONDARY)


def _sealed_with_bad_padding() -> tuple[KeyPair, bytes]:
    """A message whose MAC is valid but whose padding is not: only the key holder can make it."""
    eph = KeyPair.from_private(bytes(range(9, 41)))
    keys = envelope.derive_envelope_keys(eph.exchange(SECONDARY.public), eph.public)
    iv = bytes(16)
    enc = Cipher(algorithms.AES(keys.aes_key), modes.CBC(iv)).encryptor()
    ct = enc.update(b"A" * 15 + b"\x00") + enc.finalize()  # pad byte 0 is invalid
    body = b"\x33" + iv + ct
    return eph, body + hmac.new(keys.mac_key, body, sha256).digest()


def test_padding_failure_looks_exactly_like_mac_failure() -> None:
    eph, bad_padding = _sealed_with_bad_padding()
    with pytest.raises(EnvelopeError) as padding_err:
        envelope.open_envelope(eph.public, bad_padding, SECONDARY)
    bad_mac = bytearray(SEALED.identity_key_message)
    bad_mac[-1] ^= 1
    with pytest.raises(EnvelopeError) as mac_err:
        envelope.open_envelope(SEALED.master_ephemeral, bytes(bad_mac), SECONDARY)
    assert str(padding_err.value) == str(mac_err.value)
    assert type(padding_err.value) is type(mac_err.value)


def test_fresh_randomness_each_seal() -> None:
    a = envelope.seal(b"x", SECONDARY.public)
    b = envelope.seal(b"x", SECONDARY.public)
    assert a.master_ephemeral != b.master_ephemeral
    assert a.identity_key_message[1:17] != b.identity_key_message[1:17]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_device_init_raises_only_our_errors(data: bytes) -> None:
    with pytest.raises(ProvisionError):
        open_device_init(data, SECONDARY)


def test_confirmation_code_differs_per_link() -> None:
    codes = {envelope.seal(b"x", SECONDARY.public).confirmation for _ in range(20)}
    assert len(codes) > 15
