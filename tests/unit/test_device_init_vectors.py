"""Known answers: reproduce every value of vectors/device_init.json byte for byte (§5, §3)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from textsecure_provision.crypto import envelope
from textsecure_provision.crypto.keys import KeyPair, PublicKey
from textsecure_provision.protocol.link import build_link, parse_link
from textsecure_provision.protocol.messages import (
    DeviceInitMessage,
    decode_identity_key,
    encode_device_init,
    encode_identity_key,
)
from textsecure_provision.protocol.provisioning import open_device_init


def h(v: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(v[key])


@pytest.fixture
def keys(device_init_vector: dict[str, Any]) -> dict[str, KeyPair]:
    v = device_init_vector
    return {
        "secondary": KeyPair.from_private(h(v, "secondary_ephemeral_private")),
        "master": KeyPair.from_private(h(v, "master_ephemeral_private")),
        "identity": KeyPair.from_private(h(v, "identity_private")),
    }


def test_public_keys(device_init_vector: dict[str, Any], keys: dict[str, KeyPair]) -> None:
    v = device_init_vector
    assert keys["secondary"].public.serialize() == h(v, "secondary_ephemeral_public33")
    assert keys["master"].public.serialize() == h(v, "master_ephemeral_public33")
    assert keys["identity"].public.serialize() == h(v, "identity_public33")


def test_ecdh_secret_both_ways(
    device_init_vector: dict[str, Any], keys: dict[str, KeyPair]
) -> None:
    expected = h(device_init_vector, "ecdh_shared_secret")
    assert keys["master"].exchange(keys["secondary"].public) == expected
    assert keys["secondary"].exchange(keys["master"].public) == expected


def test_hkdf_keys(device_init_vector: dict[str, Any], keys: dict[str, KeyPair]) -> None:
    v = device_init_vector
    assert keys["master"].public.serialize() == h(v, "hkdf_salt")
    assert v["hkdf_info"].encode() == envelope.DEVICE_INIT_INFO
    derived = envelope.derive_envelope_keys(h(v, "ecdh_shared_secret"), keys["master"].public)
    assert derived.aes_key == h(v, "aes_key")
    assert derived.mac_key == h(v, "mac_key")


def test_plaintext_encoding(device_init_vector: dict[str, Any], keys: dict[str, KeyPair]) -> None:
    plaintext = h(device_init_vector, "identity_key_message_plaintext")
    payload = decode_identity_key(plaintext)
    assert payload.identity_key_pair.public == keys["identity"].public
    assert payload.identity_key_pair.private == keys["identity"].private
    assert encode_identity_key(payload) == plaintext


def test_identity_key_message_with_fixed_iv(
    device_init_vector: dict[str, Any], keys: dict[str, KeyPair]
) -> None:
    v = device_init_vector
    sealed = envelope.seal_with(
        h(v, "identity_key_message_plaintext"), keys["secondary"].public, keys["master"], h(v, "iv")
    )
    assert sealed.identity_key_message == h(v, "identity_key_message")
    assert sealed.master_ephemeral == keys["master"].public
    whole = encode_device_init(
        DeviceInitMessage(sealed.master_ephemeral, sealed.identity_key_message)
    )
    assert whole == h(v, "device_init")


def test_seal_with_rng_reproduces_vector(
    device_init_vector: dict[str, Any], keys: dict[str, KeyPair]
) -> None:
    """The injected rng is asked for the ephemeral key first, then the IV."""
    v = device_init_vector
    stream = [h(v, "master_ephemeral_private"), h(v, "iv")]
    sealed = envelope.seal(
        h(v, "identity_key_message_plaintext"),
        keys["secondary"].public,
        rng=lambda n: stream.pop(0),
    )
    assert sealed.identity_key_message == h(v, "identity_key_message")


def test_open_vector_device_init(
    device_init_vector: dict[str, Any], keys: dict[str, KeyPair]
) -> None:
    opened = open_device_init(h(device_init_vector, "device_init"), keys["secondary"])
    assert opened.payload.phone_number == "+15550001111"
    assert opened.payload.server == "https://relay.example.org"
    assert opened.payload.provisioning_code == 123456789
    assert opened.payload.master_supports_sms is False
    assert opened.payload.identity_key_pair.public == keys["identity"].public


CONFIRMATION_KNOWN_ANSWER = "252 517"
"""Computed once from the vector's secret and keys with ``hmac``/``hashlib`` alone (below), not
with the project's code: HKDF-SHA256(ikm=secret, salt=E_m.pub33 || E_s.pub33,
info="WhisperDeviceInitVerify", L=4) = 472ed8e5, as a big-endian integer mod 10^6 (§5)."""


def _confirmation_by_hand(secret: bytes, salt: bytes) -> str:
    prk = hmac.new(salt, secret, hashlib.sha256).digest()  # HKDF-Extract
    okm = hmac.new(prk, b"WhisperDeviceInitVerify" + b"\x01", hashlib.sha256).digest()[:4]
    digits = f"{int.from_bytes(okm, 'big') % 10**6:06d}"
    return f"{digits[:3]} {digits[3:]}"


def test_confirmation_code_known_answer(
    device_init_vector: dict[str, Any], keys: dict[str, KeyPair]
) -> None:
    secret = h(device_init_vector, "ecdh_shared_secret")
    salt = h(device_init_vector, "master_ephemeral_public33") + h(
        device_init_vector, "secondary_ephemeral_public33"
    )
    assert _confirmation_by_hand(secret, salt) == CONFIRMATION_KNOWN_ANSWER
    code = envelope.confirmation_code(secret, keys["master"].public, keys["secondary"].public)
    assert code == CONFIRMATION_KNOWN_ANSWER
    # Both ends derive it: the secondary from its own key and the DeviceInit.
    opened = open_device_init(h(device_init_vector, "device_init"), keys["secondary"])
    assert opened.confirmation == CONFIRMATION_KNOWN_ANSWER


def test_link_string(device_init_vector: dict[str, Any], keys: dict[str, KeyPair]) -> None:
    link = parse_link(device_init_vector["qr_link"])
    assert link.channel_uuid == "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"
    assert link.channel_server == "https://relay.example.org"
    assert link.public_key == PublicKey.from_bytes(
        h(device_init_vector, "secondary_ephemeral_public33")
    )
    assert build_link(link) == device_init_vector["qr_link"]
