"""transport/nameplates.py against servers that cannot run here.

An *older* server (one without the short-code routes) is not part of this
project, so it is emulated with ``httpx.MockTransport``: it answers 404 on every
path it does not know, as the project's own server did before short codes. A
hostile relay's malformed answers are emulated the same way.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from textsecure_provision.errors import (
    NameplateBurnedError,
    NameplateClaimedError,
    NameplateGoneError,
    RemoteProtocolError,
    ShortCodesUnsupportedError,
)
from textsecure_provision.transport.api import ApiClient, Credentials
from textsecure_provision.transport.nameplates import (
    Ticket,
    allocate_nameplate,
    claim_nameplate,
    fetch_nameplate_messages,
    fetch_short_codes,
)

CREDS = Credentials("+15550001111", "secret-password-123")


def client(handler: Any) -> ApiClient:
    return ApiClient("https://relay.example.org", CREDS, transport=httpx.MockTransport(handler))


def old_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"error": "no such endpoint", "code": 404})


async def test_an_older_server_offers_no_codes_and_says_so() -> None:
    async with client(old_server) as api:
        assert await fetch_short_codes(api) is False
        with pytest.raises(ShortCodesUnsupportedError) as err:
            await claim_nameplate(api, 7)
    assert err.value.message == (
        "the server https://relay.example.org does not offer links by short code"
    )
    assert err.value.exit_code == 7


async def test_a_gone_nameplate_on_a_new_server_is_gone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json={"shortCodes": True})
        return httpx.Response(404, json={"error": "no open short code", "code": 404})

    async with client(handler) as api:
        with pytest.raises(NameplateGoneError):
            await claim_nameplate(api, 7)


@pytest.mark.parametrize(
    ("status", "error"), [(409, NameplateClaimedError), (410, NameplateBurnedError)]
)
async def test_claim_statuses(status: int, error: type[Exception]) -> None:
    async with client(lambda r: httpx.Response(status, json={"error": "x", "code": status})) as api:
        with pytest.raises(error):
            await claim_nameplate(api, 7)


@pytest.mark.parametrize(
    "answer",
    [
        {"nameplate": 0, "token": "AAAA", "expiresIn": 1},
        {"nameplate": True, "token": "AAAA", "expiresIn": 1},
        {"nameplate": 1_000_000, "token": "AAAA", "expiresIn": 1},
        {"nameplate": 3, "token": "not base64!", "expiresIn": 1},
        {"nameplate": 3},
        [],
    ],
)
async def test_malformed_allocations_are_refused(answer: Any) -> None:
    async with client(lambda r: httpx.Response(200, content=json.dumps(answer))) as api:
        with pytest.raises(RemoteProtocolError):  # the server's fault, not the user's
            await allocate_nameplate(api, "9f1c2c57-6a3e-4b8e-9d4f-0b6f8f2d1a77")


@pytest.mark.parametrize("answer", [{"messages": "x"}, {"messages": [1]}, {"messages": ["%%"]}, {}])
async def test_malformed_mailbox_answers_are_refused(answer: Any) -> None:
    async with client(lambda r: httpx.Response(200, json=answer)) as api:
        with pytest.raises(RemoteProtocolError):  # the server's fault, not the user's
            await fetch_nameplate_messages(api, Ticket(3, bytes(32)), 0, 0)


async def test_the_token_travels_in_its_header_only() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": [], "claimed": False})

    async with client(handler) as api:
        await fetch_nameplate_messages(api, Ticket(3, b"\x01" * 32), 2, 5)
    (request,) = seen
    assert request.headers["x-nameplate-token"] == "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    assert "authorization" not in request.headers  # the mailbox needs no account password
    assert "AQEB" not in str(request.url)
    assert dict(request.url.params) == {"after": "2", "wait": "5"}
