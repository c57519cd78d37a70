"""The JSON bodies of the server API (§4), declared once for the server and the client.

Each body is a msgspec ``Struct``: field names as on the wire (camelCase), value
ranges and lengths in the field's type, the rules types cannot say in
``__post_init__``. The server decodes requests with ``decode`` and the client
decodes answers with it; the client encodes requests with ``encode``; the
OpenAPI document (``server/openapi.py``) is generated from these classes, so
the document, the server and the client cannot drift apart.

Decoding is as strict as the contract: binary fields are standard base64 with
padding (§2), keys exactly 33 bytes with 0x05 first, ids within their ranges,
booleans are not integers. Unknown fields are ignored (forward compatibility).
A refusal is a ``MessageFormatError`` that names the field by its path
(``preKeys[3].publicKey``), never its value (``protocol/refusals.py`` words it).

Limits the operator configures (prekeys per upload, messages per send) are not
here: the server checks them, and the document fills them in from its config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from textsecure_provision.errors import MessageFormatError
from textsecure_provision.protocol.refusals import FieldError, RawBody, describe

UINT32_MAX = 2**32 - 1
INT31_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1
MAX_NAME_CHARS = 256
PUBLIC_KEY_LEN = 33  # 0x05 || u (§2)
DJB_TYPE = 0x05
SIGNATURE_LEN = 64

# JSON Schema patterns (ECMA regex), for the document and the fuzzers that read it. Decoding
# does not use them: msgspec checks base64 and lengths itself.
E164_PATTERN = r"^\+[0-9]{8,15}$"
B64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# 33 bytes, 0x05 first: 44 characters, "B" then one of Q..f (0b01xxxx), no padding.
KEY_PATTERN = r"^B[Q-Za-f][A-Za-z0-9+/]{42}$"
# 64 bytes: 88 characters ending in "==", the last data character's low 4 bits zero.
SIGNATURE_PATTERN = r"^[A-Za-z0-9+/]{85}[AQgw]==$"

Uint32 = Annotated[int, Meta(ge=0, le=UINT32_MAX)]
Int31 = Annotated[int, Meta(ge=0, le=INT31_MAX)]
DeviceId = Annotated[int, Meta(ge=1, le=INT31_MAX, description="a device of the account")]
Timestamp = Annotated[int, Meta(ge=0, le=INT63_MAX, description="ms since the epoch")]
Count = Annotated[int, Meta(ge=0)]
Base64 = Annotated[bytes, Meta(extra_json_schema={"pattern": B64_PATTERN})]
PublicKeyBytes = Annotated[
    bytes,
    Meta(
        min_length=PUBLIC_KEY_LEN,
        max_length=PUBLIC_KEY_LEN,
        description="base64 of a 33-byte key, 0x05 first (§2)",
        extra_json_schema={"pattern": KEY_PATTERN},
    ),
]
Signature = Annotated[
    bytes,
    Meta(
        min_length=SIGNATURE_LEN,
        max_length=SIGNATURE_LEN,
        description="base64 of a 64-byte XEdDSA signature (§7)",
        extra_json_schema={"pattern": SIGNATURE_PATTERN},
    ),
]
Name = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]
PhoneNumberText = Annotated[str, Meta(extra_json_schema={"pattern": E164_PATTERN})]


def _check_key(field: str, key: bytes) -> None:
    if key[0] != DJB_TYPE:
        raise FieldError(field, f"has type byte 0x{key[0]:02x}, expected 0x05")


class Body(Struct, rename="camel", omit_defaults=True):
    """Every body: camelCase on the wire; optional fields left out when they hold the default."""


# -- devices (§4 PUT /v1/accounts/code/{code}, PUT /v1/devices/{code}) --------------------------


class DeviceAttributes(Body):
    """The new device: registration id, whether it fetches messages (default true), a name."""

    registration_id: Uint32
    fetches_messages: bool = True
    name: Name | None = None


class DeviceIdAnswer(Body):
    """The id the server gave the device (1 for the master)."""

    device_id: DeviceId


class ProvisioningCode(Body):
    """A single-use code: 6 to 9 decimal digits, fits a uint32 (§4)."""

    verification_code: Annotated[str, Meta(extra_json_schema={"pattern": "^[0-9]{6,9}$"})]

    def __post_init__(self) -> None:
        code = self.verification_code
        # str.isdigit() also accepts other scripts' digits ("١٢٣"), which are not the wire's.
        if not (code.isascii() and code.isdigit() and 6 <= len(code) <= 9):
            raise FieldError("verificationCode", "must be 6 to 9 digits")


class LinkedDevice(Body):
    """One device of the account; times in ms since the epoch."""

    id: DeviceId
    name: str | None = None
    created: int | None = None
    last_seen: int | None = None


class DeviceList(Body):
    devices: list[LinkedDevice]


# -- keys (§4 PUT /v1/keys, GET /v1/keys/, GET /v1/keys/{number}/{device}) ---------------------


class PreKey(Body):
    key_id: Uint32
    public_key: PublicKeyBytes

    def __post_init__(self) -> None:
        _check_key("publicKey", self.public_key)


class SignedPreKey(Body):
    """Signed by the identity key over the serialized public key (§7)."""

    key_id: Uint32
    public_key: PublicKeyBytes
    signature: Signature

    def __post_init__(self) -> None:
        _check_key("publicKey", self.public_key)


class KeysUpload(Body):
    """Replaces the device's signed prekey and one-time prekeys; the identity key must be the
    account's (device 1's first upload sets it)."""

    identity_key: PublicKeyBytes
    signed_pre_key: SignedPreKey
    pre_keys: Annotated[list[PreKey], Meta(description="replaces the one-time prekeys")]
    last_resort_key: PreKey | None = None

    def __post_init__(self) -> None:
        _check_key("identityKey", self.identity_key)
        if len({p.key_id for p in self.pre_keys}) != len(self.pre_keys):
            raise FieldError("preKeys", "holds the same keyId twice")


class PreKeyCount(Body):
    count: Count


class DeviceKeys(Body):
    """One device's bundle; ``preKey`` is absent once its one-time prekeys are used up and
    it has no last-resort key."""

    device_id: DeviceId
    registration_id: Uint32
    signed_pre_key: SignedPreKey
    pre_key: PreKey | None = None


class KeyBundles(Body):
    identity_key: PublicKeyBytes
    devices: Annotated[list[DeviceKeys], Meta(min_length=1)]

    def __post_init__(self) -> None:
        _check_key("identityKey", self.identity_key)


# -- messages (§4 PUT /v1/messages/{destination}, GET /v1/messages/) -------------------------


class OutgoingMessage(Body):
    """``destinationRegistrationId`` 0, null or absent is not checked, as Signal-Server does
    (§4); the server's own time stands in for a missing ``timestamp``."""

    type: Int31
    destination_device_id: DeviceId
    body: Base64
    destination_registration_id: Uint32 | None = None
    timestamp: Timestamp | None = None


class OutgoingMessages(Body):
    """To a number: one message per destination device. To a temp channel uuid: exactly one
    message, of which only ``body`` is used (``ChannelMessages``)."""

    messages: Annotated[list[OutgoingMessage], Meta(min_length=1)]

    def __post_init__(self) -> None:
        ids = [m.destination_device_id for m in self.messages]
        if len(set(ids)) != len(ids):
            raise FieldError("messages", "hold the same destinationDeviceId twice")


class ChannelMessage(Body):
    """A message to a temp channel: its body is the DeviceInit (§4.1); the rest is unused."""

    body: Base64


class ChannelMessages(Body):
    messages: list[ChannelMessage]


class IncomingMessage(Body):
    guid: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
    type: int
    source: PhoneNumberText
    source_device: DeviceId
    timestamp: int
    body: Base64


class IncomingMessages(Body):
    messages: list[IncomingMessage]
    more: bool


class MessageBatch(Body):
    """The client's first pass over ``IncomingMessages``: each message is then decoded on its
    own (``convert(doc, IncomingMessage)``), so one malformed message is dropped alone."""

    messages: list[dict[str, Any]]
    more: bool = False


# -- the temp channel's two frames (§4.1) ------------------------------------------------------


class ChannelOpened(Body):
    """The server's first frame: the channel's name (lowercase canonical uuid)."""

    uuid: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]


class ChannelDelivery(Body):
    """The one message a channel relays: the DeviceInit, then the server closes (1000)."""

    message: Base64


# -- links by short code (docs/protocol.md "Links by short code"; routes/nameplates.py) --------

MAX_NAMEPLATE = 999_999  # as protocol/shortcode.py parses a short code
NameplateNumber = Annotated[int, Meta(ge=1, le=MAX_NAMEPLATE)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class Capabilities(Body):
    """What this server offers beyond §4 (an older server answers 404: nothing)."""

    short_codes: bool


class NameplateRequest(Body):
    """The new device asks for a nameplate for its open temp channel."""

    channel: Annotated[str, Meta(extra_json_schema={"pattern": UUID_PATTERN})]


class Nameplate(Body):
    """The nameplate and this side's token (as ``X-Nameplate-Token``)."""

    nameplate: NameplateNumber
    token: Base64
    expires_in: Annotated[Count, Meta(description="seconds")]


class NameplateClaim(Body):
    """The master's token and the messages the new device posted so far."""

    token: Base64
    messages: list[Base64]


class MailboxPost(Body):
    """Messages for the other side (the relay limits their number and size: 413)."""

    messages: Annotated[list[Base64], Meta(min_length=1)]


class MailboxMessages(Body):
    messages: list[Base64]
    claimed: bool


# -- answers without a body of their own, and errors ---------------------------------------------


class Empty(Body):
    """``{}``."""


class Error(Body):
    """Every refusal (§4)."""

    error: str
    code: int


class MismatchedDevices(Body):
    """409: the messages must cover exactly the destination's devices."""

    error: str
    code: Literal[409]
    missing_devices: list[int]
    extra_devices: list[int]


class StaleDevices(Body):
    """410: these devices were re-linked (their registration id changed)."""

    error: str
    code: Literal[410]
    stale_devices: list[int]


class Dependency(Body):
    status: Literal["ok", "down"]
    backend: str | None = None
    error: str | None = None


class Health(Body):
    status: Literal["ok", "degraded"]
    version: str
    dependencies: dict[str, Dependency]


# -- decoding, encoding -------------------------------------------------------------------------

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()


def encode(body: Body) -> bytes:
    """The JSON of a body (bytes as padded standard base64, defaults left out)."""
    return _ENCODER.encode(body)


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


def decode(raw: bytes, kind: type[T]) -> T:
    """``raw`` JSON as ``kind``, or ``MessageFormatError`` naming the field."""
    try:
        result: T = _decoder(kind).decode(raw)
    except msgspec.ValidationError as exc:
        raise MessageFormatError(describe(exc, kind, RawBody(raw))) from None
    except (msgspec.DecodeError, RecursionError):  # RecursionError: absurd nesting
        raise MessageFormatError("the body is not valid JSON") from None
    return result


def convert(doc: object, kind: type[T]) -> T:
    """An already parsed JSON value as ``kind`` (same rules as ``decode``)."""
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        raise MessageFormatError(describe(exc, kind, doc)) from None
