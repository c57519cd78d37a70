"""SPAKE2 and the keys of a short-code exchange (docs/protocol.md, "Links by short code").

Recipes over the ``spake2`` package (magic-wormhole's, MIT) and ``cryptography``:

* ``Pake``: one side of SPAKE2 over Ed25519. The master is side A, the new
  device side B; both ids carry the nameplate and the server's canonical URL,
  so a transcript from one nameplate or server is worth nothing on another.
* ``derive_code_keys``: HKDF-SHA256 over the SPAKE2 key, one key per purpose and
  direction (two confirmations, two sealing keys); no key serves twice.
* ``seal`` / ``open_sealed``: ChaCha20-Poly1305. Each sealing key seals exactly
  one message, so the nonce is a constant (a key never meets a nonce twice).

Every failure to finish SPAKE2 or to open a box is one ``ShortCodeMessageError``.
Randomness comes in through ``rng``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from textsecure_provision.crypto.keys import Rng
from textsecure_provision.errors import ShortCodeMessageError

Role = Literal["master", "secondary"]

PAKE_MESSAGE_BYTES = 33  # spake2: one side byte ("A"/"B") + a 32-byte Ed25519 element
KEY_BYTES = 32
TAG_BYTES = 16
NONCE = bytes(12)  # each sealing key seals one message only (see the module docstring)
KDF_INFO = b"textsecure-provision short code v1 "
ID_PREFIX = b"textsecure-provision short code v1"


@dataclass(frozen=True)
class CodeKeys:
    """What the SPAKE2 key turns into; nothing here is ever sent as is but the confirmations."""

    master_confirm: bytes = field(repr=False)
    secondary_confirm: bytes = field(repr=False)
    to_master: bytes = field(repr=False)  # seals the secondary's channel and key
    to_secondary: bytes = field(repr=False)  # reserved: the master sends nothing sealed (v1)


def side_ids(server: str, nameplate: int) -> tuple[bytes, bytes]:
    """SPAKE2's idA (master) and idB (secondary): role, server and nameplate, NUL-separated."""
    context = b"\x00".join((ID_PREFIX, server.encode("utf-8"), str(nameplate).encode("ascii")))
    return context + b"\x00master", context + b"\x00secondary"


class Pake:
    """One side of SPAKE2. ``outbound`` is this side's message; ``finish`` takes the other's."""

    def __init__(self, role: Role, password: bytes, ids: tuple[bytes, bytes], rng: Rng) -> None:
        id_master, id_secondary = ids
        side = SPAKE2_A if role == "master" else SPAKE2_B
        self._state = side(password, idA=id_master, idB=id_secondary, entropy_f=rng)
        self.outbound: bytes = self._state.start()

    def finish(self, inbound: bytes) -> CodeKeys:
        # spake2 accepts trailing bytes and raises several exception types on garbage:
        # check the length here and collapse the rest into one error.
        if len(inbound) != PAKE_MESSAGE_BYTES:
            raise ShortCodeMessageError("the other side's SPAKE2 message has the wrong length")
        try:
            key: bytes = self._state.finish(inbound)
        except Exception as exc:  # SPAKEError, ValueError: a point off the group, a wrong side
            raise ShortCodeMessageError("the other side's SPAKE2 message is not valid") from exc
        return derive_code_keys(key)


def _hkdf(key: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=KDF_INFO + purpose).derive(key)


def derive_code_keys(key: bytes) -> CodeKeys:
    if len(key) != KEY_BYTES:
        raise ValueError("the SPAKE2 key is 32 bytes")
    return CodeKeys(
        master_confirm=_hkdf(key, b"confirm master"),
        secondary_confirm=_hkdf(key, b"confirm secondary"),
        to_master=_hkdf(key, b"seal to master"),
        to_secondary=_hkdf(key, b"seal to secondary"),
    )


def confirmation_matches(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of a key confirmation."""
    return hmac.compare_digest(expected, received)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(NONCE, plaintext, aad)


def open_sealed(key: bytes, box: bytes, aad: bytes) -> bytes:
    if len(box) < TAG_BYTES:
        raise ShortCodeMessageError("the sealed short-code message is too short")
    try:
        return ChaCha20Poly1305(key).decrypt(NONCE, box, aad)
    except InvalidTag:
        raise ShortCodeMessageError("the sealed short-code message failed authentication") from None
