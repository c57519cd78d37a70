"""Messages (§4): send to a number or to a temp channel, long-poll fetch, acknowledge.

Parse → ``policy/messages.py`` → render. ``fastpath.py`` serves the PUT through
``deliver`` below, the whole of ``send_messages`` but its ``Request`` and its ``{}``
``Response``, so both paths run the same code.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from textsecure_provision.errors import InvalidInputError, MessageFormatError
from textsecure_provision.protocol.bodies import ChannelMessages, OutgoingMessages
from textsecure_provision.protocol.encoding import b64encode, parse_phone_number
from textsecure_provision.server.fanout.base import ChannelId
from textsecure_provision.server.handlers import empty_json_response, json_response
from textsecure_provision.server.policy import messages
from textsecure_provision.server.routes.channels import message_frame
from textsecure_provision.server.services import (
    Services,
    authenticate,
    authenticate_scope,
    services,
)
from textsecure_provision.server.validation import parse_body, parse_wait

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def send_messages(request: Request) -> Response:
    """``PUT /v1/messages/{destination}``: a phone number or a temp channel uuid (§4).

    To a number: 400 malformed, 404 no such account or device, 409 devices not
    covered, 410 stale registration id, 429 past ``message_send_device`` or when a
    destination device's queue is full (nothing is stored then). To a channel:
    exactly one message, whose body (the DeviceInit) is relayed (§4.1); only
    ``body`` matters; 404 if the channel is gone, expired or already used.
    """
    destination = request.path_params["destination"]
    await deliver(services(request), request.scope, destination, request.body)
    return empty_json_response()


async def deliver(
    svc: Services, scope: Scope, destination: str, body: Callable[[], Awaitable[bytes]]
) -> None:
    """``send_messages`` up to its ``{}`` answer, on the request's scope and a reader of its
    body: fastpath.py serves the channel PUT with it and no Starlette ``Request``."""
    sender = await authenticate_scope(svc, scope)
    await svc.limits.enforce("message_send_device", f"{sender.number}.{sender.device_id}")
    channel = destination.lower()
    if _UUID.fullmatch(channel):
        to_channel = parse_body(await body(), ChannelMessages)
        if len(to_channel.messages) != 1:
            raise MessageFormatError("a temp channel takes exactly one message")
        frame = message_frame(b64encode(to_channel.messages[0].body))
        await messages.send_to_channel(svc, ChannelId(channel), frame)
        return
    outgoing = parse_body(await body(), OutgoingMessages)
    number = parse_phone_number(destination)
    if len(outgoing.messages) > svc.config.max_messages_per_send:
        raise InvalidInputError(f"at most {svc.config.max_messages_per_send} messages per send")
    await messages.send_to_number(svc, sender, number, outgoing.messages)


async def fetch_messages(request: Request) -> Response:
    """``GET /v1/messages/?wait=S``: pending messages, oldest first, at most
    ``max_messages_per_fetch`` and ``max_fetch_bytes`` per page ("more" says if others
    wait); with none, wait up to S seconds for the first."""
    svc = services(request)
    device = await authenticate(request)
    wait_s = parse_wait(request.query_params.get("wait"), svc.config.max_wait_s)
    found, more = await messages.fetch(svc, device, wait_s)
    return json_response(
        {
            "messages": [
                {
                    "guid": m.guid,
                    "type": m.type,
                    "source": m.source,
                    "sourceDevice": m.source_device,
                    "timestamp": m.timestamp,
                    "body": b64encode(m.body),
                }
                for m in found
            ],
            "more": more,
        }
    )


async def acknowledge_message(request: Request) -> Response:
    """``DELETE /v1/messages/{guid}``: only now is the message deleted (401, 404)."""
    device = await authenticate(request)
    await messages.acknowledge(services(request), device, request.path_params["guid"])
    return json_response({})


routes = [
    Route("/v1/messages/", fetch_messages, methods=["GET"]),
    Route("/v1/messages/{destination}", send_messages, methods=["PUT"]),
    Route("/v1/messages/{guid}", acknowledge_message, methods=["DELETE"]),
]
