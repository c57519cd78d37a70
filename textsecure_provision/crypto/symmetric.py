"""The symmetric recipes both envelopes and sessions are built from, over ``cryptography``.

HKDF-SHA256 (RFC 5869), HMAC-SHA256, AES-256-CBC with PKCS7 padding, and the two KDF chains of
the Double Ratchet's recommended algorithms (signal.org/docs/specifications/doubleratchet §5.2):

* ``hkdf_chain``: HKDF with the chain key as salt and the new input as key material (the root
  chain);
* ``hmac_chain``: one HMAC of the chain key per constant byte, concatenated (the message chain).

Plain synchronous functions: the core has no event loop (STYLE: "no I/O in the core").
"""

from __future__ import annotations

import hmac
from hashlib import sha256
from typing import Final

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HASH_LEN: Final = 32
AES_BLOCK_LEN: Final = 16


class PaddingError(ValueError):
    """The decrypted bytes do not end in valid PKCS7 padding (or are not whole blocks).

    Callers turn it into their own authentication error, so that no caller tells a tamperer
    which check failed.
    """


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract with ``salt``, expand with ``info`` to ``length`` bytes)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, sha256).digest()


def hkdf_chain(chain_key: bytes, data: bytes, info: bytes, length: int) -> bytes:
    """One step of an HKDF chain: HKDF(salt=chain key, ikm=data, info)."""
    return hkdf_sha256(data, chain_key, info, length)


def hmac_chain(chain_key: bytes, constants: bytes) -> bytes:
    """One step of an HMAC chain: ``HMAC(ck, c0) || HMAC(ck, c1) || ...``, one per byte."""
    return b"".join(hmac_sha256(chain_key, constants[i : i + 1]) for i in range(len(constants)))


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC (256-bit key) of the PKCS7-padded plaintext."""
    padder = padding.PKCS7(AES_BLOCK_LEN * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of ``aes_cbc_encrypt``; ``PaddingError`` if the result is not padded right."""
    if not ciphertext or len(ciphertext) % AES_BLOCK_LEN:
        raise PaddingError("the ciphertext is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(AES_BLOCK_LEN * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise PaddingError("the plaintext is not PKCS7-padded") from exc
