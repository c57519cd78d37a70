"""A test-only peer: Curve25519 signing exactly as libaxolotl (2014) ``curve_sigs.c`` does it.

``curve25519_sign`` takes the 32-byte private scalar *as given* (no clamping), computes the
Ed25519 public point A = a·B from it, signs with ``crypto_sign_modified`` (nonce =
SHA-512(a || message || random) mod L, s = H(R || A || message)·a + nonce), then stores A's
sign bit in bit 7 of the signature's last byte. Pure Python (RFC 8032 arithmetic): slow, and
only for tests, so that a signature our verifier accepts is one the real peer made.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if x & 1 != sign:
        x = P - x
    return x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
BASE = (_GX, _GY, 1, _GX * _GY % P)


def _add(p1: tuple[int, int, int, int], p2: tuple[int, int, int, int]) -> tuple[int, ...]:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def scalar_mult(scalar: int, point: tuple[int, int, int, int] = BASE) -> tuple[int, ...]:
    result: tuple[int, ...] = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)  # type: ignore[arg-type]
        point = _add(point, point)  # type: ignore[assignment]
        scalar >>= 1
    return result


def encode_point(point: tuple[int, ...]) -> bytes:
    x, y, z, _ = point
    zinv = pow(z, P - 2, P)
    x, y = x * zinv % P, y * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % L


def curve25519_sign(private: bytes, message: bytes, random: bytes) -> bytes:
    """libaxolotl 2014: the signature of ``message`` by the Curve25519 scalar ``private``."""
    assert len(private) == 32 and len(random) == 64
    a = int.from_bytes(private, "little")  # as given: libaxolotl does not clamp here
    ed_public = encode_point(scalar_mult(a))
    nonce = _h(private + message + random)
    r = encode_point(scalar_mult(nonce))
    s = (_h(r + ed_public + message) * a + nonce) % L
    signature = bytearray(r + s.to_bytes(32, "little"))
    signature[63] = (signature[63] & 0x7F) | (ed_public[31] & 0x80)
    return bytes(signature)
