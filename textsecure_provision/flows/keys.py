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
    generate_signed_prekey,
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


def generate_device_keys(
    identity: KeyPair, rng: Rng, count: int = DEFAULT_PREKEY_COUNT
) -> DeviceKeys:
    """A signed prekey, ``count`` one-time prekeys and a last-resort key (§4 PUT /v1/keys)."""
    signed = generate_signed_prekey(identity, _random_key_id(rng), rng)
    prekeys = tuple(generate_prekeys(_random_key_id(rng), count, rng))
    last_resort = PreKey(LAST_RESORT_KEY_ID, KeyPair.generate(rng))
    return DeviceKeys(signed, prekeys, last_resort)
