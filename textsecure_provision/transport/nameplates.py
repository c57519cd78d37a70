"""The short-code endpoints (docs/protocol.md, "Links by short code"), as client calls.

Each call maps its statuses back to the errors the server raised: 404 a gone
nameplate, 409 a second claim, 410 a burned nameplate. ``fetch_short_codes``
reads ``GET /v1/capabilities``; a server without it (404) offers no codes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from textsecure_provision.errors import (
    ChannelGoneError,
    NameplateBurnedError,
    NameplateClaimedError,
    NameplateGoneError,
    NotFoundError,
    ShortCodesUnsupportedError,
)
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.encoding import b64encode
from textsecure_provision.transport.api import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, ApiClient
from textsecure_provision.transport.lean_httpx import httpx

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


async def fetch_short_codes(api: ApiClient) -> bool:
    """Does the server offer links by short code? An older server (404) does not."""
    try:
        answer = await api.call(
            "GET",
            "/v1/capabilities",
            what="asking what the server offers",
            auth=False,
            answer=bodies.Capabilities,
        )
    except NotFoundError:
        return False
    return answer.short_codes


async def allocate_nameplate(api: ApiClient, channel_uuid: str) -> Allocation:
    """``POST /v1/nameplates`` for our open channel (no credentials: we have none yet)."""
    got = await api.call(
        "POST",
        "/v1/nameplates",
        what="asking for a short code",
        auth=False,
        body=bodies.NameplateRequest(channel=channel_uuid),
        answer=bodies.Nameplate,
        errors={404: ChannelGoneError},
    )
    return Allocation(Ticket(got.nameplate, got.token), got.expires_in)


async def claim_nameplate(api: ApiClient, nameplate: int) -> Claimed:
    """``PUT /v1/nameplates/{n}/claim`` as this account's device: the one attempt."""
    try:
        claimed = await api.call(
            "PUT",
            f"/v1/nameplates/{nameplate}/claim",
            what="looking up the short code",
            answer=bodies.NameplateClaim,
            errors=_ERRORS,
        )
    except NameplateGoneError:
        if not await fetch_short_codes(api):
            raise ShortCodesUnsupportedError(
                f"the server {api.base_url} does not offer links by short code"
            ) from None
        raise
    return Claimed(Ticket(nameplate, claimed.token), list(claimed.messages))


async def send_nameplate_messages(api: ApiClient, ticket: Ticket, messages: list[bytes]) -> None:
    await api.call(
        "PUT",
        f"/v1/nameplates/{ticket.nameplate}/messages",
        what="sending the short-code exchange",
        auth=False,
        headers=_headers(ticket),
        body=bodies.MailboxPost(messages=list(messages)),
        errors=_ERRORS,
    )


async def fetch_nameplate_messages(
    api: ApiClient, ticket: Ticket, after: int, wait_s: float
) -> list[bytes]:
    """The other side's messages from index ``after`` on; waits up to ``wait_s`` for one."""
    answer = await api.call(
        "GET",
        f"/v1/nameplates/{ticket.nameplate}/messages",
        what="waiting for the short-code exchange",
        auth=False,
        headers=_headers(ticket),
        params={"after": str(after), "wait": str(int(wait_s))},
        timeout=httpx.Timeout(READ_TIMEOUT_S + wait_s, connect=CONNECT_TIMEOUT_S),
        answer=bodies.MailboxMessages,
        errors=_ERRORS,
    )
    return list(answer.messages)


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
