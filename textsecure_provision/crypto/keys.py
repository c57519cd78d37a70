"""Curve25519 keys in the TextSecure serialization (§2).

A public key travels as 33 bytes, ``0x05 || u``; a private key is the 32-byte
X25519 scalar. Parsing is strict: any other length or type byte is refused
with ``KeyFormatError``, naming what was wrong (but never the key itself).

Every private key is clamped (RFC 7748) the moment a ``PrivateKey`` exists,
whether generated, loaded or received: libaxolotl (2014) derives the Ed25519
signing key from the scalar *as given*, so an unclamped identity key makes its
signatures invalid. X25519 clamps anyway, so the public key never changes.

Randomness comes in as ``rng`` (a ``Callable[[int], bytes]``) so that the
known-answer vectors reproduce byte for byte.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from textsecure_provision.errors import KeyFormatError

Rng = Callable[[int], bytes]

DJB_TYPE = 0x05
PUBLIC_KEY_LEN = 33
RAW_KEY_LEN = 32
PRIVATE_KEY_LEN = 32


def _require_bytes(name: str, value: object) -> bytes:
    if type(value) is bytes:  # the common case, without isinstance's slower path
        return value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


@dataclass(frozen=True)
class PublicKey:
    """A Curve25519 public key; ``raw`` is the 32-byte u-coordinate."""

    raw: bytes
    _native: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        raw = _require_bytes("raw", self.raw)
        if len(raw) != RAW_KEY_LEN:
            raise KeyFormatError(f"a raw public key is {RAW_KEY_LEN} bytes, not {len(raw)}")

    def _key(self) -> X25519PublicKey:
        if self._native is None:
            object.__setattr__(self, "_native", X25519PublicKey.from_public_bytes(self.raw))
        key: X25519PublicKey = self._native
        return key

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "public key") -> PublicKey:
        """Parse the 33-byte serialized form ``0x05 || u``."""
        data = _require_bytes(name, data)
        if len(data) != PUBLIC_KEY_LEN:
            raise KeyFormatError(f"{name} must be {PUBLIC_KEY_LEN} bytes, got {len(data)}")
        if data[0] != DJB_TYPE:
            raise KeyFormatError(f"{name} has type byte 0x{data[0]:02x}, expected 0x05")
        return cls(data[1:])

    def serialize(self) -> bytes:
        return bytes((DJB_TYPE,)) + self.raw

    def require_usable(self, *, name: str = "public key") -> PublicKey:
        """Refuse a low-order point (X25519 with it is all-zero whatever our key): cheap to
        ask before anything is sent, rather than finding out while sealing."""
        probe = _probe_key()
        try:
            probe.exchange(self._key())
        except ValueError:
            raise KeyFormatError(f"{name} is not usable (low order)") from None
        return self

    def __repr__(self) -> str:
        return f"PublicKey({self.serialize().hex()})"


_PROBE: list[X25519PrivateKey] = []


def _probe_key() -> X25519PrivateKey:
    # Any clamped scalar maps every low-order point to zero; one random key serves all checks.
    if not _PROBE:
        _PROBE.append(X25519PrivateKey.generate())
    return _PROBE[0]


def clamp(scalar: bytes) -> bytes:
    """RFC 7748 clamping: ``k[0] &= 248; k[31] &= 127; k[31] |= 64``."""
    first, last = scalar[0], scalar[31]
    clamped_first, clamped_last = first & 248, (last & 127) | 64
    if first == clamped_first and last == clamped_last:
        return scalar
    return bytes((clamped_first,)) + scalar[1:31] + bytes((clamped_last,))


def is_clamped(scalar: bytes) -> bool:
    return clamp(scalar) == scalar


@dataclass(frozen=True)
class PrivateKey:
    """A Curve25519 private key: the 32-byte scalar, always clamped (see module docstring)."""

    raw: bytes = field(repr=False)
    # The native key object, built once: building it costs a scalar multiplication.
    _native: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        raw = _require_bytes("raw", self.raw)
        if len(raw) != PRIVATE_KEY_LEN:
            raise KeyFormatError(f"a private key is {PRIVATE_KEY_LEN} bytes, not {len(raw)}")
        object.__setattr__(self, "raw", clamp(raw))

    def _key(self) -> X25519PrivateKey:
        if self._native is None:
            object.__setattr__(self, "_native", X25519PrivateKey.from_private_bytes(self.raw))
        key: X25519PrivateKey = self._native
        return key

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "private key") -> PrivateKey:
        data = _require_bytes(name, data)
        if len(data) != PRIVATE_KEY_LEN:
            raise KeyFormatError(f"{name} must be {PRIVATE_KEY_LEN} bytes, got {len(data)}")
        return cls(data)

    def serialize(self) -> bytes:
        return self.raw

    def public_key(self) -> PublicKey:
        pub = self._key().public_key()
        # public_bytes_raw: the serialization module (its SSH and PEM parts, bcrypt) is not
        # imported for it; ~8 ms of every CLI process (B2).
        return PublicKey(pub.public_bytes_raw())

    def exchange(self, peer: PublicKey) -> bytes:
        """X25519. A low-order peer key (all-zero secret) raises ``KeyFormatError``."""
        try:
            return self._key().exchange(peer._key())
        except ValueError as exc:  # cryptography refuses an all-zero shared secret
            raise KeyFormatError("the peer's public key is not usable (low order)") from exc


@dataclass(frozen=True)
class KeyPair:
    """A Curve25519 key pair. ``IdentityKeyPair`` is the same type (§2)."""

    public: PublicKey
    private: PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, rng: Rng = secrets.token_bytes) -> KeyPair:
        return cls.from_private(rng(PRIVATE_KEY_LEN))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        priv = PrivateKey.from_bytes(private)
        return cls(priv.public_key(), priv)

    def exchange(self, peer: PublicKey) -> bytes:
        return self.private.exchange(peer)


IdentityKeyPair = KeyPair
