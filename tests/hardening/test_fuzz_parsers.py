"""Property fuzzing of every parser of the core and the client, structure-aware.

tests/unit already throws random text at the link and random bytes at the protobufs and the
envelope. Random bytes never get past a protobuf tag or a MAC, so this file goes further:

* mutations of *valid* inputs (a link, each protobuf), which reach the deep checks;
* protobufs hand-encoded field by field (any field missing, repeated, reordered, of the
  wrong wire type, strings that are not UTF-8, unknown fields), which the generated code
  cannot even produce;
* plaintexts sealed in a *valid* envelope (right key, right MAC), so that the code after
  the MAC (padding, IdentityKey parsing, the pair check, the trust check) meets garbage;
* properties stronger than "no crash": an accepted link is a fixed point of build∘parse,
  a decoded value is always valid, canonical URLs mean the same host to httpx.

Each property may raise only the error it documents (LinkError, MessageFormatError,
SessionError, StoreError, ...): any other exception is a crash of the CLI (exit 1).
"""

from __future__ import annotations

import base64
import json
import string
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from textsecure_provision.crypto import envelope
from textsecure_provision.crypto.keys import KeyPair, PrivateKey, PublicKey
from textsecure_provision.errors import (
    AuthError,
    BadMessageError,
    InvalidInputError,
    KeyFormatError,
    LinkError,
    MessageFormatError,
    PhoneNumberError,
    SessionError,
    StoreError,
    UntrustedServerError,
)
from textsecure_provision.protocol import messages as m
from textsecure_provision.protocol.encoding import (
    b64decode,
    b64decode_liberal,
    b64encode,
    parse_phone_number,
)
from textsecure_provision.protocol.link import (
    ProvisioningLink,
    build_link,
    parse_channel_id,
    parse_link,
)
from textsecure_provision.protocol.prekeys import generate_prekeys, generate_signed_prekey
from textsecure_provision.protocol.provisioning import SecondaryLink, open_device_init
from textsecure_provision.protocol.session import wire
from textsecure_provision.protocol.trust import check_trusted, normalize_server_url
from textsecure_provision.server.auth import check_new_password, parse_basic_auth
from textsecure_provision.store.record import DeviceRecord, decode_record, encode_record

from .support import fuzz

pytestmark = pytest.mark.fuzz

KEY = KeyPair.from_private(bytes(range(32)))
SECONDARY = KeyPair.from_private(bytes(range(1, 33)))
SERVER = "https://relay.example.org"
NUMBER = "+15550001111"
UUID = "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"
GOOD_LINK = build_link(ProvisioningLink(UUID, SERVER, KEY.public))
URL_CHARS = string.ascii_letters + string.digits + "%:/?&=#+-_.~[]@!$'()*,; \t\\\x00\u00e9"


# -- a tiny protobuf wire encoder (so fields can be anything, not what the schema allows) -----


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def pb_message(fields: list[tuple[int, int | bytes]]) -> bytes:
    return b"".join(pb_field(n, v) for n, v in fields)


any_varint = st.one_of(st.integers(0, 3), st.integers(0, 2**32 + 5), st.integers(0, 2**64 - 1))


def text_or_bytes(valid: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A string field's bytes: a valid value, any UTF-8 text, or bytes that are not UTF-8."""
    return st.one_of(
        valid.map(str.encode),
        st.text(max_size=40).map(str.encode),
        st.binary(max_size=40),
        st.just(b"\xff\xfe"),
    )


@st.composite
def shuffled_fields(
    draw: st.DrawFn, fields: dict[int, st.SearchStrategy[int | bytes]]
) -> list[tuple[int, int | bytes]]:
    """Each known field absent, once, or twice, in any order, plus unknown fields."""
    out: list[tuple[int, int | bytes]] = []
    for number, strategy in fields.items():
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            out.append((number, draw(strategy)))
    out += draw(
        st.lists(
            st.tuples(st.integers(6, 40), st.one_of(any_varint, st.binary(max_size=8))),
            max_size=2,
        )
    )
    return draw(st.permutations(out))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flip a bit, 1 insert, 2 delete, 3 truncate."""
    buf = bytearray(data)
    for kind, pos, value in edits:
        if kind == 1:
            buf.insert(pos % (len(buf) + 1), value)
            continue
        if not buf:
            continue
        i = pos % len(buf)
        if kind == 0:
            buf[i] ^= 1 << (value % 8)
        elif kind == 2:
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6
)


# -- the link (§3) --------------------------------------------------------------------------


@st.composite
def link_variants(draw: st.DrawFn) -> tuple[str, ProvisioningLink]:
    """Every spelling a parser must accept for one link (§3: liberal reading)."""
    u = draw(st.uuids())
    pair = KeyPair.from_private(draw(st.binary(min_size=32, max_size=32)))
    host = draw(st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z]{2,4}){1,2}", fullmatch=True))
    scheme = draw(st.sampled_from(["http", "https"]))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    canonical_server = normalize_server_url(f"{scheme}://{host}" + (f":{port}" if port else ""))
    expected = ProvisioningLink(str(u), canonical_server, pair.public)

    default = {"http": 80, "https": 443}[scheme]
    shown_port = port if port else draw(st.sampled_from(["", default]))
    server = (
        draw(st.sampled_from([scheme, scheme.upper()]))
        + "://"
        + draw(st.sampled_from([host, host.upper()]))
        + (f":{shown_port}" if shown_port != "" else "")
        + draw(st.sampled_from(["", "/"]))
    )
    raw = pair.public.serialize()
    key = draw(
        st.sampled_from(
            [
                base64.b64encode(raw).decode(),
                base64.b64encode(raw).decode().rstrip("="),
                base64.urlsafe_b64encode(raw).decode(),
                base64.urlsafe_b64encode(raw).decode().rstrip("="),
            ]
        )
    )
    params = [
        ("channel_uuid", draw(st.sampled_from([str(u), str(u).upper()]))),
        ("channel_server", quote(server, safe="") if draw(st.booleans()) else server),
        ("publicKey", quote(key, safe="") if draw(st.booleans()) else key),
    ]
    params += draw(  # unknown parameters are ignored (§3); none of the three names
        st.lists(
            st.tuples(st.from_regex(r"x[a-z]{0,5}", fullmatch=True), st.text("abc123%", max_size=5)),
            max_size=2,
        )
    )
    params = draw(st.permutations(params))
    scheme_text = draw(st.sampled_from(["textsecure-device-init", "TEXTSECURE-DEVICE-INIT"]))
    text = f"{scheme_text}:/?" + "&".join(f"{k}={v}" for k, v in params)
    return text, expected


@fuzz(60)
@given(link_variants())
def test_every_liberal_spelling_parses_to_the_same_link(case: tuple[str, ProvisioningLink]) -> None:
    text, expected = case
    assert parse_link(text) == expected


@fuzz(100)
@given(edits)
def test_mutated_links_are_refused_or_canonical_fixed_points(e: list[tuple[int, int, int]]) -> None:
    text = mutate(GOOD_LINK.encode(), e).decode("latin-1")
    try:
        link = parse_link(text)
    except LinkError:
        return
    # Whatever was accepted is valid, canonical, and survives a strict rebuild unchanged.
    assert parse_link(build_link(link)) == link
    assert link.channel_uuid == str(uuid.UUID(link.channel_uuid))
    assert link.channel_server == normalize_server_url(link.channel_server)
    assert len(link.public_key.serialize()) == 33


@fuzz(80)
@given(st.text(alphabet=URL_CHARS, max_size=60))
def test_mutated_channel_server_is_refused_or_canonical(server: str) -> None:
    text = GOOD_LINK.replace(quote(SERVER, safe=""), quote(server, safe=""))
    try:
        link = parse_link(text)
    except LinkError:
        return
    assert link.channel_server == normalize_server_url(link.channel_server)


@fuzz(80)
@given(st.one_of(st.uuids().map(str), st.text(alphabet="0123456789abcdefABCDEF-x ", max_size=40)))
def test_channel_ids(text: str) -> None:
    try:
        got = parse_channel_id(text)
    except LinkError:
        return
    assert got == str(uuid.UUID(text))


# -- server URLs and the trust check (§3, §8) ------------------------------------------------


@fuzz(100)
@given(st.text(alphabet=URL_CHARS, max_size=50).map(lambda s: "http" + s))
@example("http://evil.example\\@trusted.example")
@example("http://trusted.example#@evil.example")
@example("http://[::1]:8080")
@example("http://a.example:0080/")
def test_canonical_urls_are_fixed_points_and_name_the_same_host_for_httpx(url: str) -> None:
    try:
        canonical = normalize_server_url(url)
    except InvalidInputError:
        return
    assert normalize_server_url(canonical) == canonical
    # The string compared against the trusted list must designate the host httpx connects to.
    try:
        parsed = httpx.URL(canonical)
    except httpx.InvalidURL:
        return  # httpx cannot even connect there: nothing is sent
    from urllib.parse import urlsplit

    expected = urlsplit(canonical)
    assert parsed.host == (expected.hostname or "").strip("[]")
    assert (parsed.port or {"http": 80, "https": 443}[parsed.scheme]) == (
        expected.port or {"http": 80, "https": 443}[expected.scheme]
    )


@fuzz(80)
@given(st.text(alphabet=URL_CHARS, max_size=40).map(lambda s: "https://" + s))
def test_only_the_trusted_server_is_trusted(url: str) -> None:
    try:
        got = check_trusted(url, [SERVER])
    except UntrustedServerError:
        return
    assert got == SERVER


# -- base64, keys and numbers (§2) -------------------------------------------------------------


@fuzz(100)
@given(st.one_of(st.binary(max_size=64).map(b64encode), st.text("ABab+/=-_0 \n", max_size=16)))
def test_strict_base64(text: str) -> None:
    try:
        data = b64decode(text)
    except MessageFormatError:
        return
    # Accepted text is standard padded base64 of those bytes (up to unused low bits).
    assert len(text) % 4 == 0 and not set(text) - set(string.ascii_letters + string.digits + "+/=")
    assert b64decode(b64encode(data)) == data and len(b64encode(data)) == len(text)


@fuzz(100)
@given(st.binary(max_size=48), st.sampled_from(["std", "url", "std-nopad", "url-nopad"]))
def test_liberal_base64_reads_every_spelling(data: bytes, form: str) -> None:
    text = (base64.urlsafe_b64encode if form.startswith("url") else base64.b64encode)(data).decode()
    if form.endswith("nopad"):
        text = text.rstrip("=")
    assert b64decode_liberal(text) == data


@fuzz(80)
@given(st.text(max_size=20))
def test_liberal_base64_refuses_cleanly(text: str) -> None:
    try:
        b64decode_liberal(text)
    except MessageFormatError:
        pass


@fuzz(100)
@given(st.binary(max_size=40))
def test_public_keys_are_exactly_33_bytes_type_5(data: bytes) -> None:
    try:
        key = PublicKey.from_bytes(data)
    except KeyFormatError:
        assert len(data) != 33 or data[0] != 5
        return
    assert key.serialize() == data


@fuzz(100)
@given(st.binary(max_size=40))
def test_private_keys_are_exactly_32_bytes(data: bytes) -> None:
    try:
        key = PrivateKey.from_bytes(data)
    except KeyFormatError:
        assert len(data) != 32
        return
    assert len(key.public_key().serialize()) == 33


@fuzz(100)
@given(st.one_of(st.from_regex(r"\+[0-9]{8,15}", fullmatch=True), st.text(max_size=20)))
def test_phone_numbers(text: str) -> None:
    try:
        number = parse_phone_number(text)
    except PhoneNumberError:
        return
    assert number == text and text.isascii() and text[1:].isdigit() and 8 <= len(text) - 1 <= 15


# -- Basic auth (§4) ---------------------------------------------------------------------------


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


auth_headers = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=60).map(basic),
    st.text(max_size=60).map(lambda s: basic(s.encode("utf-8", "surrogatepass"))),
    st.tuples(
        st.sampled_from(["+15550001111", "+1555000111", "+١٢٣٤٥٦٧٨٩", "15550001111", ""]),
        st.sampled_from(["", ".1", ".2", ".0", ".01", ".-1", ".2147483648", ".٣", ". 2", ".2.3"]),
        st.text(max_size=300),
    ).map(lambda t: basic(f"{t[0]}{t[1]}:{t[2]}".encode("utf-8", "surrogatepass"))),
    st.text(alphabet="Bbasic ", max_size=10).map(lambda s: s + "x"),
    st.integers(1000, 20_000).map(lambda n: basic(b"+15550001111:" + b"A" * n)),
)


@fuzz(150)
@given(auth_headers)
@example("Basic " + base64.b64encode("+15550001111:pässwörd".encode()).decode())
@example("bAsIc " + base64.b64encode(b"+15550001111.7:x").decode())
def test_basic_auth_header(header: str) -> None:
    try:
        creds = parse_basic_auth(header)
    except AuthError:
        return
    assert parse_phone_number(creds.number) == creds.number
    assert creds.device_id is None or 1 <= creds.device_id <= 2**31 - 1
    assert 0 < len(creds.password) <= 256 and len(header) <= 1024


@fuzz(60)
@given(
    st.from_regex(r"\+[0-9]{8,15}", fullmatch=True),
    st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    st.text(min_size=1, max_size=100),
)
def test_basic_auth_round_trip(number: str, device: int | None, password: str) -> None:
    user = number if device is None else f"{number}.{device}"
    raw = f"{user}:{password}".encode("utf-8", "surrogatepass")
    assume(len(basic(raw)) <= 1024)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    creds = parse_basic_auth(basic(raw))
    assert (creds.number, creds.device_id, creds.password) == (number, device, password)


@fuzz(80)
@given(st.one_of(st.binary(max_size=40).map(b64encode), st.text(max_size=40)))
def test_new_passwords(text: str) -> None:
    try:
        check_new_password(text)
    except InvalidInputError:
        return
    assert len(b64decode_liberal(text)) >= 16


# -- protobufs (§6), field by field ------------------------------------------------------------

PAIR_BYTES = m.encode_identity_key_pair(KEY)

identity_key_pair_fields = shuffled_fields(
    {
        1: st.one_of(st.just(KEY.public.serialize()), st.binary(max_size=40)),
        2: st.one_of(st.just(KEY.private.serialize()), st.binary(max_size=40)),
    }
)

identity_key_fields = shuffled_fields(
    {
        1: st.one_of(st.just(PAIR_BYTES), identity_key_pair_fields.map(pb_message)),
        2: text_or_bytes(st.just(NUMBER)),
        3: text_or_bytes(st.sampled_from([SERVER, "HTTPS://Relay.Example.ORG:443", "http://x"])),
        4: any_varint,
        5: st.one_of(any_varint, st.binary(max_size=4)),
    }
)


def valid_payload(payload: m.IdentityKeyPayload) -> None:
    assert isinstance(payload.phone_number, str) and parse_phone_number(payload.phone_number)
    assert isinstance(payload.server, str)
    assert 0 <= payload.provisioning_code <= 0xFFFFFFFF
    assert isinstance(payload.master_supports_sms, bool)
    assert len(payload.identity_key_pair.public.serialize()) == 33
    assert len(payload.identity_key_pair.private.serialize()) == 32


@fuzz(100)
@given(identity_key_pair_fields)
def test_identity_key_pair_structure(fields: list[tuple[int, int | bytes]]) -> None:
    try:
        pair = m.decode_identity_key_pair(pb_message(fields))
    except MessageFormatError:
        return
    assert pair.private.public_key() == pair.public


@fuzz(100)
@given(identity_key_fields)
def test_identity_key_message(fields: list[tuple[int, int | bytes]]) -> None:
    try:
        payload = m.decode_identity_key(pb_message(fields))
    except MessageFormatError:
        return
    valid_payload(payload)


VALID_IDENTITY_KEY = m.encode_identity_key(
    m.IdentityKeyPayload(KEY, NUMBER, SERVER, master_supports_sms=False, provisioning_code=123456789)
)


@fuzz(100)
@given(edits)
def test_mutated_identity_key_message(e: list[tuple[int, int, int]]) -> None:
    try:
        payload = m.decode_identity_key(mutate(VALID_IDENTITY_KEY, e))
    except MessageFormatError:
        return
    valid_payload(payload)


device_control_fields = shuffled_fields(
    {
        1: any_varint,
        2: any_varint,
        3: shuffled_fields(
            {
                1: text_or_bytes(st.just("+15550002222")),
                2: any_varint,
                3: shuffled_fields({1: text_or_bytes(st.text(max_size=20))}).map(pb_message),
            }
        ).map(pb_message),
    }
)


@fuzz(100)
@given(device_control_fields)
@example([(1, 2), (3, pb_message([(1, b"+15550002222"), (2, 1), (3, pb_message([(1, b"\xff")]))]))])
@example([(1, 2), (3, pb_message([(1, b"\xfe\xff"), (2, 1), (3, b"")]))])
def test_device_control_message(fields: list[tuple[int, int | bytes]]) -> None:
    try:
        msg = m.decode_device_control(pb_message(fields))
    except MessageFormatError:
        return
    assert msg.type in tuple(m.ControlType)
    if msg.sent is not None:
        assert isinstance(msg.sent.other_number, str) and isinstance(msg.sent.body, str)
    json.dumps(msg.to_json())  # `provision receive --json` prints it


device_init_fields = shuffled_fields(
    {
        1: st.one_of(st.just(KEY.public.serialize()), st.binary(max_size=40)),
        2: st.binary(max_size=120),
    }
)


@fuzz(100)
@given(device_init_fields)
def test_device_init_message(fields: list[tuple[int, int | bytes]]) -> None:
    try:
        msg = m.decode_device_init(pb_message(fields))
    except MessageFormatError:
        return
    assert len(msg.master_ephemeral.serialize()) == 33


# -- the DeviceInit envelope (§5), past the MAC --------------------------------------------


def seal_plaintext(plaintext: bytes) -> bytes:
    sealed = envelope.seal(plaintext, SECONDARY.public)
    return m.encode_device_init(
        m.DeviceInitMessage(sealed.master_ephemeral, sealed.identity_key_message)
    )


@fuzz(80)
@given(st.one_of(identity_key_fields.map(pb_message), st.binary(max_size=200)))
def test_authentic_envelope_with_garbage_inside(plaintext: bytes) -> None:
    """The MAC passes (the sender holds the right key), so the IdentityKey parser and the
    checks after it are what stands between garbage and a registration."""
    link = SecondaryLink(SECONDARY, (SERVER,))
    try:
        opened = link.receive(seal_plaintext(plaintext))
    except (MessageFormatError, BadMessageError, UntrustedServerError):
        assert link.state.name == "FAILED"
        return
    valid_payload(opened.payload)
    assert normalize_server_url(opened.payload.server) == SERVER
    kp = opened.payload.identity_key_pair
    assert kp.private.public_key() == kp.public


@fuzz(80)
@given(edits)
def test_mutated_device_init_never_opens(e: list[tuple[int, int, int]]) -> None:
    good = seal_plaintext(VALID_IDENTITY_KEY)
    data = mutate(good, e)
    assume(data != good)
    try:
        opened = open_device_init(data, SECONDARY)
    except (MessageFormatError, BadMessageError):
        return
    # Only a change the MAC does not cover may pass: protobuf re-encodings of the same fields.
    assert m.encode_identity_key(opened.payload) == VALID_IDENTITY_KEY


# -- session messages (§7) ------------------------------------------------------------------

_IDENTITY = KeyPair.generate()


def _valid_whisper() -> bytes:
    ratchet = KeyPair.generate().public
    while ratchet.raw[-1] & 0x80:
        ratchet = KeyPair.generate().public
    return wire.encode_whisper_message(
        mac_key=b"k" * 32,
        sender_identity=_IDENTITY.public,
        receiver_identity=_IDENTITY.public,
        ratchet_key=ratchet,
        counter=3,
        previous_counter=2,
        ciphertext=b"c" * 32,
    )


@fuzz(100)
@given(edits)
def test_mutated_whisper_messages(e: list[tuple[int, int, int]]) -> None:
    data = mutate(_valid_whisper(), e)
    try:
        msg = wire.decode_whisper_message(data)
    except SessionError:
        return
    assert len(msg.ratchet_key.serialize()) == 33 and msg.serialized == data


@fuzz(100)
@given(
    shuffled_fields(
        {
            1: any_varint,
            2: st.one_of(st.just(_IDENTITY.public.serialize()), st.binary(max_size=40)),
            3: st.one_of(st.just(_IDENTITY.public.serialize()), st.binary(max_size=40)),
            4: st.binary(max_size=60).map(lambda b: b"\x33" + b),
            5: any_varint,
            6: any_varint,
        }
    ),
    st.sampled_from([b"\x33", b"\x23", b""]),
)
def test_prekey_whisper_messages(fields: list[tuple[int, int | bytes]], version: bytes) -> None:
    try:
        msg = wire.decode_prekey_whisper_message(version + pb_message(fields))
    except SessionError:
        return
    assert len(msg.identity_key.serialize()) == 33 and len(msg.base_key.serialize()) == 33


# -- the data folder's files ------------------------------------------------------------------


def _record() -> DeviceRecord:
    identity = KeyPair.generate()
    return DeviceRecord(
        number=NUMBER,
        device_id=2,
        password=b64encode(bytes(18)),
        server=SERVER,
        registration_id=7,
        identity=identity,
        signed_prekey=generate_signed_prekey(identity, 1),
        prekeys=tuple(generate_prekeys(1, 2)),
        trusted_servers=(SERVER,),
        created_ms=1,
    )


RECORD_DOC = json.loads(encode_record(_record()))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


RECORD_PATHS = _paths(RECORD_DOC)[1:]


@fuzz(100)
@given(
    st.lists(
        st.tuples(st.sampled_from(RECORD_PATHS), st.one_of(st.just("<delete>"), json_values)),
        min_size=1,
        max_size=3,
    )
)
def test_corrupt_device_record_is_a_store_error(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc = json.loads(json.dumps(RECORD_DOC))
    for path, value in changes:
        target = doc
        try:
            for step in path[:-1]:
                target = target[step]
            if value == "<delete>":
                del target[path[-1]]
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        record = decode_record(json.dumps(doc).encode())
    except StoreError:
        return
    assert parse_phone_number(record.number) == record.number
    assert record.identity.private.public_key() == record.identity.public


@fuzz(80)
@given(st.binary(max_size=200))
@example(b"[" * 100_000)
@example(b'{"version": 1e999}')
def test_garbage_device_record_is_a_store_error(data: bytes) -> None:
    with pytest.raises(StoreError):
        decode_record(data)

