"""Keys (§2), trust (§8), encodings and protobuf messages (§6): strict parsing, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair, PrivateKey, PublicKey
from textsecure_provision.errors import (
    InvalidInputError,
    KeyFormatError,
    MessageFormatError,
    PhoneNumberError,
    ProvisionError,
    UntrustedServerError,
)
from textsecure_provision.proto import provisioning_pb2 as pb
from textsecure_provision.protocol import messages as m
from textsecure_provision.protocol.encoding import b64decode, b64decode_liberal, parse_phone_number
from textsecure_provision.protocol.prekeys import generate_prekeys, generate_signed_prekey
from textsecure_provision.protocol.trust import check_trusted, normalize_server_url

PAIR = KeyPair.from_private(bytes(range(32)))


@pytest.mark.parametrize("data", [b"", b"\x05" * 32, b"\x05" * 34, b"\x06" + bytes(32)])
def test_public_key_strict(data: bytes) -> None:
    with pytest.raises(KeyFormatError):
        PublicKey.from_bytes(data)


def test_key_type_errors_are_type_errors() -> None:
    with pytest.raises(TypeError):
        PublicKey.from_bytes("05" * 33)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        PrivateKey.from_bytes(bytes(31))


def test_private_key_not_in_repr() -> None:
    assert PAIR.private.raw.hex() not in repr(PAIR)
    assert "raw" not in repr(PAIR.private) or PAIR.private.raw.hex() not in repr(PAIR.private)


def test_low_order_point_refused() -> None:
    with pytest.raises(KeyFormatError, match="low order"):
        PAIR.exchange(PublicKey(bytes(32)))


def test_signatures_both_forms_and_tamper() -> None:
    msg = b"\x05" + bytes(range(32))
    sig = signing.sign(PAIR.private, msg)
    assert signing.verify(PAIR.public, msg, sig)
    assert not signing.verify(PAIR.public, msg + b"x", sig)
    assert not signing.verify(PAIR.public, msg, sig[:63])
    assert not signing.verify(KeyPair.from_private(bytes(32)).public, msg, sig)


def test_identity_key_pair_round_trip_and_mismatch() -> None:
    data = m.encode_identity_key_pair(PAIR)
    assert m.decode_identity_key_pair(data) == PAIR
    other = KeyPair.from_private(bytes(range(1, 33)))
    bad = pb.IdentityKeyPairStructure(
        publicKey=other.public.serialize(), privateKey=PAIR.private.raw
    )
    with pytest.raises(MessageFormatError, match="does not match"):
        m.decode_identity_key_pair(bad.SerializeToString())
    with pytest.raises(MessageFormatError, match="lacks"):
        m.decode_identity_key_pair(
            pb.IdentityKeyPairStructure(publicKey=PAIR.public.serialize()).SerializeToString()
        )


def test_required_fields_enforced_after_parse() -> None:
    partial = pb.DeviceInit(
        masterEphemeralPubKey=PAIR.public.serialize()
    ).SerializePartialToString()
    with pytest.raises(MessageFormatError, match="required"):
        m.decode_device_init(partial)
    with pytest.raises(MessageFormatError, match="required"):
        m.decode_device_control(b"")


def test_truncated_protobuf_refused() -> None:
    full = m.encode_device_init(m.DeviceInitMessage(PAIR.public, b"x" * 80))
    for n in range(1, len(full)):
        with pytest.raises(MessageFormatError):
            m.decode_device_init(full[:n])


def test_device_control_round_trips() -> None:
    reg = m.DeviceControlMessage(m.ControlType.NEW_DEVICE_REGISTERED, new_device_id=2)
    assert m.decode_device_control(m.encode_device_control(reg)) == reg
    sent = m.DeviceControlMessage(
        m.ControlType.SENT_MESSAGE, sent=m.SentMessage("+15550002222", 1_700_000_000_000, "hi ☃")
    )
    assert m.decode_device_control(m.encode_device_control(sent)) == sent
    assert sent.to_json()["sent"]["body"] == "hi ☃"
    with pytest.raises(InvalidInputError):
        m.DeviceControlMessage(m.ControlType.SENT_MESSAGE)


def test_device_control_unknown_enum_refused() -> None:
    raw = b"\x08\x07"  # type = 7: not in the enum
    with pytest.raises(MessageFormatError):
        m.decode_device_control(raw)


def test_identity_key_bad_fields_refused() -> None:
    bad_number = pb.IdentityKey(
        identityKey=m.encode_identity_key_pair(PAIR),
        phoneNumber="12345",
        server="https://a.example",
        masterSupportsSms=False,
        provisioningCode=1,
    )
    with pytest.raises(MessageFormatError, match="invalid"):
        m.decode_identity_key(bad_number.SerializeToString())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_protobufs_raise_only_our_errors(data: bytes) -> None:
    for decode in (
        m.decode_device_init,
        m.decode_identity_key,
        m.decode_device_control,
        m.decode_identity_key_pair,
    ):
        try:
            decode(data)
        except ProvisionError:
            pass


@pytest.mark.parametrize("number", ["+15550001111", "+12345678", "+123456789012345"])
def test_phone_ok(number: str) -> None:
    assert parse_phone_number(number) == number


@pytest.mark.parametrize(
    "number",
    ["15550001111", "+1234567", "+1234567890123456", "+1 555 000", "", "+1555000111a", None],
)
def test_phone_refused(number: object) -> None:
    with pytest.raises(PhoneNumberError):
        parse_phone_number(number)


@pytest.mark.parametrize("text", ["AAA", "AA=A", "A===", "AB-_", "AAAA\n", 5, "AAAAB==="])
def test_strict_base64_refused(text: object) -> None:
    with pytest.raises(MessageFormatError):
        b64decode(text)


def test_liberal_base64() -> None:
    assert b64decode_liberal("-_8") == b"\xfb\xff"
    assert b64decode_liberal("+/8=") == b"\xfb\xff"
    with pytest.raises(MessageFormatError):
        b64decode_liberal("A")


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://Relay.Example.org:443/", "https://relay.example.org"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:80", "http://[::1]"),
    ],
)
def test_normalize(url: str, canonical: str) -> None:
    assert normalize_server_url(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.example",
        "https://",
        "https://u:p@a.example",
        "https://a.example/x",
        "https://a.example?q",
        "https://a.example:99999",
        "a.example",
        " https://a.example",
    ],
)
def test_normalize_refuses(url: str) -> None:
    with pytest.raises(InvalidInputError):
        normalize_server_url(url)


def test_check_trusted() -> None:
    assert check_trusted("https://A.example:443", ["https://a.example"]) == "https://a.example"
    with pytest.raises(UntrustedServerError):
        check_trusted("https://evil.example", ["https://a.example"])
    with pytest.raises(UntrustedServerError):
        check_trusted("http://a.example", ["https://a.example"])  # scheme matters
    with pytest.raises(UntrustedServerError):
        check_trusted("not a url", ["https://a.example"])
    with pytest.raises(UntrustedServerError):
        check_trusted("https://a.example", [])


def test_prekeys() -> None:
    spk = generate_signed_prekey(PAIR, 7)
    assert signing.verify(PAIR.public, spk.key_pair.public.serialize(), spk.signature)
    keys = generate_prekeys(0xFFFFFE - 1, 4)
    assert [k.key_id for k in keys] == [0xFFFFFD, 0xFFFFFE, 1, 2]
    assert len({k.key_pair.public for k in keys}) == 4
