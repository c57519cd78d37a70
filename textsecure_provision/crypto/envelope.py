"""The DeviceInit envelope: sealing the identity key for the new device (§5).

Shape, as Fernet's: ``version || iv || AES-256-CBC(PKCS7(pt)) || HMAC-SHA256``
with keys from HKDF over an X25519 secret between two ephemeral keys. The
opener checks version, then length, then the MAC (constant time), then the
padding, and MAC and padding failures raise the *same* ``EnvelopeError`` with
the same message, so a tamperer learns nothing about which check failed.

Randomness (the master's ephemeral key and the IV) comes in through ``rng``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from functools import cached_property

from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.crypto.symmetric import (
    AES_BLOCK_LEN,
    PaddingError,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    hkdf_sha256,
    hmac_sha256,
)
from textsecure_provision.errors import EnvelopeError, KeyFormatError

VERSION = 0x33  # (3 << 4) | 3
IV_LEN = 16
MAC_LEN = 32
BLOCK_LEN = AES_BLOCK_LEN
MIN_MESSAGE_LEN = 1 + IV_LEN + BLOCK_LEN + MAC_LEN  # 65
DEVICE_INIT_INFO = b"WhisperDeviceInit"
VERIFY_INFO = b"WhisperDeviceInitVerify"
CONFIRMATION_MODULUS = 10**6

_TAMPERED = "the DeviceInit failed authentication (bad MAC or padding)"


@dataclass(frozen=True)
class EnvelopeKeys:
    aes_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)


@dataclass(frozen=True)
class _Confirmable:
    """Holds what the confirmation code needs; the code is derived only when shown."""

    _secret: bytes = field(repr=False)
    _master_ephemeral: PublicKey = field(repr=False)
    _secondary: PublicKey = field(repr=False)

    @cached_property
    def confirmation(self) -> str:
        return confirmation_code(self._secret, self._master_ephemeral, self._secondary)


@dataclass(frozen=True)
class SealedEnvelope(_Confirmable):
    master_ephemeral: PublicKey = field(kw_only=True)
    identity_key_message: bytes = field(kw_only=True)


@dataclass(frozen=True)
class OpenedEnvelope(_Confirmable):
    plaintext: bytes = field(repr=False, kw_only=True)


def derive_envelope_keys(secret: bytes, master_ephemeral: PublicKey) -> EnvelopeKeys:
    """HKDF-SHA256(ikm=secret, salt=serialize(E_m.public), info, L=64) → AES key, MAC key."""
    okm = hkdf_sha256(secret, master_ephemeral.serialize(), DEVICE_INIT_INFO, 64)
    return EnvelopeKeys(okm[:32], okm[32:])


def confirmation_code(secret: bytes, master_ephemeral: PublicKey, secondary: PublicKey) -> str:
    """The optional SAS both screens can show: 6 digits as ``"123 456"`` (§5, decided)."""
    okm = hkdf_sha256(secret, master_ephemeral.serialize() + secondary.serialize(), VERIFY_INFO, 4)
    number = int.from_bytes(okm, "big") % CONFIRMATION_MODULUS
    digits = f"{number:06d}"
    return f"{digits[:3]} {digits[3:]}"


def seal(
    plaintext: bytes,
    their_key: PublicKey,
    rng: Rng = secrets.token_bytes,
) -> SealedEnvelope:
    """Master side: encrypt ``plaintext`` (a serialized IdentityKey) to the QR's key."""
    ephemeral = KeyPair.generate(rng)
    iv = rng(IV_LEN)
    return seal_with(plaintext, their_key, ephemeral, iv)


def seal_with(
    plaintext: bytes, their_key: PublicKey, ephemeral: KeyPair, iv: bytes
) -> SealedEnvelope:
    """``seal`` with the ephemeral key and IV given (for known-answer tests)."""
    if len(iv) != IV_LEN:
        raise ValueError(f"iv must be {IV_LEN} bytes")
    secret = ephemeral.exchange(their_key)
    keys = derive_envelope_keys(secret, ephemeral.public)
    body = bytes((VERSION,)) + iv + aes_cbc_encrypt(keys.aes_key, iv, plaintext)
    mac = hmac_sha256(keys.mac_key, body)
    return SealedEnvelope(
        secret,
        ephemeral.public,
        their_key,
        master_ephemeral=ephemeral.public,
        identity_key_message=body + mac,
    )


def open_envelope(
    master_ephemeral: PublicKey, identity_key_message: bytes, our_key: KeyPair
) -> OpenedEnvelope:
    """Secondary side: check version, length, MAC, padding, in that order (§5)."""
    message = bytes(identity_key_message)
    if not message or message[0] != VERSION:
        raise EnvelopeError("the DeviceInit has an unknown version")
    if len(message) < MIN_MESSAGE_LEN or (len(message) - 1 - MAC_LEN) % BLOCK_LEN:
        raise EnvelopeError("the DeviceInit has an impossible length")
    try:
        secret = our_key.exchange(master_ephemeral)
    except KeyFormatError as exc:
        raise EnvelopeError(_TAMPERED) from exc
    keys = derive_envelope_keys(secret, master_ephemeral)
    body, mac = message[:-MAC_LEN], message[-MAC_LEN:]
    if not hmac.compare_digest(hmac_sha256(keys.mac_key, body), mac):
        raise EnvelopeError(_TAMPERED)
    iv, ciphertext = body[1 : 1 + IV_LEN], body[1 + IV_LEN :]
    try:
        plaintext = aes_cbc_decrypt(keys.aes_key, iv, ciphertext)
    except PaddingError as exc:
        raise EnvelopeError(_TAMPERED) from exc
    return OpenedEnvelope(secret, master_ephemeral, our_key.public, plaintext=plaintext)
