"""Links by short code, pure: the code, the mailbox frames and each side's machine.

A code reads ``NAMEPLATE-word-word``: the nameplate is the small number the
relay allocated for the new device's open channel; the words (two by default,
8 bits each) are the SPAKE2 password and never leave the two devices.

The exchange, over the nameplate's mailbox (docs/protocol.md)::

    secondary (B)                               master (A)
    PAKE  pB  ──────────────────────────────▶
              ◀──────────────────────────────  PAKE pA, CONFIRM cA
    check cA (else: wrong code, burn)
    CONFIRM cB, LINK seal(uuid ‖ E_s.pub) ──▶   check cB, open LINK

Key confirmation goes both ways before anything else is used: the new device
seals nothing until the master proved it holds the key, and the master reads
the sealed link only after the new device proved it. The LINK carries exactly
what a QR would (the channel uuid and the ephemeral public key; the server is
the account's own), so the master then seals the DeviceInit as §5 says.

Each machine keeps its states in one table, as ``protocol/provisioning.py``
does; any frame out of order raises and leaves the machine FAILED.
"""

from __future__ import annotations

import enum
import re
import uuid as uuid_module
from dataclasses import dataclass, field

from textsecure_provision.crypto import pake
from textsecure_provision.crypto.keys import PublicKey, Rng
from textsecure_provision.errors import (
    ProvisionError,
    ShortCodeFormatError,
    ShortCodeMessageError,
    WrongShortCodeError,
)
from textsecure_provision.protocol.link import ProvisioningLink, parse_channel_id
from textsecure_provision.protocol.trust import normalize_server_url
from textsecure_provision.protocol.wordlist import BITS_PER_WORD, WORD_INDEX, WORDS

DEFAULT_WORDS = 2  # 16 bits: one guess per nameplate, so 1 in 65 536 (docs/security.md)
MIN_WORDS = 2
MAX_WORDS = 8
MAX_NAMEPLATE = 999_999  # the relay allocates the smallest free number; this bounds parsing
MAX_CODE_CHARS = 200  # 6 digits + 8 words of at most 9 letters, with room for spaces
MAX_FRAME_BYTES = 4096  # the relay's mailbox takes no larger message either

# -- the code --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShortCode:
    nameplate: int
    words: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.nameplate, bool) or not isinstance(self.nameplate, int):
            raise TypeError("nameplate must be an int")
        if not 1 <= self.nameplate <= MAX_NAMEPLATE:
            raise ShortCodeFormatError(f"the code's number must be 1 to {MAX_NAMEPLATE}")
        if not MIN_WORDS <= len(self.words) <= MAX_WORDS:
            raise ShortCodeFormatError(f"a code has {MIN_WORDS} to {MAX_WORDS} words")
        for i, word in enumerate(self.words, 1):
            if word not in WORD_INDEX:
                raise ShortCodeFormatError(f"word {i} of the code is not in the word list")

    @property
    def text(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def password(self) -> bytes:
        """The SPAKE2 password: the words only (the nameplate goes into the ids)."""
        return "-".join(self.words).encode("ascii")


_SEPARATORS = re.compile(r"[\s\-]+")


def parse_code(text: str) -> ShortCode:
    """``7-revenge-tiger`` (any case; spaces or dashes between parts) → ``ShortCode``."""
    if not isinstance(text, str):
        raise TypeError("the code must be a str")
    if len(text) > MAX_CODE_CHARS:
        raise ShortCodeFormatError("the code is too long")
    parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
    if not parts:
        raise ShortCodeFormatError("the code is empty")
    number, words = parts[0], tuple(parts[1:])
    if not (number.isascii() and number.isdigit()) or len(number) > len(str(MAX_NAMEPLATE)):
        raise ShortCodeFormatError("a code starts with its number, e.g. 7-revenge-tiger")
    return ShortCode(int(number), words)


def generate_code(nameplate: int, n_words: int, rng: Rng) -> ShortCode:
    """A fresh secret of ``n_words`` words (uniform: one random byte per word)."""
    if not MIN_WORDS <= n_words <= MAX_WORDS:
        raise ShortCodeFormatError(f"a code has {MIN_WORDS} to {MAX_WORDS} words")
    return ShortCode(nameplate, tuple(WORDS[b] for b in rng(n_words)))


def secret_bits(n_words: int) -> int:
    return n_words * BITS_PER_WORD


# -- frames ----------------------------------------------------------------------------------


class FrameType(enum.IntEnum):
    PAKE = 1  # the SPAKE2 message (33 bytes)
    CONFIRM = 2  # a key confirmation (32 bytes)
    LINK = 3  # sealed: channel uuid (16 bytes) ‖ ephemeral public key (33 bytes)


_FRAME_BODY_BYTES = {
    FrameType.PAKE: pake.PAKE_MESSAGE_BYTES,
    FrameType.CONFIRM: pake.KEY_BYTES,
    FrameType.LINK: 16 + 33 + pake.TAG_BYTES,
}


@dataclass(frozen=True)
class Frame:
    type: FrameType
    body: bytes = field(repr=False)


def encode_frame(frame_type: FrameType, body: bytes) -> bytes:
    return bytes([frame_type]) + body


def decode_frame(data: bytes) -> Frame:
    """One mailbox message → ``Frame``; anything else is ``ShortCodeMessageError``."""
    if not isinstance(data, bytes):
        raise TypeError("a frame is bytes")
    if not data or len(data) > MAX_FRAME_BYTES:
        raise ShortCodeMessageError("a short-code message is empty or too large")
    try:
        frame_type = FrameType(data[0])
    except ValueError:
        raise ShortCodeMessageError("a short-code message has an unknown type") from None
    body = data[1:]
    if len(body) != _FRAME_BODY_BYTES[frame_type]:
        raise ShortCodeMessageError(f"a short-code {frame_type.name} message has the wrong length")
    return Frame(frame_type, body)


def encode_link_payload(channel_uuid: str, public_key: PublicKey) -> bytes:
    return uuid_module.UUID(parse_channel_id(channel_uuid)).bytes + public_key.serialize()


def decode_link_payload(plaintext: bytes, server: str) -> ProvisioningLink:
    if len(plaintext) != 16 + 33:
        raise ShortCodeMessageError("the sealed link has the wrong length")
    try:
        channel = str(uuid_module.UUID(bytes=plaintext[:16]))
        return ProvisioningLink(channel, server, PublicKey.from_bytes(plaintext[16:]))
    except ProvisionError as exc:
        raise ShortCodeMessageError("the sealed link holds no valid key") from exc


def _aad(server: str, nameplate: int) -> bytes:
    return pake.side_ids(server, nameplate)[0]


# -- the machines -----------------------------------------------------------------------------


class CodeState(enum.Enum):
    WAIT_PAKE = "waiting for the other side's SPAKE2 message"
    WAIT_CONFIRM = "waiting for the other side's key confirmation"
    WAIT_LINK = "waiting for the sealed channel and key (master only)"
    DONE = "the exchange is complete"
    FAILED = "the exchange failed; the nameplate is burned"


# (role, state, frame type) → next state. Every transition of both machines is here.
CODE_TRANSITIONS: dict[tuple[str, CodeState, FrameType], CodeState] = {
    ("secondary", CodeState.WAIT_PAKE, FrameType.PAKE): CodeState.WAIT_CONFIRM,
    ("secondary", CodeState.WAIT_CONFIRM, FrameType.CONFIRM): CodeState.DONE,
    ("master", CodeState.WAIT_PAKE, FrameType.PAKE): CodeState.WAIT_CONFIRM,
    ("master", CodeState.WAIT_CONFIRM, FrameType.CONFIRM): CodeState.WAIT_LINK,
    ("master", CodeState.WAIT_LINK, FrameType.LINK): CodeState.DONE,
}


class _Exchange:
    role: pake.Role

    def __init__(self, code: ShortCode, server: str, rng: Rng) -> None:
        self.code = code
        self.server = normalize_server_url(server)
        self.state = CodeState.WAIT_PAKE
        self._pake = pake.Pake(
            self.role, code.password, pake.side_ids(self.server, code.nameplate), rng
        )
        self._keys: pake.CodeKeys | None = None

    def start(self) -> list[bytes]:
        """This side's first frames, to post to the mailbox."""
        return self._first_frames()

    def _first_frames(self) -> list[bytes]:
        return [encode_frame(FrameType.PAKE, self._pake.outbound)]

    def receive(self, data: bytes) -> list[bytes]:
        """Feed one frame from the other side; returns the frames to post in answer."""
        if self.state in (CodeState.DONE, CodeState.FAILED):
            raise ShortCodeMessageError(f"no more messages expected ({self.state.name})")
        try:
            frame = decode_frame(data)
            following = CODE_TRANSITIONS.get((self.role, self.state, frame.type))
            if following is None:
                raise ShortCodeMessageError(
                    f"a {frame.type.name} message arrived out of order ({self.state.name})"
                )
            out = self._handle(frame)
        except ProvisionError:
            self.state = CodeState.FAILED
            raise
        self.state = following
        return out

    def _handle(self, frame: Frame) -> list[bytes]:
        raise NotImplementedError

    def _check_confirmation(self, expected: bytes, received: bytes) -> None:
        if not pake.confirmation_matches(expected, received):
            raise WrongShortCodeError("the short code did not match on both devices")

    @property
    def aad(self) -> bytes:
        return _aad(self.server, self.code.nameplate)


class SecondaryCodeExchange(_Exchange):
    """The new device: shows the code, proves nothing until the master has."""

    role: pake.Role = "secondary"

    def __init__(
        self, code: ShortCode, server: str, channel_uuid: str, public_key: PublicKey, rng: Rng
    ) -> None:
        super().__init__(code, server, rng)
        self._payload = encode_link_payload(channel_uuid, public_key)

    def _handle(self, frame: Frame) -> list[bytes]:
        if frame.type is FrameType.PAKE:
            self._keys = self._pake.finish(frame.body)
            return []
        assert self._keys is not None  # CONFIRM comes only after PAKE (the table)
        self._check_confirmation(self._keys.master_confirm, frame.body)
        sealed = pake.seal(self._keys.to_master, self._payload, self.aad)
        return [
            encode_frame(FrameType.CONFIRM, self._keys.secondary_confirm),
            encode_frame(FrameType.LINK, sealed),
        ]


class MasterCodeExchange(_Exchange):
    """The account's device: typed the code; learns the channel and key the QR would carry."""

    role: pake.Role = "master"

    def __init__(self, code: ShortCode, server: str, rng: Rng) -> None:
        super().__init__(code, server, rng)
        self.link: ProvisioningLink | None = None

    def start(self) -> list[bytes]:
        # The master answers the secondary's PAKE with its own PAKE and confirmation in one
        # post, so it sends nothing before it has the secondary's message (see receive).
        return []

    def _handle(self, frame: Frame) -> list[bytes]:
        if frame.type is FrameType.PAKE:
            self._keys = self._pake.finish(frame.body)
            return [
                *self._first_frames(),
                encode_frame(FrameType.CONFIRM, self._keys.master_confirm),
            ]
        assert self._keys is not None
        if frame.type is FrameType.CONFIRM:
            self._check_confirmation(self._keys.secondary_confirm, frame.body)
            return []
        plaintext = pake.open_sealed(self._keys.to_master, frame.body, self.aad)
        self.link = decode_link_payload(plaintext, self.server)
        return []
