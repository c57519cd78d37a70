"""XEdDSA signatures by Curve25519 identity keys (§7), over the ``xeddsa`` package.

Signing follows XEdDSA: the Edwards form of the key has sign bit 0, so bit 7 of
the signature's last byte is always 0. libaxolotl (2014) instead kept the
Edwards sign bit in that bit 7; verification accepts both forms: clear the bit
and convert the Curve25519 key to Edwards form with that sign.
"""

from __future__ import annotations

import secrets

import xeddsa

from textsecure_provision.crypto.keys import PrivateKey, PublicKey, Rng

SIGNATURE_LEN = 64
NONCE_LEN = 64
_SIGN_BIT = 0x80


def sign(private: PrivateKey, message: bytes, rng: Rng = secrets.token_bytes) -> bytes:
    """XEdDSA-sign ``message``; the 64 random nonce bytes come from ``rng``."""
    # The package signs with the key as given; XEdDSA wants the Edwards sign bit 0.
    edwards_priv = xeddsa.priv_force_sign(private.raw, False)
    return bytes(xeddsa.ed25519_priv_sign(edwards_priv, bytes(message), rng(NONCE_LEN)))


def verify(public: PublicKey, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid XEdDSA or libaxolotl-2014 signature of ``message``."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_LEN:
        return False
    sign_bit = bool(signature[63] & _SIGN_BIT)
    sig = bytes(signature[:63]) + bytes((signature[63] & ~_SIGN_BIT,))
    try:
        ed_pub = xeddsa.curve25519_pub_to_ed25519_pub(public.raw, sign_bit)
        return bool(xeddsa.ed25519_verify(sig, ed_pub, bytes(message)))
    except xeddsa.XEdDSAException:
        return False
