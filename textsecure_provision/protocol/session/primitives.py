"""The session layer's cryptographic recipes, taken from the ``doubleratchet`` package (§7).

libaxolotl v3 uses exactly the building blocks that ``doubleratchet.recommended`` ships:

* the root KDF chain is HKDF-SHA256 with the root key as salt and the DH output as input key
  material (``kdf_hkdf.KDF``, info ``"WhisperRatchet"``, 64 bytes: new root key || chain key);
* the message KDF chain is "one HMAC-SHA256 per constant byte" (``kdf_separate_hmacs.KDF``):
  with the constant ``0x02 0x01`` it yields ``HMAC(ck, 0x02)`` (the next chain key) followed by
  ``HMAC(ck, 0x01)`` (the message key seed), as libaxolotl's ``ChainKey`` does;
* HKDF, HMAC and AES-256-CBC with PKCS7 come from its ``CryptoProviderImpl``, which keeps
  ``cryptography.hazmat`` out of ``protocol/``.

Those APIs are ``async`` (so that other crypto backends can be plugged in), but none of them
ever suspends. ``_run`` drives such a coroutine to completion synchronously, because the core is
sans-I/O and has no event loop (STYLE: "no I/O in the core").
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Final, TypeVar, cast

from doubleratchet.aead import DecryptionFailedException
from doubleratchet.recommended import HashFunction, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.recommended.crypto_provider_impl import CryptoProviderImpl

from textsecure_provision.errors import SessionError

_T = TypeVar("_T")

KEY_LEN: Final = 32
HASH_LEN: Final = 32
AES_BLOCK_LEN: Final = 16
ZERO_SALT: Final = b"\x00" * HASH_LEN
"""libaxolotl's ``HKDF.deriveSecrets(ikm, info, n)`` uses a salt of 32 zero bytes."""

ROOT_INFO: Final = b"WhisperRatchet"
MESSAGE_KEYS_INFO: Final = b"WhisperMessageKeys"
CHAIN_CONSTANT: Final = b"\x02\x01"
"""Fed to the message chain KDF: next chain key = HMAC(ck, 0x02), seed = HMAC(ck, 0x01)."""


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends (doubleratchet's async recipes) synchronously."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(_T, done.value)
    coro.close()
    raise RuntimeError("a doubleratchet primitive suspended; the sans-I/O core cannot wait")


class RootKdf(kdf_hkdf.KDF):
    """HKDF-SHA256(salt=root key, ikm=DH output, info="WhisperRatchet") (§7)."""

    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ROOT_INFO


class ChainKdf(kdf_separate_hmacs.KDF):
    """One HMAC-SHA256 of the chain key per byte of the constant (§7)."""

    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256 (the only HKDF libaxolotl v3 uses)."""
    return _run(
        CryptoProviderImpl.hkdf_derive(
            hash_function=HashFunction.SHA_256,
            length=length,
            salt=salt,
            info=info,
            key_material=ikm,
        )
    )


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return _run(CryptoProviderImpl.hmac_calculate(key, HashFunction.SHA_256, data))


def root_kdf(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """One root-chain step: ``(new root key, new chain key)``."""
    out = _run(RootKdf.derive(root_key, dh_output, 2 * KEY_LEN))
    return out[:KEY_LEN], out[KEY_LEN:]


def chain_kdf(chain_key: bytes) -> tuple[bytes, bytes]:
    """One message-chain step: ``(next chain key, message key seed)``."""
    out = _run(ChainKdf.derive(chain_key, CHAIN_CONSTANT, 2 * HASH_LEN))
    return out[:HASH_LEN], out[HASH_LEN:]


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-256-CBC with PKCS7 padding (no padding beyond that, §7)."""
    return _run(CryptoProviderImpl.aes_cbc_encrypt(key, iv, plaintext))


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of ``aes_cbc_encrypt``; only called after the MAC has verified."""
    if not ciphertext or len(ciphertext) % AES_BLOCK_LEN:
        raise SessionError("the message's ciphertext is not a whole number of AES blocks")
    try:
        return _run(CryptoProviderImpl.aes_cbc_decrypt(key, iv, ciphertext))
    except DecryptionFailedException as exc:
        raise SessionError("the message could not be decrypted") from exc
