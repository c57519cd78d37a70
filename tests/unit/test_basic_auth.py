"""The server's Basic-credentials parser over every malformed form (§4).

The cross-product of these forms with every endpoint used to run against live servers (19 × 5 ×
2 backends); the parser is one function, so each form is checked here once, with its exact
message, and tests/integration/test_bad_input.py keeps one form per endpoint per backend to show
each route answers a parser refusal with a JSON 401.
"""

from __future__ import annotations

import base64

import pytest

from textsecure_provision.errors import AuthError
from textsecure_provision.server.auth import MAX_PASSWORD_CHARS, parse_basic_auth


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


NEEDS = "this request needs Basic credentials"
NOT_BASIC = "the Authorization header must be Basic credentials"
NOT_B64 = "the Basic credentials are not valid base64 of UTF-8 text"
NO_PASSWORD = "the Basic credentials need a username and a password"
NOT_E164 = "the username must be an E.164 number, optionally with .deviceId"
BAD_DEVICE = "the device id in the username is not a positive integer"
TOO_LONG = "the Authorization header is too long"

AUTH_HEADERS: list[tuple[str, str]] = [
    ("", NEEDS),
    ("Basic", NOT_BASIC),
    ("Basic  x", NOT_B64),
    ("Bearer abc", NOT_BASIC),
    ("Basic !!!!", NOT_B64),
    ("Basic " + _b64("no-colon"), NO_PASSWORD),
    ("Basic " + _b64("+15550001111:"), NO_PASSWORD),
    ("Basic " + _b64(":password"), NOT_E164),
    ("Basic " + _b64("+15550001111.:pw"), BAD_DEVICE),
    ("Basic " + _b64("+15550001111.x:pw"), BAD_DEVICE),
    ("Basic " + _b64("+15550001111.0:pw"), BAD_DEVICE),
    ("Basic " + _b64("+15550001111.-1:pw"), BAD_DEVICE),
    ("Basic " + _b64("+15550001111.99999999999:pw"), BAD_DEVICE),
    ("Basic " + _b64("+15550001111.1.2:pw"), BAD_DEVICE),
    ("Basic " + _b64("15550001111:pw"), NOT_E164),
    ("Basic " + _b64("+15550001111:" + "p" * 5000), TOO_LONG),
    ("Basic " + base64.b64encode(b"+15550001111:\xff\xfe").decode(), NOT_B64),
    ("Basic " + _b64("+1555000111١:pw"), NOT_E164),  # a non-ASCII digit
    ("Basic " + "A" * 3000, TOO_LONG),
]


@pytest.mark.parametrize(("header", "message"), AUTH_HEADERS, ids=range(len(AUTH_HEADERS)))
def test_malformed_credentials_are_auth_errors(header: str, message: str) -> None:
    with pytest.raises(AuthError) as info:
        parse_basic_auth(header)
    assert info.value.message == message
    assert info.value.http_status == 401


def test_none_is_missing_credentials() -> None:
    with pytest.raises(AuthError, match=NEEDS):
        parse_basic_auth(None)


def test_a_long_password_inside_a_short_header_is_refused() -> None:
    # 1024 header characters hold ~760 decoded ones: the password limit is reached first.
    assert MAX_PASSWORD_CHARS < 700
    header = "Basic " + _b64("+15550001111:" + "p" * (MAX_PASSWORD_CHARS + 1))
    with pytest.raises(AuthError, match="the password is too long"):
        parse_basic_auth(header)


@pytest.mark.parametrize(
    ("user", "number", "device_id"),
    [("+15550001111", "+15550001111", None), ("+15550001111.7", "+15550001111", 7)],
)
def test_well_formed_credentials_parse(user: str, number: str, device_id: int | None) -> None:
    creds = parse_basic_auth("  basic " + _b64(f"{user}:pa:ss"))  # any case; ':' in the password
    assert (creds.number, creds.device_id, creds.password) == (number, device_id, "pa:ss")
    assert "pa:ss" not in repr(creds)


async def test_a_new_password_is_verified_without_a_second_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registration hashes the new password; the device's next request (its key upload, on
    the link's timed path) must not pay PBKDF2 again. A wrong password still does, and is
    refused."""
    from textsecure_provision.server import auth

    verifier = auth.PasswordVerifier()
    password = _b64("sixteen random bytes")
    stored = await verifier.hash(password)
    assert verifier.remembers(password, stored)
    assert not verifier.remembers(password + "x", stored)

    hashed: list[str] = []
    real = auth.verify_password_hash

    def counting(candidate: str, against: str) -> bool:
        hashed.append(candidate)
        return real(candidate, against)

    monkeypatch.setattr(auth, "verify_password_hash", counting)
    assert await verifier.verify(password, stored)
    assert hashed == []
    assert not await verifier.verify(password + "x", stored)
    assert hashed == [password + "x"]
    assert not verifier.remembers(password + "x", stored)
