"""The short-code endpoints (docs/protocol.md, "Links by short code"), as client calls.

Each call maps its statuses back to the errors the server raised: 404 a gone
nameplate, 409 a second claim, 410 a burned nameplate. ``fetch_short_codes``
reads ``GET /v1/capabilities``; a server without it (404) offers no codes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from textsecure_provision.errors import (
    ChannelGoneError,
    MessageFormatError,
    NameplateBurnedError,
    NameplateClaimedError,
    NameplateGoneError,
    NotFoundError,
    ShortCodesUnsupportedError,
)
from textsecure_provision.protocol.encoding import b64decode, b64encode
from textsecure_provision.transport.api import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, ApiClient

TOKEN_HEADER = "X-Nameplate-Token"  # noqa: S105 - a header name, not a secret
_ERRORS = {404: NameplateGoneError, 409: NameplateClaimedError, 410: NameplateBurnedError}


@dataclass(frozen=True)
class Ticket:
    """A nameplate and the token that speaks for one side of its mailbox."""

    nameplate: int
    token: bytes = field(repr=False)


@dataclass(frozen=True)
class Allocation:
    ticket: Ticket
    expires_in_s: int


@dataclass(frozen=True)
class Claimed:
    ticket: Ticket
    messages: list[bytes] = field(repr=False)


def _headers(ticket: Ticket) -> dict[str, str]:
    return {TOKEN_HEADER: b64encode(ticket.token)}


def _messages(doc: Any) -> list[bytes]:
    items = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise MessageFormatError("the server's nameplate messages are malformed")
    return [b64decode(m, name="a nameplate message") for m in items]


def _nameplate(doc: Any) -> int:
    value = doc.get("nameplate") if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999_999:
        raise MessageFormatError("the server's nameplate is not a number from 1 to 999999")
    return value


def _token(doc: Any) -> bytes:
    return b64decode(doc.get("token") if isinstance(doc, dict) else None, name="the token")


async def fetch_short_codes(api: ApiClient) -> bool:
    """Does the server offer links by short code? An older server (404) does not."""
    try:
        doc = await api.call(
            "GET", "/v1/capabilities", what="asking what the server offers", auth=False
        )
    except NotFoundError:
        return False
    return isinstance(doc, dict) and doc.get("shortCodes") is True


async def allocate_nameplate(api: ApiClient, channel_uuid: str) -> Allocation:
    """``POST /v1/nameplates`` for our open channel (no credentials: we have none yet)."""
    doc = await api.call(
        "POST",
        "/v1/nameplates",
        what="asking for a short code",
        auth=False,
        json={"channel": channel_uuid},
        errors={404: ChannelGoneError},
    )
    expires = doc.get("expiresIn") if isinstance(doc, dict) else None
    return Allocation(
        Ticket(_nameplate(doc), _token(doc)), expires if isinstance(expires, int) else 0
    )


async def claim_nameplate(api: ApiClient, nameplate: int) -> Claimed:
    """``PUT /v1/nameplates/{n}/claim`` as this account's device: the one attempt."""
    try:
        doc = await api.call(
            "PUT",
            f"/v1/nameplates/{nameplate}/claim",
            what="looking up the short code",
            errors=_ERRORS,
        )
    except NameplateGoneError:
        if not await fetch_short_codes(api):
            raise ShortCodesUnsupportedError(
                f"the server {api.base_url} does not offer links by short code"
            ) from None
        raise
    return Claimed(Ticket(nameplate, _token(doc)), _messages(doc))


async def send_nameplate_messages(api: ApiClient, ticket: Ticket, messages: list[bytes]) -> None:
    await api.call(
        "PUT",
        f"/v1/nameplates/{ticket.nameplate}/messages",
        what="sending the short-code exchange",
        auth=False,
        headers=_headers(ticket),
        json={"messages": [b64encode(m) for m in messages]},
        errors=_ERRORS,
    )


async def fetch_nameplate_messages(
    api: ApiClient, ticket: Ticket, after: int, wait_s: float
) -> list[bytes]:
    """The other side's messages from index ``after`` on; waits up to ``wait_s`` for one."""
    doc = await api.call(
        "GET",
        f"/v1/nameplates/{ticket.nameplate}/messages",
        what="waiting for the short-code exchange",
        auth=False,
        headers=_headers(ticket),
        params={"after": str(after), "wait": str(int(wait_s))},
        timeout=httpx.Timeout(READ_TIMEOUT_S + wait_s, connect=CONNECT_TIMEOUT_S),
        errors=_ERRORS,
    )
    return _messages(doc)


async def burn_nameplate(api: ApiClient, ticket: Ticket) -> None:
    """Tell the relay (and so the other side) that the key confirmation failed."""
    # Burned already, or gone with its channel: either way nobody can use it any more.
    with contextlib.suppress(NameplateBurnedError, NameplateGoneError):
        await api.call(
            "POST",
            f"/v1/nameplates/{ticket.nameplate}/burn",
            what="burning the short code",
            auth=False,
            headers=_headers(ticket),
            errors=_ERRORS,
        )
