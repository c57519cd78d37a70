"""Messages (§4): who may send to which devices, how much a queue holds, what a fetch returns.

* To another account, a send covers exactly its devices (409 with the missing
  and extra ids); to the sender's own account, any subset of its other devices.
  A non-zero registration id that differs from the device's is stale (410);
  0 (or absent) is not checked, as Signal-Server does (docs/protocol.md).
* Each device's queue holds at most ``max_queue_messages`` and
  ``max_queue_bytes`` of bodies until acknowledged; a send that would overfill
  one stores nothing and is refused with 429 and a Retry-After (as Signal-Server
  answers its per-destination byte budget, ``inboundMessageBytes``): the sender
  may try again once the device has fetched and acknowledged.
* A fetch page holds at most ``max_messages_per_fetch`` messages and
  ``max_fetch_bytes`` of bodies (the first message always fits).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from textsecure_provision.errors import (
    ChannelGoneError,
    InvalidInputError,
    MismatchedDevicesError,
    NotFoundError,
    RateLimitedError,
    StaleDevicesError,
)
from textsecure_provision.protocol.bodies import OutgoingMessage
from textsecure_provision.server.fanout.base import ChannelId, mailbox_key
from textsecure_provision.server.services import Services
from textsecure_provision.server.storage.base import (
    NewMessage,
    QueueQuota,
    StoredDevice,
    StoredMessage,
)

QUEUE_FULL_RETRY_S = 60  # a hint: the queue empties as fast as its device acknowledges


def check_destination(
    sender: StoredDevice,
    number: str,
    outgoing: Sequence[OutgoingMessage],
    devices: dict[int, StoredDevice],
) -> None:
    """404/400/409/410 for a send of ``outgoing`` to ``number``'s ``devices``."""
    ids = [m.destination_device_id for m in outgoing]  # distinct (OutgoingMessages)
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
        if m.destination_registration_id  # 0 or absent: not checked
        and devices[m.destination_device_id].registration_id != m.destination_registration_id
    )
    if stale:
        raise StaleDevicesError("a destination device was re-linked", stale=stale)


async def send_to_number(
    svc: Services, sender: StoredDevice, number: str, outgoing: Sequence[OutgoingMessage]
) -> None:
    devices = {d.device_id: d for d in await svc.storage.list_devices(number)}
    check_destination(sender, number, outgoing, devices)
    now = svc.clock_ms()
    messages = [
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
    ]
    quota = QueueQuota(svc.config.max_queue_messages, svc.config.max_queue_bytes)
    full = await svc.storage.store_messages(messages, now, quota)
    if full:
        svc.metrics.rate_limited("device_queue")
        raise RateLimitedError(
            f"the queue of device {', '.join(map(str, full))} is full "
            f"({quota.max_messages} messages or {quota.max_bytes // 1024} KiB waiting until "
            "acknowledged); try again later",
            retry_after=QUEUE_FULL_RETRY_S,
        )
    svc.metrics.messages_stored += len(messages)
    for m in outgoing:
        await svc.fanout.notify(mailbox_key(number, m.destination_device_id))


async def send_to_channel(svc: Services, channel: ChannelId, frame: str) -> None:
    """Relay one DeviceInit frame (§4.1); 404 if the channel is gone, expired or used."""
    if not await svc.fanout.publish(channel, frame):
        raise ChannelGoneError("no such open channel (gone, expired or already used)")
    svc.metrics.channel_messages_delivered += 1


async def fetch(
    svc: Services, device: StoredDevice, wait_s: float
) -> tuple[list[StoredMessage], bool]:
    """The oldest page of the device's messages; with none, wait up to ``wait_s`` for the
    first (woken by the fan-out, never by polling storage)."""
    limit, max_bytes = svc.config.max_messages_per_fetch, svc.config.max_fetch_bytes

    async def page() -> tuple[list[StoredMessage], bool]:
        return await svc.storage.fetch_messages(device.number, device.device_id, limit, max_bytes)

    messages, more = await page()
    if not messages and wait_s > 0 and not svc.stopping:
        async with svc.fanout.subscribe(mailbox_key(device.number, device.device_id)) as waiter:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            messages, more = await page()  # after subscribing: one stored in between counts
            while not messages and not svc.stopping:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await waiter.wait(remaining):
                    break
                messages, more = await page()
    return messages, more


async def acknowledge(svc: Services, device: StoredDevice, guid: str) -> None:
    """Delete the device's message ``guid`` (404 if it has none)."""
    if not await svc.storage.delete_message(device.number, device.device_id, guid):
        raise NotFoundError("no such message for this device")
    svc.metrics.messages_acknowledged += 1
