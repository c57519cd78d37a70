"""Device credentials (§2, §4): Basic auth parsing, salted password hashes, verification.

Hash choice: PBKDF2-HMAC-SHA256 (hashlib; OpenSSL releases the GIL), a 16-byte
random salt per password, ``PASSWORD_HASH_ITERATIONS`` rounds, stored as
``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`` so the cost can be raised
later without breaking stored hashes. Device passwords are at least 16 random
bytes (§2, enforced on registration), so stretching adds little against
guessing; the hash is there so a stolen database holds no usable password, and
the modest cost (~5 ms) keeps registration cheap under load.

Throughput: a device sends many requests with one password (the benchmarked
rendezvous PUTs), so a successful verification is cached in memory under
SHA-256(stored hash || password), bounded LRU. The stored hash is part of the
key, so a changed password or a re-linked device misses the cache; failures
are never cached. A hash made here for a new password (registration) is cached
as verified at once: the same password against the same stored hash would verify,
and the new device's next request (``PUT /v1/keys`` right after ``PUT
/v1/devices/{code}``, on the link's timed path, B2) then needs no second PBKDF2
run. A wrong password costs a PBKDF2 run in a worker thread and a
token of the ``auth_failure_address`` limit, which is checked before hashing; an
unknown number or device costs the same run, against a dummy hash, so timing
does not tell which accounts and devices exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from textsecure_provision.errors import AuthError, InvalidInputError
from textsecure_provision.protocol.encoding import PhoneNumber, b64decode_liberal

PASSWORD_HASH_ITERATIONS = 10_000
PASSWORD_SALT_BYTES = 16
MIN_PASSWORD_BYTES = 16  # §2: at least 16 random bytes, base64
MAX_PASSWORD_CHARS = 256
MAX_DEVICE_ID = 2**31 - 1
VERIFIED_CACHE_SIZE = 10_000
_ALGORITHM = "pbkdf2_sha256"
_E164 = re.compile(r"\+[0-9]{8,15}")
_DEVICE_ID = re.compile(r"[1-9][0-9]{0,9}")
_MAX_HEADER_CHARS = 1024


@dataclass(frozen=True)
class BasicCredentials:
    """``number[.deviceId]:password`` from an Authorization header (§4)."""

    number: PhoneNumber
    device_id: int | None  # None: the username had no ".N" (device 1, or a device not yet linked)
    password: str = field(repr=False)


def parse_basic_auth(header: str | None) -> BasicCredentials:
    """Parse ``Basic base64(user:password)``; anything malformed is ``AuthError`` (401)."""
    if not header:
        raise AuthError("this request needs Basic credentials")
    if len(header) > _MAX_HEADER_CHARS:
        raise AuthError("the Authorization header is too long")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        raise AuthError("the Authorization header must be Basic credentials")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthError("the Basic credentials are not valid base64 of UTF-8 text") from None
    username, sep, password = decoded.partition(":")
    if not sep or not password:
        raise AuthError("the Basic credentials need a username and a password")
    number, dot, device = username.partition(".")
    if not _E164.fullmatch(number):
        raise AuthError("the username must be an E.164 number, optionally with .deviceId")
    device_id: int | None = None
    if dot:
        if not _DEVICE_ID.fullmatch(device) or int(device) > MAX_DEVICE_ID:
            raise AuthError("the device id in the username is not a positive integer")
        device_id = int(device)
    if len(password) > MAX_PASSWORD_CHARS:
        raise AuthError("the password is too long")
    return BasicCredentials(PhoneNumber(number), device_id, password)


def check_new_password(password: str) -> None:
    """A new device password must be at least 16 bytes, base64 (§2): 400 otherwise."""
    try:
        raw = b64decode_liberal(password, name="the password")
    except InvalidInputError:
        raise InvalidInputError("the device password must be base64 (§2)") from None
    if len(raw) < MIN_PASSWORD_BYTES:
        raise InvalidInputError(
            f"the device password must hold at least {MIN_PASSWORD_BYTES} random bytes (§2)"
        )


def hash_password(password: str, *, iterations: int = PASSWORD_HASH_ITERATIONS) -> str:
    """A fresh salted hash (blocking: call it in a worker thread)."""
    salt = os.urandom(PASSWORD_SALT_BYTES)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join(
        (
            _ALGORITHM,
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(dk).decode(),
        )
    )


def verify_password_hash(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash (blocking)."""
    try:
        algorithm, iterations, salt_b64, dk_b64 = stored.split("$")
        if algorithm != _ALGORITHM:
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(dk_b64, validate=True)
        rounds = int(iterations)
    except (ValueError, binascii.Error):
        return False
    dk = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, rounds)
    return hmac.compare_digest(dk, expected)


class PasswordVerifier:
    """Verifies passwords, remembering recent successes (see the module docstring)."""

    def __init__(self, cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        # Checked against when the number or device does not exist, so that a wrong password
        # and an unknown account cost the same (timing must not tell which accounts exist).
        self._dummy_hash = hash_password(base64.b64encode(os.urandom(18)).decode())

    @staticmethod
    def _key(password: str, stored: str) -> bytes:
        return hashlib.sha256(
            stored.encode("ascii", "replace") + b"\x00" + password.encode("utf-8")
        ).digest()

    async def hash(self, password: str) -> str:
        stored = await asyncio.to_thread(hash_password, password)
        self._remember(self._key(password, stored))  # it is this password's hash (module doc)
        return stored

    def remembers(self, password: str, stored: str) -> bool:
        """True if this password was verified recently (no hashing needed)."""
        return self._key(password, stored) in self._cache

    async def verify_nothing(self, password: str) -> None:
        """The work of a failed ``verify``, for a device that does not exist."""
        await asyncio.to_thread(verify_password_hash, password, self._dummy_hash)

    async def verify(self, password: str, stored: str) -> bool:
        key = self._key(password, stored)
        if key in self._cache:
            self._cache.move_to_end(key)
            return True
        ok = await asyncio.to_thread(verify_password_hash, password, stored)
        if ok:
            self._remember(key)
        return ok

    def _remember(self, key: bytes) -> None:
        self._cache[key] = None
        self._cache.move_to_end(key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
