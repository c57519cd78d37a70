"""WhisperMessage and PreKeyWhisperMessage, byte for byte as PROTOCOL.md §7.

::

    WhisperMessage       = 0x33 || protobuf{ratchetKey=1, counter=2, previousCounter=3,
                                            ciphertext=4} || mac[0:8]
      mac                = HMAC-SHA256(macKey, senderIdentity(33) || receiverIdentity(33)
                                               || 0x33 || protobuf)
    PreKeyWhisperMessage = 0x33 || protobuf{registrationId=5, preKeyId=1, signedPreKeyId=6,
                                            baseKey=2, identityKey=3, message=4}

Every field is ``optional`` in the .proto (proto2 as libaxolotl wrote it), so presence is
checked here, as libsignal does ("Incomplete message"). Decoding never trusts the protobuf to
re-serialize identically: the MAC is checked over the bytes as received, so a peer whose encoder
orders or sizes fields differently still interoperates.

Every failure to decode is a ``SessionError``: to a receiver, a malformed message is one more
message that failed authentication (STYLE: crypto failures collapse into one error).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.message import DecodeError

from textsecure_provision.crypto.keys import PublicKey
from textsecure_provision.errors import KeyFormatError, SessionError
from textsecure_provision.proto import whisper_pb2
from textsecure_provision.protocol.session.primitives import hmac_sha256

CURRENT_VERSION: Final = 3
VERSION_BYTE: Final = (CURRENT_VERSION << 4) | CURRENT_VERSION  # 0x33 (§7)
MAC_LEN: Final = 8
UINT32_MAX: Final = 2**32 - 1
MAX_MESSAGE_BYTES: Final = 256 * 1024
"""The server refuses larger bodies (§4); nothing larger is worth parsing."""


@dataclass(frozen=True)
class WhisperMessage:
    """A parsed type-6 body. ``serialized`` is the whole message as received (MAC included)."""

    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @property
    def mac(self) -> bytes:
        return self.serialized[-MAC_LEN:]

    @property
    def mac_input(self) -> bytes:
        """``version || protobuf``: what the MAC covers after the two identity keys."""
        return self.serialized[:-MAC_LEN]


@dataclass(frozen=True)
class PreKeyWhisperMessage:
    """A parsed type-5 body; ``message`` is the inner ``WhisperMessage``."""

    registration_id: int
    prekey_id: int | None
    signed_prekey_id: int
    base_key: PublicKey
    identity_key: PublicKey
    message: WhisperMessage


def compute_mac(
    mac_key: bytes, sender_identity: PublicKey, receiver_identity: PublicKey, data: bytes
) -> bytes:
    """The 8-byte truncated HMAC of §7 over both identities and ``version || protobuf``."""
    full = hmac_sha256(mac_key, sender_identity.serialize() + receiver_identity.serialize() + data)
    return full[:MAC_LEN]


def verify_mac(
    message: WhisperMessage,
    mac_key: bytes,
    sender_identity: PublicKey,
    receiver_identity: PublicKey,
) -> None:
    """Constant-time check; a message for another identity fails here too."""
    expected = compute_mac(mac_key, sender_identity, receiver_identity, message.mac_input)
    if not hmac.compare_digest(expected, message.mac):
        raise SessionError("the message failed authentication (bad MAC)")


def _check_uint32(name: str, value: int) -> None:
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"{name} must fit a uint32, got {value}")


def encode_whisper_message(
    *,
    mac_key: bytes,
    ratchet_key: PublicKey,
    counter: int,
    previous_counter: int,
    ciphertext: bytes,
    sender_identity: PublicKey,
    receiver_identity: PublicKey,
) -> bytes:
    """Build a type-6 body. Zero counters are written explicitly, as libaxolotl does."""
    _check_uint32("counter", counter)
    _check_uint32("previous_counter", previous_counter)
    proto = whisper_pb2.WhisperMessage()
    proto.ratchetKey = ratchet_key.serialize()
    proto.counter = counter
    proto.previousCounter = previous_counter
    proto.ciphertext = ciphertext
    body = bytes((VERSION_BYTE,)) + proto.SerializeToString()
    return body + compute_mac(mac_key, sender_identity, receiver_identity, body)


def encode_prekey_whisper_message(
    *,
    registration_id: int,
    prekey_id: int | None,
    signed_prekey_id: int,
    base_key: PublicKey,
    identity_key: PublicKey,
    message: bytes,
) -> bytes:
    """Build a type-5 body around an encoded ``WhisperMessage``; ``preKeyId`` only if used."""
    _check_uint32("registration_id", registration_id)
    _check_uint32("signed_prekey_id", signed_prekey_id)
    proto = whisper_pb2.PreKeyWhisperMessage()
    proto.registrationId = registration_id
    if prekey_id is not None:
        _check_uint32("prekey_id", prekey_id)
        proto.preKeyId = prekey_id
    proto.signedPreKeyId = signed_prekey_id
    proto.baseKey = base_key.serialize()
    proto.identityKey = identity_key.serialize()
    proto.message = message
    return bytes((VERSION_BYTE,)) + proto.SerializeToString()


def _check_envelope(data: object, what: str, min_len: int) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a {what} must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise SessionError(f"the {what} is too large")
    if len(data) < min_len:
        raise SessionError(f"the {what} is truncated")
    if data[0] != VERSION_BYTE:
        raise SessionError(
            f"the {what} has version byte 0x{data[0]:02x}; only 0x{VERSION_BYTE:02x} (v3) is"
            " supported"
        )
    return data


def _key(raw: bytes, what: str) -> PublicKey:
    """A 33-byte key whose u-coordinate has its top bit clear.

    X25519 ignores bit 255 of u, so two encodings would give the same DH results; an honest
    peer never sets it. Refusing it keeps one encoding per key, so a replayed
    PreKeyWhisperMessage cannot pass as a new session by flipping that bit of its base key.
    """
    try:
        key = PublicKey.from_bytes(raw, name=what)
    except KeyFormatError as exc:
        raise SessionError(f"the message's {what} is not a valid key") from exc
    if key.raw[-1] & 0x80:
        raise SessionError(f"the message's {what} is not in canonical form")
    return key


def decode_whisper_message(data: bytes) -> WhisperMessage:
    """Parse a type-6 body (the MAC is checked later, once the session gives the key)."""
    data = _check_envelope(data, "WhisperMessage", 1 + MAC_LEN + 1)
    proto = whisper_pb2.WhisperMessage()
    try:
        proto.ParseFromString(data[1:-MAC_LEN])
    except DecodeError as exc:
        raise SessionError("the WhisperMessage is not a valid protobuf") from exc
    if not (
        proto.HasField("ratchetKey") and proto.HasField("counter") and proto.HasField("ciphertext")
    ):
        raise SessionError("the WhisperMessage is incomplete")
    return WhisperMessage(
        ratchet_key=_key(proto.ratchetKey, "ratchet key"),
        counter=proto.counter,
        previous_counter=proto.previousCounter,
        ciphertext=proto.ciphertext,
        serialized=data,
    )


def decode_prekey_whisper_message(data: bytes) -> PreKeyWhisperMessage:
    """Parse a type-5 body, including its inner ``WhisperMessage``."""
    data = _check_envelope(data, "PreKeyWhisperMessage", 2)
    proto = whisper_pb2.PreKeyWhisperMessage()
    try:
        proto.ParseFromString(data[1:])
    except DecodeError as exc:
        raise SessionError("the PreKeyWhisperMessage is not a valid protobuf") from exc
    if not all(proto.HasField(f) for f in ("signedPreKeyId", "baseKey", "identityKey", "message")):
        raise SessionError("the PreKeyWhisperMessage is incomplete")
    return PreKeyWhisperMessage(
        registration_id=proto.registrationId,
        prekey_id=proto.preKeyId if proto.HasField("preKeyId") else None,
        signed_prekey_id=proto.signedPreKeyId,
        base_key=_key(proto.baseKey, "base key"),
        identity_key=_key(proto.identityKey, "identity key"),
        message=decode_whisper_message(proto.message),
    )
