"""crypto/symmetric.py against the standard library and RFC 5869 (the session vectors pin the rest)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from textsecure_provision.crypto.symmetric import (
    PaddingError,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    hkdf_chain,
    hkdf_sha256,
    hmac_chain,
)

KEY = bytes(range(32))
IV = bytes(range(16))


def _hkdf_by_hand(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


def test_hkdf_chain_is_hkdf_salted_with_the_chain_key() -> None:
    assert hkdf_chain(KEY, b"dh", b"WhisperRatchet", 64) == _hkdf_by_hand(
        b"dh", KEY, b"WhisperRatchet", 64
    )
    assert hkdf_sha256(b"ikm", b"salt", b"info", 80) == _hkdf_by_hand(b"ikm", b"salt", b"info", 80)


def test_hmac_chain_is_one_hmac_per_constant_byte() -> None:
    out = hmac_chain(KEY, b"\x02\x01")
    assert out == (
        hmac.new(KEY, b"\x02", hashlib.sha256).digest()
        + hmac.new(KEY, b"\x01", hashlib.sha256).digest()
    )


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_aes_cbc_round_trip_pads_to_whole_blocks(size: int) -> None:
    plaintext = bytes(size)
    ciphertext = aes_cbc_encrypt(KEY, IV, plaintext)
    assert len(ciphertext) == (size // 16 + 1) * 16
    assert aes_cbc_decrypt(KEY, IV, ciphertext) == plaintext


@pytest.mark.parametrize("ciphertext", [b"", b"x" * 15, b"x" * 33])
def test_aes_cbc_refuses_partial_blocks(ciphertext: bytes) -> None:
    with pytest.raises(PaddingError, match="whole number of AES blocks"):
        aes_cbc_decrypt(KEY, IV, ciphertext)


def test_aes_cbc_refuses_bad_padding() -> None:
    ciphertext = aes_cbc_encrypt(KEY, IV, b"sixteen bytes!!!")
    with pytest.raises(PaddingError, match="not PKCS7-padded"):
        aes_cbc_decrypt(KEY, IV, ciphertext[:16])  # the first block alone ends in text, not padding
