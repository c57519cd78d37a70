"""Signed and one-time prekeys, and the ``PUT /v1/keys`` body (§4, §7).

The signed prekey is signed by the identity key over its 33-byte serialized
public key (XEdDSA, §7). Key ids stay below 2^24 as libsignal's do
(``Medium.MAX_VALUE``); the last-resort key takes the top id.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.bodies import KeysUpload

MAX_KEY_ID = 0xFFFFFF
LAST_RESORT_KEY_ID = MAX_KEY_ID
DEFAULT_PREKEY_COUNT = 100


@dataclass(frozen=True)
class PreKey:
    key_id: int
    key_pair: KeyPair = field(repr=False)


@dataclass(frozen=True)
class SignedPreKey:
    key_id: int
    key_pair: KeyPair = field(repr=False)
    signature: bytes


def generate_signed_prekey(
    identity: KeyPair, key_id: int, rng: Rng = secrets.token_bytes
) -> SignedPreKey:
    return sign_prekey(identity, key_id, KeyPair.generate(rng), rng)


def sign_prekey(
    identity: KeyPair, key_id: int, pair: KeyPair, rng: Rng = secrets.token_bytes
) -> SignedPreKey:
    """``pair`` as the signed prekey ``key_id``: signed by the identity key over its
    serialized public key (§7)."""
    return SignedPreKey(key_id, pair, signing.sign(identity.private, pair.public.serialize(), rng))


def verify_signed_prekey(identity: PublicKey, public: PublicKey, signature: bytes) -> bool:
    return signing.verify(identity, public.serialize(), signature)


def generate_prekeys(
    start_id: int, count: int = DEFAULT_PREKEY_COUNT, rng: Rng = secrets.token_bytes
) -> list[PreKey]:
    """``count`` one-time prekeys with ids ``start_id, start_id+1, …`` wrapping within 1..2^24-2."""
    span = MAX_KEY_ID - 1
    return [PreKey(((start_id - 1 + i) % span) + 1, KeyPair.generate(rng)) for i in range(count)]


def build_keys_upload(
    identity_public: PublicKey,
    signed_prekey: SignedPreKey,
    prekeys: list[PreKey],
    last_resort: PreKey | None = None,
) -> KeysUpload:
    """The body of ``PUT /v1/keys`` (§4)."""
    return KeysUpload(
        identity_key=identity_public.serialize(),
        signed_pre_key=bodies.SignedPreKey(
            key_id=signed_prekey.key_id,
            public_key=signed_prekey.key_pair.public.serialize(),
            signature=signed_prekey.signature,
        ),
        pre_keys=[bodies.PreKey(k.key_id, k.key_pair.public.serialize()) for k in prekeys],
        last_resort_key=None
        if last_resort is None
        else bodies.PreKey(last_resort.key_id, last_resort.key_pair.public.serialize()),
    )
