"""The QR link (§3): build strictly, parse liberally, refuse the rest naming what is wrong."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textsecure_provision.crypto.keys import KeyPair, PublicKey
from textsecure_provision.errors import LinkError, ProvisionError
from textsecure_provision.protocol.link import ProvisioningLink, build_link, parse_link

KEY = KeyPair.from_private(bytes(range(32))).public
UUID = "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"
GOOD = build_link(ProvisioningLink(UUID, "https://relay.example.org", KEY))


def with_params(**params: str) -> str:
    return "textsecure-device-init:/?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_percent_encoding_of_key_and_server() -> None:
    assert "channel_server=https%3A%2F%2Frelay.example.org" in GOOD
    assert "+" not in GOOD.split("publicKey=")[1]
    assert "/" not in GOOD.split("publicKey=")[1]


@settings(max_examples=100, deadline=None)
@given(
    u=st.uuids(),
    priv=st.binary(min_size=32, max_size=32),
    host=st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    scheme=st.sampled_from(["http", "https"]),
)
def test_parse_build_round_trip(
    u: uuid.UUID, priv: bytes, host: str, port: int | None, scheme: str
) -> None:
    server = f"{scheme}://{host}" + (f":{port}" if port else "")
    link = ProvisioningLink(str(u), server, KeyPair.from_private(priv).public)
    assert parse_link(build_link(link)) == link


def test_liberal_forms_accepted() -> None:
    import base64

    raw = KEY.serialize()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    link = parse_link(
        with_params(
            channel_uuid=UUID.upper(),
            channel_server="https://relay.example.org",
            publicKey=urlsafe,
            extra="ignored",
        )
    )
    assert link.public_key == KEY
    assert link.channel_uuid == UUID
    plain = base64.b64encode(raw).decode()  # '+' and '/' unencoded: '+' must not become a space
    assert (
        parse_link(
            with_params(
                channel_uuid=UUID, channel_server="https%3A%2F%2Frelay.example.org", publicKey=plain
            )
        ).public_key
        == KEY
    )


def test_server_is_canonicalised() -> None:
    link = parse_link(
        GOOD.replace("https%3A%2F%2Frelay.example.org", "HTTPS%3A%2F%2FRelay.Example.ORG%3A443%2F")
    )
    assert link.channel_server == "https://relay.example.org"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("https://example.org/?channel_uuid=x", "must start with"),
        ("otherscheme:/?channel_uuid=" + UUID, "must start with"),
        ("textsecure-device-init:/", "no parameters"),
        (GOOD.replace("channel_uuid=", "channel_uid="), "channel_uuid is missing"),
        (GOOD + "&publicKey=AAAA", "more than once"),
        (GOOD.replace(UUID, "not-a-uuid"), "uuid"),
        (GOOD.replace(UUID, UUID.replace("-", "")), "uuid"),
        (GOOD.replace("https%3A%2F%2F", "ftp%3A%2F%2F"), "http"),
        (GOOD.replace("relay.example.org", "relay.example.org%2Fpath"), "no path"),
        (GOOD.replace("https%3A%2F%2Frelay.example.org", ""), "channel_server is missing"),
        (GOOD.split("&publicKey=")[0] + "&publicKey=!!!", "base64"),
        (GOOD.split("&publicKey=")[0] + "&publicKey=" + "A" * 40, "33 bytes"),
        (GOOD.split("&publicKey=")[0] + "&publicKey=" + "A" * 44, "type byte"),
        (GOOD.split("&publicKey=")[0] + "&publicKey=%FF%FE", "UTF-8"),
        (GOOD + "&pad=" + "x" * 3000, "too long"),
    ],
)
def test_refusals_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(LinkError, match=needle):
        parse_link(text)


def test_invalid_link_cannot_be_built() -> None:
    with pytest.raises(LinkError):
        ProvisioningLink("nope", "https://a.example", KEY)
    with pytest.raises(LinkError):
        ProvisioningLink(UUID, "file:///etc/passwd", KEY)
    with pytest.raises(TypeError):
        ProvisioningLink(UUID, "https://a.example", KEY.serialize())  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_garbage_raises_only_link_error(text: str) -> None:
    try:
        parse_link(text)
    except LinkError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=80))
def test_garbage_in_each_parameter_raises_only_our_errors(value: str) -> None:
    for name in ("channel_uuid", "channel_server", "publicKey"):
        params = {
            "channel_uuid": UUID,
            "channel_server": "https%3A%2F%2Fa.example",
            "publicKey": "BQ" + "A" * 42,
        }
        params[name] = value.replace("&", "")
        try:
            parse_link(with_params(**params))
        except ProvisionError:
            pass


def test_public_key_type() -> None:
    assert isinstance(parse_link(GOOD).public_key, PublicKey)
