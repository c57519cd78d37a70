"""Fresh credentials and keys for a new device (register and link share them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from textsecure_provision.crypto.keys import KeyPair, Rng
from textsecure_provision.protocol.bodies import KeysUpload
from textsecure_provision.protocol.encoding import b64encode
from textsecure_provision.protocol.prekeys import (
    DEFAULT_PREKEY_COUNT,
    LAST_RESORT_KEY_ID,
    MAX_KEY_ID,
    PreKey,
    SignedPreKey,
    build_keys_upload,
    generate_prekeys,
    sign_prekey,
)

PASSWORD_BYTES = 18  # §2: at least 16 random bytes; 18 give 24 base64 characters, no padding
MAX_REGISTRATION_ID = 16380  # 14 bits, as libsignal's KeyHelper


def new_password(rng: Rng) -> str:
    return b64encode(rng(PASSWORD_BYTES))


def new_registration_id(rng: Rng) -> int:
    return int.from_bytes(rng(4), "big") % MAX_REGISTRATION_ID + 1


def _random_key_id(rng: Rng) -> int:
    return int.from_bytes(rng(4), "big") % (MAX_KEY_ID - 1) + 1


@dataclass(frozen=True)
class DeviceKeys:
    signed_prekey: SignedPreKey = field(repr=False)
    prekeys: tuple[PreKey, ...] = field(repr=False)
    last_resort_key: PreKey = field(repr=False)

    def upload_body(self, identity: KeyPair) -> KeysUpload:
        return build_keys_upload(
            identity.public, self.signed_prekey, list(self.prekeys), self.last_resort_key
        )


@dataclass(frozen=True)
class UnsignedKeys:
    """A new device's key pairs, made before it knows the account's identity key.

    Only the signed prekey's signature needs that key, so a secondary makes these while it
    waits for its DeviceInit (~5 ms of 102 key pairs off the link's timed path, B2) and
    signs once the DeviceInit is open. They live in memory only, like every key of a link
    that is not stored yet.
    """

    signed_key_id: int
    signed_pair: KeyPair = field(repr=False)
    prekeys: tuple[PreKey, ...] = field(repr=False)
    last_resort_key: PreKey = field(repr=False)

    def sign(self, identity: KeyPair, rng: Rng) -> DeviceKeys:
        signed = sign_prekey(identity, self.signed_key_id, self.signed_pair, rng)
        return DeviceKeys(signed, self.prekeys, self.last_resort_key)


def prepare_device_keys(rng: Rng, count: int = DEFAULT_PREKEY_COUNT) -> UnsignedKeys:
    """The signed prekey's pair, ``count`` one-time prekeys and a last-resort key."""
    signed_key_id = _random_key_id(rng)
    signed_pair = KeyPair.generate(rng)
    prekeys = tuple(generate_prekeys(_random_key_id(rng), count, rng))
    last_resort = PreKey(LAST_RESORT_KEY_ID, KeyPair.generate(rng))
    return UnsignedKeys(signed_key_id, signed_pair, prekeys, last_resort)


def generate_device_keys(
    identity: KeyPair, rng: Rng, count: int = DEFAULT_PREKEY_COUNT
) -> DeviceKeys:
    """A signed prekey, ``count`` one-time prekeys and a last-resort key (§4 PUT /v1/keys)."""
    return prepare_device_keys(rng, count).sign(identity, rng)
