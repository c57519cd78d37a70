"""The declared JSON bodies (protocol/bodies.py): strict where §2/§4 are strict, one clear
sentence per refusal, the same values on both sides, and a document that says what decoding
does."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from json_edit import DELETE, edited  # tests/, on sys.path (tests/conftest.py)
from starlette.routing import Route

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import MessageFormatError
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.bodies import (
    INT63_MAX,
    ChannelMessage,
    ChannelMessages,
    DeviceAttributes,
    IncomingMessage,
    KeyBundles,
    KeysUpload,
    OutgoingMessage,
    OutgoingMessages,
    ProvisioningCode,
    convert,
    decode,
    encode,
)
from textsecure_provision.protocol.encoding import b64decode
from textsecure_provision.protocol.prekeys import (
    build_keys_upload,
    generate_prekeys,
    generate_signed_prekey,
)
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.openapi import openapi_document

IDENTITY = KeyPair.from_private(bytes(range(32)))
KEY = base64.b64encode(b"\x05" + bytes(32)).decode()
SIG = base64.b64encode(bytes(range(64))).decode()


def keys_doc() -> dict[str, Any]:
    return {
        "identityKey": KEY,
        "signedPreKey": {"keyId": 1, "publicKey": KEY, "signature": SIG},
        "preKeys": [{"keyId": 2, "publicKey": KEY}, {"keyId": 3, "publicKey": KEY}],
        "lastResortKey": {"keyId": 0xFFFFFF, "publicKey": KEY},
    }


def message_doc(**extra: Any) -> dict[str, Any]:
    return {"type": 1, "destinationDeviceId": 2, "body": "AAEC", **extra}


def refusal(raw: bytes | dict[str, Any] | list[Any], kind: type[Any]) -> str:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(MessageFormatError) as info:
        decode(data, kind)
    return info.value.message


SHORT_KEY = base64.b64encode(b"\x05" + bytes(31)).decode()
WRONG_TYPE_KEY = base64.b64encode(b"\x06" + bytes(32)).decode()

KEYS_REFUSALS = [
    (["identityKey"], SHORT_KEY, "identityKey must be 33 bytes, got 32"),
    (["identityKey"], WRONG_TYPE_KEY, "identityKey has type byte 0x06, expected 0x05"),
    (["identityKey"], "%%%", "identityKey is not valid base64"),
    (["identityKey"], 5, "identityKey must be a base64 string"),
    (["identityKey"], DELETE, "identityKey is required"),
    (["signedPreKey", "signature"], SIG.rstrip("="), "signedPreKey.signature is not valid base64"),
    (
        ["signedPreKey", "signature"],
        SIG.replace("+", "-").replace("/", "_"),
        "signedPreKey.signature is not valid base64",
    ),
    (
        ["signedPreKey", "signature"],
        base64.b64encode(bytes(63)).decode(),
        "signedPreKey.signature must be 64 bytes, got 63",
    ),
    (["signedPreKey", "keyId"], "7", "signedPreKey.keyId must be an integer"),
    (["signedPreKey", "keyId"], -7, "signedPreKey.keyId must be between 0 and 4294967295"),
    (["signedPreKey", "keyId"], 2**32, "signedPreKey.keyId must be between 0 and 4294967295"),
    (["signedPreKey", "keyId"], 2**70, "signedPreKey.keyId must be between 0 and 4294967295"),
    (["signedPreKey", "keyId"], 1.0, "signedPreKey.keyId must be an integer"),
    (["signedPreKey"], [], "signedPreKey must be a JSON object"),
    (
        ["signedPreKey", "publicKey"],
        WRONG_TYPE_KEY,
        "signedPreKey.publicKey has type byte 0x06, expected 0x05",
    ),
    (["preKeys"], {}, "preKeys must be a JSON array"),
    (["preKeys"], DELETE, "preKeys is required"),
    (["preKeys", 1], "x", "preKeys[1] must be a JSON object"),
    (["preKeys", 1, "keyId"], True, "preKeys[1].keyId must be an integer"),
    (["preKeys", 1, "publicKey"], KEY[:-4], "preKeys[1].publicKey must be 33 bytes, got 30"),
    (["preKeys", 1, "keyId"], 2, "preKeys holds the same keyId twice"),
    (["lastResortKey"], "x", "lastResortKey must be a JSON object"),
    (["lastResortKey", "publicKey"], "AAAA", "lastResortKey.publicKey must be 33 bytes, got 3"),
]


@pytest.mark.parametrize("path,value,message", KEYS_REFUSALS, ids=[m for _, _, m in KEYS_REFUSALS])
def test_keys_upload_refusals_name_the_field(path: list[Any], value: Any, message: str) -> None:
    assert refusal(edited(keys_doc(), path, value), KeysUpload) == message


MESSAGE_REFUSALS = [
    ({"messages": []}, "messages is empty"),
    ({"messages": "x"}, "messages must be a JSON array"),
    ({}, "messages is required"),
    ({"messages": ["x"]}, "messages[0] must be a JSON object"),
    ({"messages": [message_doc(type="1")]}, "messages[0].type must be an integer"),
    ({"messages": [message_doc(type=-1)]}, "messages[0].type must be between 0 and 2147483647"),
    (
        {"messages": [message_doc(destinationDeviceId=0)]},
        "messages[0].destinationDeviceId must be between 1 and 2147483647",
    ),
    (
        {"messages": [message_doc(destinationRegistrationId=-1)]},
        "messages[0].destinationRegistrationId must be between 0 and 4294967295",
    ),
    ({"messages": [message_doc(body="AA=")]}, "messages[0].body is not valid base64"),
    ({"messages": [message_doc(body=5)]}, "messages[0].body must be a base64 string"),
    (
        {"messages": [{"type": 1, "destinationDeviceId": 2}]},
        "messages[0].body is required",
    ),
    ({"messages": [message_doc(timestamp="now")]}, "messages[0].timestamp must be an integer"),
    # The drift issue 15 found: the server caps timestamps at 2^63-1, and so does the document.
    (
        {"messages": [message_doc(timestamp=2**63)]},
        "messages[0].timestamp must be between 0 and 9223372036854775807",
    ),
    (
        {"messages": [message_doc(), message_doc()]},
        "messages hold the same destinationDeviceId twice",
    ),
]


@pytest.mark.parametrize("doc,message", MESSAGE_REFUSALS, ids=[m for _, m in MESSAGE_REFUSALS])
def test_outgoing_message_refusals_name_the_field(doc: dict[str, Any], message: str) -> None:
    assert refusal(doc, OutgoingMessages) == message


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"{", "the body is not valid JSON"),
        (b"", "the body is not valid JSON"),
        (b"\xff\xfe", "the body is not valid JSON"),
        (b'{"registrationId": NaN}', "the body is not valid JSON"),
        (b'{"registrationId": 1} x', "the body is not valid JSON"),
        (
            b'{"registrationId": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "the body is not valid JSON",
        ),
        (b"[" * 5000, "the body must be a JSON object"),
        (b"[]", "the body must be a JSON object"),
        (b"null", "the body must be a JSON object"),
        (
            b'{"registrationId": 5, "fetchesMessages": "yes"}',
            "fetchesMessages must be true or false",
        ),
        (b'{"registrationId": 5, "fetchesMessages": 1}', "fetchesMessages must be true or false"),
        (b'{"registrationId": 5, "name": 5}', "name must be a string of at most 256 characters"),
        (
            json.dumps({"registrationId": 5, "name": "x" * 257}).encode(),
            "name must be a string of at most 256 characters",
        ),
        (b'{"registrationId": 4294967296}', "registrationId must be between 0 and 4294967295"),
        (b"{}", "registrationId is required"),
    ],
)
def test_device_attributes_refusals(raw: bytes, message: str) -> None:
    assert refusal(raw, DeviceAttributes) == message


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    attrs = decode(b'{"registrationId": 5, "future": {"x": [1]}, "name": null}', DeviceAttributes)
    assert attrs == DeviceAttributes(registration_id=5, fetches_messages=True, name=None)
    message = decode(json.dumps({"messages": [message_doc()]}).encode(), OutgoingMessages)
    (only,) = message.messages
    assert only.destination_registration_id is None and only.timestamp is None
    assert only.body == b"\x00\x01\x02"


def test_a_channel_message_needs_only_a_body() -> None:
    assert decode(b'{"messages": [{"body": "AAEC"}]}', ChannelMessages).messages[0].body == (
        b"\x00\x01\x02"
    )
    assert refusal({"messages": [{"type": 1}]}, ChannelMessages) == "messages[0].body is required"


def test_what_the_client_builds_is_what_the_server_decodes() -> None:
    signed = generate_signed_prekey(IDENTITY, 7)
    upload = build_keys_upload(
        IDENTITY.public, signed, generate_prekeys(1, 100), generate_prekeys(0xFFFFFF, 1)[0]
    )
    raw = encode(upload)
    doc = json.loads(raw)
    # §2: binary as padded standard base64; §4 field names.
    assert doc["identityKey"] == base64.b64encode(IDENTITY.public.serialize()).decode()
    assert doc["signedPreKey"]["signature"] == base64.b64encode(signed.signature).decode()
    assert len(doc["preKeys"]) == 100 and set(doc["preKeys"][0]) == {"keyId", "publicKey"}
    assert decode(raw, KeysUpload) == upload
    # Defaults are left out: fetchesMessages true, no name, no timestamp, no registration id.
    assert json.loads(encode(DeviceAttributes(5))) == {"registrationId": 5}
    assert json.loads(encode(OutgoingMessage(5, 2, b"\x01"))) == {
        "type": 5,
        "destinationDeviceId": 2,
        "body": "AQ==",
    }


def test_answers_the_client_refuses() -> None:
    with pytest.raises(MessageFormatError, match="verificationCode must be 6 to 9 digits"):
        convert({"verificationCode": "١٢٣٤٥٦"}, ProvisioningCode)
    with pytest.raises(MessageFormatError, match=r"^devices is empty$"):
        convert({"identityKey": KEY, "devices": []}, KeyBundles)
    with pytest.raises(MessageFormatError, match=r"^sourceDevice must be between 1 and"):
        convert(
            {"guid": "g", "type": 1, "source": "+15550001111", "sourceDevice": 0,
             "timestamp": 1, "body": ""},
            IncomingMessage,
        )  # fmt: skip


# -- the document is generated from the same declarations ----------------------------------------


def _routes() -> list[Route]:
    from textsecure_provision.server.routes import (
        accounts,
        channels,
        devices,
        keys,
        messages,
        nameplates,
        ops,
    )

    return [*accounts.routes, *devices.routes, *keys.routes, *messages.routes, *channels.routes,
            *nameplates.routes, *ops.routes]  # fmt: skip


def test_document_schemas_are_the_declarations() -> None:
    config = ServerConfig(max_prekeys=123)
    schemas = openapi_document(config, _routes())["components"]["schemas"]
    message = schemas["OutgoingMessage"]["properties"]
    assert message["timestamp"]["anyOf"][0]["maximum"] == INT63_MAX
    assert schemas["OutgoingMessage"]["required"] == ["type", "destinationDeviceId", "body"]
    assert schemas["KeysUpload"]["properties"]["preKeys"]["maxItems"] == 123
    key = schemas["PreKey"]["properties"]["publicKey"]
    assert (key["minLength"], key["maxLength"]) == (44, 44)


def test_the_key_pattern_matches_exactly_the_keys_decoding_accepts() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        **openapi_document(ServerConfig(), _routes())["components"]["schemas"]["PreKey"],
    }
    validator = jsonschema.Draft202012Validator(schema)
    for first in range(256):
        for second in (0x00, 0x7F, 0xFF):
            raw = bytes([first, second]) + bytes(31)
            doc = {"keyId": 1, "publicKey": base64.b64encode(raw).decode()}
            accepted = True
            try:
                convert(doc, bodies.PreKey)
            except MessageFormatError:
                accepted = False
            assert validator.is_valid(doc) == accepted, raw[:2].hex()


def test_a_route_without_an_operation_is_not_served_undocumented() -> None:
    async def endpoint(request: Any) -> Any:  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(LookupError, match="GET /v1/nowhere is served but has no Operation"):
        openapi_document(ServerConfig(), [*_routes(), Route("/v1/nowhere", endpoint)])
    with pytest.raises(LookupError, match="operations without a served route"):
        openapi_document(ServerConfig(), _routes()[1:])


# -- msgspec's base64 is the contract's (§2), byte for byte ------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="ABCDEFGHabcdefgh0189+/=-_ \n", max_size=16),
        st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
        st.binary(max_size=12).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    )
)
def test_body_base64_accepts_exactly_what_the_strict_reader_accepts(text: str) -> None:
    try:
        expected: bytes | None = b64decode(text)
    except MessageFormatError:
        expected = None
    for read in (
        lambda: convert({"body": text}, ChannelMessage).body,  # the client's path
        lambda: decode(json.dumps({"body": text}).encode(), ChannelMessage).body,  # the server's
    ):
        try:
            got: bytes | None = read()
        except MessageFormatError:
            got = None
        assert got == expected, text


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.sampled_from([KEY, SIG, "AAAA", "AA=", SHORT_KEY, WRONG_TYPE_KEY]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = ["identityKey", "signedPreKey", "preKeys", "lastResortKey", "keyId", "publicKey",
          "signature", "messages", "type", "destinationDeviceId", "destinationRegistrationId",
          "body", "timestamp", "registrationId", "fetchesMessages", "name"]  # fmt: skip


def near(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Objects with the declared field names, so the per-field refusals are reached."""
    return st.dictionaries(st.sampled_from(FIELDS), value, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([KeysUpload, OutgoingMessages, ChannelMessages, DeviceAttributes]),
    st.one_of(
        json_values,
        near(json_values),
        near(near(json_values)),
        near(st.lists(near(json_values), max_size=3)),
    ),
)
def test_every_refusal_is_one_of_our_sentences(kind: type[Any], doc: Any) -> None:
    try:
        decode(json.dumps(doc).encode(), kind)
    except MessageFormatError as exc:
        # Our sentence, never msgspec's own wording (backticks, "Expected"), never a value.
        assert "`" not in exc.message and "Expected" not in exc.message, exc.message
