"""Links by short code (docs/protocol.md, "Links by short code"): capability and nameplates.

``GET /v1/capabilities`` tells a client whether this server offers short codes
(an older server answers 404 there, which means no). The nameplate routes
parse and call ``server/nameplates/service.py``; the mailbox's two sides are
told apart by the ``X-Nameplate-Token`` header (the secondary's from
allocating, the master's from claiming).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import (
    AuthError,
    InvalidInputError,
    MessageFormatError,
    ProvisionError,
    TooLargeError,
)
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.encoding import b64decode, b64encode
from textsecure_provision.protocol.link import parse_channel_id
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.nameplates.base import MAX_MESSAGE_BYTES, MAX_MESSAGES_PER_SIDE
from textsecure_provision.server.nameplates.service import TOKEN_BYTES, Nameplates
from textsecure_provision.server.services import authenticate, client_address, services
from textsecure_provision.server.validation import parse_wait, read_body

TOKEN_HEADER = "x-nameplate-token"  # noqa: S105 - a header name, not a secret
MAX_NAMEPLATE_DIGITS = 6  # protocol/shortcode.py: MAX_NAMEPLATE = 999 999


def nameplates(request: Request) -> Nameplates:
    np: Nameplates = request.app.state.nameplates
    return np


def parse_nameplate(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > MAX_NAMEPLATE_DIGITS:
        raise InvalidInputError("a nameplate is a number from 1 to 999999")
    value = int(text)
    if value < 1:
        raise InvalidInputError("a nameplate is a number from 1 to 999999")
    return value


def _token(request: Request) -> bytes:
    value = request.headers.get(TOKEN_HEADER)
    if not value:
        raise AuthError("this needs the X-Nameplate-Token header")
    try:
        token = b64decode(value, name="X-Nameplate-Token")
    except ProvisionError:
        raise AuthError("wrong or missing nameplate token") from None
    if len(token) != TOKEN_BYTES:
        raise AuthError("wrong or missing nameplate token")
    return token


def _messages(post: bodies.MailboxPost) -> list[bytes]:
    out = list(post.messages)
    if len(out) > MAX_MESSAGES_PER_SIDE:
        raise TooLargeError(f"at most {MAX_MESSAGES_PER_SIDE} messages per side")
    if any(not m for m in out):
        raise MessageFormatError("a mailbox message is empty")
    if any(len(m) > MAX_MESSAGE_BYTES for m in out):
        raise TooLargeError(f"a mailbox message holds at most {MAX_MESSAGE_BYTES} bytes")
    return out


def _after(text: str | None) -> int:
    if text is None or text == "":
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 2:
        raise InvalidInputError("after must be a small number of messages")
    return int(text)


async def capabilities(request: Request) -> Response:
    """``GET /v1/capabilities``: what this server offers beyond §4 (no auth)."""
    return json_response({"shortCodes": nameplates(request).enabled})


async def allocate(request: Request) -> Response:
    """``POST /v1/nameplates`` ``{"channel": uuid}``: a nameplate for an open channel
    (no auth, as the channel itself; 404 channel not open, 409 it has one, 429, 503)."""
    np = nameplates(request)
    np.require_enabled()
    request_body = await read_body(request, bodies.NameplateRequest)
    try:
        channel_id = parse_channel_id(request_body.channel)
    except ProvisionError:  # LinkError is the client's word for it; here it is a bad body
        raise MessageFormatError("channel must be a temp channel uuid") from None
    got = await np.allocate(channel_id, client_address(request))
    return json_response(
        {
            "nameplate": got.nameplate,
            "token": b64encode(got.token),
            "expiresIn": int(got.expires_in_s),
        }
    )


async def claim(request: Request) -> Response:
    """``PUT /v1/nameplates/{nameplate}/claim``: the master's one attempt (Basic auth;
    404 gone, 409 already claimed, 410 burned, 429 per address and per account)."""
    np = nameplates(request)
    np.require_enabled()
    svc = services(request)
    nameplate = parse_nameplate(request.path_params["nameplate"])
    await svc.limits.enforce("nameplate_claim_address", client_address(request))
    device = await authenticate(request)
    await svc.limits.enforce("nameplate_claim_account", device.number)
    token, first = await np.claim(nameplate, device.number, device.device_id)
    return json_response(
        {"token": b64encode(token), "messages": [b64encode(m) for m in first.messages]}
    )


async def post_messages(request: Request) -> Response:
    """``PUT /v1/nameplates/{nameplate}/messages`` ``{"messages": [b64]}`` (401, 404, 410, 413)."""
    np = nameplates(request)
    np.require_enabled()
    nameplate = parse_nameplate(request.path_params["nameplate"])
    token = _token(request)
    messages = _messages(await read_body(request, bodies.MailboxPost))
    await np.post(nameplate, token, messages)
    return json_response({})


async def read_messages(request: Request) -> Response:
    """``GET /v1/nameplates/{nameplate}/messages?after=K&wait=S``: the other side's messages
    from index K on, waiting up to S seconds for one (401, 404, 410)."""
    np = nameplates(request)
    np.require_enabled()
    svc = services(request)
    nameplate = parse_nameplate(request.path_params["nameplate"])
    token = _token(request)
    after = _after(request.query_params.get("after"))
    wait_s = parse_wait(request.query_params.get("wait"), svc.config.max_wait_s)
    answer = await np.read(nameplate, token, after, wait_s)
    return json_response(
        {"messages": [b64encode(m) for m in answer.messages], "claimed": answer.claimed}
    )


async def burn(request: Request) -> Response:
    """``POST /v1/nameplates/{nameplate}/burn``: a key confirmation failed (401, 404)."""
    np = nameplates(request)
    np.require_enabled()
    nameplate = parse_nameplate(request.path_params["nameplate"])
    await np.burn(nameplate, _token(request))
    return json_response({})


routes = [
    Route("/v1/capabilities", capabilities, methods=["GET"]),
    Route("/v1/nameplates", allocate, methods=["POST"]),
    Route("/v1/nameplates/{nameplate}/claim", claim, methods=["PUT"]),
    Route("/v1/nameplates/{nameplate}/messages", post_messages, methods=["PUT"]),
    Route("/v1/nameplates/{nameplate}/messages", read_messages, methods=["GET"]),
    Route("/v1/nameplates/{nameplate}/burn", burn, methods=["POST"]),
]
