"""Frozen values ⇄ protobuf bytes for the messages of §6 (and §2's key pair).

The only module that touches the generated ``proto/`` code for provisioning.
Every decode checks ``IsInitialized()`` (proto2 parsing alone does not enforce
``required``) and re-validates each field, so a decoded value is always valid;
anything else is ``MessageFormatError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from textsecure_provision.crypto.keys import KeyPair, PrivateKey, PublicKey
from textsecure_provision.errors import InvalidInputError, MessageFormatError
from textsecure_provision.proto import provisioning_pb2 as pb
from textsecure_provision.protocol.encoding import parse_phone_number

UINT32_MAX = 0xFFFFFFFF
UINT64_MAX = 0xFFFFFFFFFFFFFFFF

M = TypeVar("M", bound=Message)


def _parse(cls: type[M], data: bytes, what: str) -> M:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes")
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise MessageFormatError(f"{what} is not a valid protobuf message") from exc
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())  # type: ignore[attr-defined]
        raise MessageFormatError(f"{what} lacks required fields: {missing}")
    return msg


def _text(value: object, what: str) -> str:
    """A proto2 ``string`` field. Parsing does not check UTF-8 in proto2, and the runtime
    then hands back ``bytes``: refuse that here rather than let bytes pass as text."""
    if not isinstance(value, str):
        raise MessageFormatError(f"{what} is not valid UTF-8 text")
    return value


# -- IdentityKeyPairStructure (§2) -----------------------------------------------------------


def encode_identity_key_pair(pair: KeyPair) -> bytes:
    return pb.IdentityKeyPairStructure(
        publicKey=pair.public.serialize(), privateKey=pair.private.serialize()
    ).SerializeToString()


def decode_identity_key_pair(data: bytes, *, check_pair: bool = True) -> KeyPair:
    """Parse; with ``check_pair``, also check the public key belongs to the private key.

    The check costs a scalar multiplication, so ``decode_identity_key`` leaves it
    to its caller (``SecondaryLink.receive`` does it before anything is registered).
    """
    msg = _parse(pb.IdentityKeyPairStructure, data, "the identity key pair")
    if not msg.HasField("publicKey") or not msg.HasField("privateKey"):
        raise MessageFormatError("the identity key pair lacks a public or private key")
    try:
        public = PublicKey.from_bytes(msg.publicKey, name="identity public key")
        private = PrivateKey.from_bytes(msg.privateKey, name="identity private key")
    except InvalidInputError as exc:
        raise MessageFormatError(exc.message) from exc
    if check_pair and private.public_key() != public:
        raise MessageFormatError("the identity public key does not match its private key")
    return KeyPair(public, private)


# -- IdentityKey: what the DeviceInit carries (§6) ---------------------------------------------


@dataclass(frozen=True)
class IdentityKeyPayload:
    identity_key_pair: KeyPair = field(repr=False)
    phone_number: str
    server: str
    master_supports_sms: bool
    provisioning_code: int = field(repr=False)

    def __post_init__(self) -> None:
        parse_phone_number(self.phone_number)
        if not isinstance(self.provisioning_code, int) or not (
            0 <= self.provisioning_code <= UINT32_MAX
        ):
            raise InvalidInputError("the provisioning code must fit a uint32")


def encode_identity_key(payload: IdentityKeyPayload) -> bytes:
    return pb.IdentityKey(
        identityKey=encode_identity_key_pair(payload.identity_key_pair),
        phoneNumber=payload.phone_number,
        server=payload.server,
        masterSupportsSms=payload.master_supports_sms,
        provisioningCode=payload.provisioning_code,
    ).SerializeToString()


def decode_identity_key(data: bytes) -> IdentityKeyPayload:
    msg = _parse(pb.IdentityKey, data, "the IdentityKey message")
    try:
        return IdentityKeyPayload(
            identity_key_pair=decode_identity_key_pair(msg.identityKey, check_pair=False),
            phone_number=_text(msg.phoneNumber, "the IdentityKey's phoneNumber"),
            server=_text(msg.server, "the IdentityKey's server"),
            master_supports_sms=msg.masterSupportsSms,
            provisioning_code=msg.provisioningCode,
        )
    except MessageFormatError:
        raise
    except InvalidInputError as exc:
        raise MessageFormatError(f"the IdentityKey message is invalid: {exc.message}") from exc


# -- DeviceInit (§6) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInitMessage:
    master_ephemeral: PublicKey
    identity_key_message: bytes


def encode_device_init(message: DeviceInitMessage) -> bytes:
    return pb.DeviceInit(
        masterEphemeralPubKey=message.master_ephemeral.serialize(),
        identityKeyMessage=message.identity_key_message,
    ).SerializeToString()


def decode_device_init(data: bytes) -> DeviceInitMessage:
    msg = _parse(pb.DeviceInit, data, "the DeviceInit")
    try:
        key = PublicKey.from_bytes(msg.masterEphemeralPubKey, name="masterEphemeralPubKey")
    except InvalidInputError as exc:
        raise MessageFormatError(exc.message) from exc
    return DeviceInitMessage(key, bytes(msg.identityKeyMessage))


# -- DeviceControl and PushMessageContent (§6) -------------------------------------------------


class ControlType(enum.IntEnum):
    UNKNOWN = 0
    NEW_DEVICE_REGISTERED = 1
    SENT_MESSAGE = 2


@dataclass(frozen=True)
class SentMessage:
    """A message this account sent to ``other_number``, copied to its other devices."""

    other_number: str
    timestamp: int
    body: str = field(repr=False)


@dataclass(frozen=True)
class DeviceControlMessage:
    type: ControlType
    new_device_id: int | None = None
    sent: SentMessage | None = None

    def __post_init__(self) -> None:
        if self.type is ControlType.NEW_DEVICE_REGISTERED and self.new_device_id is None:
            raise InvalidInputError("NEW_DEVICE_REGISTERED needs new_device_id")
        if self.type is ControlType.SENT_MESSAGE and self.sent is None:
            raise InvalidInputError("SENT_MESSAGE needs the sent message")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.name}
        if self.new_device_id is not None:
            out["new_device_id"] = self.new_device_id
        if self.sent is not None:
            out["sent"] = {
                "other_number": self.sent.other_number,
                "timestamp": self.sent.timestamp,
                "body": self.sent.body,
            }
        return out


def encode_device_control(message: DeviceControlMessage) -> bytes:
    msg = pb.DeviceControl()
    msg.type = int(message.type)  # type: ignore[assignment]
    if message.new_device_id is not None:
        msg.newDeviceId = message.new_device_id
    if message.sent is not None:
        msg.message.otherNumber = message.sent.other_number
        msg.message.timestamp = message.sent.timestamp
        msg.message.message = pb.PushMessageContent(body=message.sent.body).SerializeToString()
    return bytes(msg.SerializeToString())


def decode_device_control(data: bytes) -> DeviceControlMessage:
    msg = _parse(pb.DeviceControl, data, "the DeviceControl message")
    try:
        kind = ControlType(msg.type)
    except ValueError as exc:
        raise MessageFormatError("the DeviceControl type is unknown") from exc
    sent = None
    if msg.HasField("message"):
        content = _parse(pb.PushMessageContent, msg.message.message, "the PushMessageContent")
        sent = SentMessage(
            _text(msg.message.otherNumber, "the MessageSent's otherNumber"),
            msg.message.timestamp,
            _text(content.body, "the PushMessageContent's body"),
        )
    try:
        return DeviceControlMessage(
            type=kind,
            new_device_id=msg.newDeviceId if msg.HasField("newDeviceId") else None,
            sent=sent,
        )
    except InvalidInputError as exc:
        raise MessageFormatError(f"the DeviceControl message is invalid: {exc.message}") from exc
