"""The account's side: ``master scan`` (§1 steps 3, 4 and 6; §8).

Order matters and is the contract's: everything local comes before the first
request, so nothing reaches the server for a link we will refuse. Parse the
link (its key must be a usable point), load the account (its folder must be
writable: the acknowledgement stores a session there), check the link's
``channel_server`` against the trusted list, show what is about to happen and
get a yes; only then ask the server for a provisioning code, seal the
DeviceInit to the secondary's key, and PUT it on the channel. Nothing is
written to the store on this side.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textsecure_provision.crypto.keys import Rng
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import api_for, credentials
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.link import parse_link
from textsecure_provision.protocol.messages import IdentityKeyPayload
from textsecure_provision.protocol.provisioning import seal_device_init
from textsecure_provision.protocol.trust import check_trusted
from textsecure_provision.store import DeviceRecord
from textsecure_provision.transport.api import ApiClient

MASTER_SUPPORTS_SMS = False  # this client never sends SMS; the flag is carried for the design (§6)

# What is true if the command stops at each point (``Ui.state``; shown on Ctrl-C).
NOTHING_SENT = "nothing was sent and nothing was linked."
MAY_HAVE_SENT = (
    "the link may have reached the new device, which may still complete it. In a minute, "
    "`provision devices` shows whether it did."
)
SENT = (
    "the link was sent; the new device may still complete it. `provision devices` shows "
    "whether it did, and `provision receive --wait 30` takes its confirmation."
)


@dataclass(frozen=True)
class MasterLinkResult:
    number: str
    channel_uuid: str
    channel_server: str
    confirmation: str
    known_devices: tuple[int, ...] = ()
    """The account's devices before the DeviceInit was sent (listed only for ``on_sent``):
    the acknowledgement must come from a device not among them (§1 step 7)."""


SentHook = Callable[[MasterLinkResult, DeviceRecord, ApiClient, Ui], Awaitable[None]]
"""Called by ``link_master`` right after the server accepted the DeviceInit, with the API
client authenticated as this device: where the acknowledgement wait joins (§1 step 7,
``flows/acknowledge.py``). Without it the flow ends at step 6."""


async def link_master(
    config: FlowConfig,
    ui: Ui,
    link_text: str,
    *,
    rng: Rng = secrets.token_bytes,
    on_sent: SentHook | None = None,
) -> MasterLinkResult:
    ui.state(NOTHING_SENT)
    link = parse_link(link_text)  # also refuses a low-order key
    store = config.store()
    record = store.require_record()
    store.require_writable()  # the acknowledgement stores a session here: fail before sending
    trusted = (record.server, *record.trusted_servers, *config.trusted_servers)
    channel_server = check_trusted(link.channel_server, trusted)
    ui.event(
        "link_parsed",
        f"About to link a NEW device to account {record.number}, through server "
        f"{channel_server}.\nIt will receive this account's identity key.",
        number=record.number,
        channel_server=channel_server,
        channel_uuid=link.channel_uuid,
    )
    ui.confirm(
        f"Link a new device to {record.number}?",
        refusal="you did not consent to linking a new device",
    )
    async with api_for(record, config) as api:
        code = await api.fetch_provisioning_code()
        # Listed before sending, so the new device cannot be among them yet.
        known = tuple(d.id for d in await api.fetch_devices()) if on_sent is not None else ()
        payload = IdentityKeyPayload(
            identity_key_pair=record.identity,
            phone_number=record.number,
            server=record.server,
            master_supports_sms=MASTER_SUPPORTS_SMS,
            provisioning_code=int(code),
        )
        sealed = seal_device_init(payload, link.public_key, rng)
        ui.state(MAY_HAVE_SENT)
        if channel_server == record.server:
            await api.send_to_channel(link.channel_uuid, sealed.device_init)
        else:
            # The channel lives on another (trusted) server: send it there, as this device.
            async with ApiClient(
                channel_server, credentials(record), ca_file=config.ca_file
            ) as channel_api:
                await channel_api.send_to_channel(link.channel_uuid, sealed.device_init)
        ui.state(SENT)
        result = MasterLinkResult(
            record.number, link.channel_uuid, channel_server, sealed.confirmation, known
        )
        ui.result(
            "sent",
            f"Sent to the new device. Confirmation code: {sealed.confirmation}\n"
            "Check that the new device shows the same code.",
            number=record.number,
            channel_uuid=link.channel_uuid,
            confirmation_code=sealed.confirmation,
        )
        if on_sent is not None:
            await on_sent(result, record, api, ui)
    return result
