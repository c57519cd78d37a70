"""Messages (§4): send to a number or to a temp channel, long-poll fetch, acknowledge."""

from __future__ import annotations

import asyncio
import re
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import (
    ChannelGoneError,
    InvalidInputError,
    MessageFormatError,
    MismatchedDevicesError,
    NotFoundError,
    StaleDevicesError,
)
from textsecure_provision.protocol.bodies import (
    ChannelMessage,
    ChannelMessages,
    OutgoingMessage,
    OutgoingMessages,
)
from textsecure_provision.protocol.encoding import b64encode, parse_phone_number
from textsecure_provision.server.fanout.base import ChannelId, mailbox_key
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.routes.channels import message_frame
from textsecure_provision.server.services import Services, authenticate, services
from textsecure_provision.server.storage.base import NewMessage, StoredDevice
from textsecure_provision.server.validation import parse_wait, read_body

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def send_messages(request: Request) -> Response:
    """``PUT /v1/messages/{destination}``: a phone number or a temp channel uuid (§4)."""
    svc = services(request)
    destination = request.path_params["destination"]
    sender = await authenticate(request)
    await svc.limits.enforce("message_send_device", f"{sender.number}.{sender.device_id}")
    channel = destination.lower()
    if _UUID.fullmatch(channel):
        to_channel = await read_body(request, ChannelMessages)
        return await _send_to_channel(svc, ChannelId(channel), to_channel.messages)
    body = await read_body(request, OutgoingMessages)
    number = parse_phone_number(destination)
    return await _send_to_number(svc, sender, number, body.messages)


async def _send_to_channel(
    svc: Services, channel: ChannelId, items: list[ChannelMessage]
) -> Response:
    """Exactly one message; its body (the DeviceInit) is relayed (§4.1); 404 if the channel
    is gone, expired or already used. Only ``body`` matters; the other fields may be absent."""
    if len(items) != 1:
        raise MessageFormatError("a temp channel takes exactly one message")
    if not await svc.fanout.publish(channel, message_frame(b64encode(items[0].body))):
        raise ChannelGoneError("no such open channel (gone, expired or already used)")
    svc.metrics.channel_messages_delivered += 1
    return json_response({})


async def _send_to_number(
    svc: Services, sender: StoredDevice, number: str, outgoing: list[OutgoingMessage]
) -> Response:
    """409 unless another account's sender covers every device; 410 on a non-zero
    registration-id mismatch (0 or absent is not checked). The sender's own account: any
    subset of its other devices, never 409."""
    if len(outgoing) > svc.config.max_messages_per_send:
        raise InvalidInputError(f"at most {svc.config.max_messages_per_send} messages per send")
    ids = [m.destination_device_id for m in outgoing]  # distinct (OutgoingMessages)
    devices = {d.device_id: d for d in await svc.storage.list_devices(number)}
    if not devices:
        raise NotFoundError("no such account")
    if number == sender.number:
        if sender.device_id in ids:
            raise InvalidInputError("a device does not send messages to itself")
        unknown = sorted(set(ids) - set(devices))
        if unknown:
            raise NotFoundError(f"the account has no device {unknown[0]}")
    else:
        missing = sorted(set(devices) - set(ids))
        extra = sorted(set(ids) - set(devices))
        if missing or extra:
            raise MismatchedDevicesError(
                "the messages must cover exactly the destination's devices",
                missing=missing,
                extra=extra,
            )
    stale = sorted(
        m.destination_device_id
        for m in outgoing
        if m.destination_registration_id  # 0 or absent: not checked (docs/protocol.md)
        and devices[m.destination_device_id].registration_id != m.destination_registration_id
    )
    if stale:
        raise StaleDevicesError("a destination device was re-linked", stale=stale)
    now = svc.clock_ms()
    await svc.storage.store_messages(
        [
            NewMessage(
                guid=str(uuid.uuid4()),
                number=number,
                device_id=m.destination_device_id,
                source=sender.number,
                source_device=sender.device_id,
                type=m.type,
                timestamp=now if m.timestamp is None else m.timestamp,
                body=m.body,
            )
            for m in outgoing
        ],
        now,
    )
    svc.metrics.messages_stored += len(outgoing)
    for m in outgoing:
        await svc.fanout.notify(mailbox_key(number, m.destination_device_id))
    return json_response({})


async def fetch_messages(request: Request) -> Response:
    """``GET /v1/messages/?wait=S``: pending messages, oldest first; with none, wait up to
    S seconds for the first (woken by the fan-out, never by polling storage)."""
    svc = services(request)
    device = await authenticate(request)
    wait_s = parse_wait(request.query_params.get("wait"), svc.config.max_wait_s)
    limit = svc.config.max_messages_per_fetch
    messages, more = await svc.storage.fetch_messages(device.number, device.device_id, limit)
    if not messages and wait_s > 0 and not svc.stopping:
        async with svc.fanout.subscribe(mailbox_key(device.number, device.device_id)) as waiter:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            # Re-read after subscribing: a message stored in between is not missed.
            messages, more = await svc.storage.fetch_messages(
                device.number, device.device_id, limit
            )
            while not messages and not svc.stopping:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await waiter.wait(remaining):
                    break
                messages, more = await svc.storage.fetch_messages(
                    device.number, device.device_id, limit
                )
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
                for m in messages
            ],
            "more": more,
        }
    )


async def acknowledge_message(request: Request) -> Response:
    """``DELETE /v1/messages/{guid}``: only now is the message deleted (401, 404)."""
    svc = services(request)
    device = await authenticate(request)
    guid = request.path_params["guid"]
    if not await svc.storage.delete_message(device.number, device.device_id, guid):
        raise NotFoundError("no such message for this device")
    svc.metrics.messages_acknowledged += 1
    return json_response({})


routes = [
    Route("/v1/messages/", fetch_messages, methods=["GET"]),
    Route("/v1/messages/{destination}", send_messages, methods=["PUT"]),
    Route("/v1/messages/{guid}", acknowledge_message, methods=["DELETE"]),
]
