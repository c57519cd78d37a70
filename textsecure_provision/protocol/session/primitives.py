"""The session layer's key schedule: libaxolotl v3's parameters for the recipes in ``crypto`` (§7).

* the root KDF chain is HKDF-SHA256 with the root key as salt and the DH output as input key
  material, info ``"WhisperRatchet"``, 64 bytes: new root key || chain key;
* the message KDF chain is "one HMAC-SHA256 per constant byte": with the constant ``0x02 0x01``
  it yields ``HMAC(ck, 0x02)`` (the next chain key) followed by ``HMAC(ck, 0x01)`` (the message
  key seed), as libaxolotl's ``ChainKey`` does;
* messages are AES-256-CBC with PKCS7, authenticated by a truncated HMAC-SHA256 (``wire``).
"""

from __future__ import annotations

from typing import Final

from textsecure_provision.crypto.symmetric import (
    AES_BLOCK_LEN,
    HASH_LEN,
    PaddingError,
    aes_cbc_encrypt,
    hkdf_chain,
    hkdf_sha256,
    hmac_chain,
    hmac_sha256,
)
from textsecure_provision.crypto.symmetric import aes_cbc_decrypt as _aes_cbc_decrypt
from textsecure_provision.errors import SessionError

__all__ = [
    "AES_BLOCK_LEN",
    "CHAIN_CONSTANT",
    "HASH_LEN",
    "KEY_LEN",
    "MESSAGE_KEYS_INFO",
    "ROOT_INFO",
    "ZERO_SALT",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "chain_kdf",
    "hkdf_sha256",
    "hmac_sha256",
    "root_kdf",
]

KEY_LEN: Final = 32
ZERO_SALT: Final = b"\x00" * HASH_LEN
"""libaxolotl's ``HKDF.deriveSecrets(ikm, info, n)`` uses a salt of 32 zero bytes."""

ROOT_INFO: Final = b"WhisperRatchet"
MESSAGE_KEYS_INFO: Final = b"WhisperMessageKeys"
CHAIN_CONSTANT: Final = b"\x02\x01"
"""Fed to the message chain KDF: next chain key = HMAC(ck, 0x02), seed = HMAC(ck, 0x01)."""


def root_kdf(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """One root-chain step: ``(new root key, new chain key)``."""
    out = hkdf_chain(root_key, dh_output, ROOT_INFO, 2 * KEY_LEN)
    return out[:KEY_LEN], out[KEY_LEN:]


def chain_kdf(chain_key: bytes) -> tuple[bytes, bytes]:
    """One message-chain step: ``(next chain key, message key seed)``."""
    out = hmac_chain(chain_key, CHAIN_CONSTANT)
    return out[:HASH_LEN], out[HASH_LEN:]


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """AES-256-CBC decryption; only called after the MAC has verified."""
    if not ciphertext or len(ciphertext) % AES_BLOCK_LEN:
        raise SessionError("the message's ciphertext is not a whole number of AES blocks")
    try:
        return _aes_cbc_decrypt(key, iv, ciphertext)
    except PaddingError as exc:
        raise SessionError("the message could not be decrypted") from exc
