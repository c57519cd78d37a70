"""``provision send-control``: send a DeviceControl to every other device of the account."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals

if TYPE_CHECKING:
    from textsecure_provision.protocol.messages import DeviceControlMessage
    from textsecure_provision.store import DeviceRecord

    Build = Callable[[DeviceRecord], DeviceControlMessage]


@click.group("send-control")
def send_control() -> None:
    """Send a DeviceControl message to each of the account's other devices (§7)."""


@send_control.command("sent-message")
@click.option("--to", "other_number", required=True, metavar="+E164", help="Who it was sent to.")
@click.option("--body", required=True, metavar="TEXT", help="The message text.")
@click.option(
    "--timestamp",
    type=click.IntRange(min=0, max=2**64 - 1),
    metavar="MS",
    help="When it was sent, ms since the epoch [default: now].",
)
@local_globals
def sent_message(settings: Settings, other_number: str, body: str, timestamp: int | None) -> None:
    """Tell the other devices that this one sent TEXT to NUMBER (a SENT_MESSAGE)."""
    from textsecure_provision.flows.sessions import sent_message as build
    from textsecure_provision.protocol.encoding import parse_phone_number

    _send(settings, lambda record: build(parse_phone_number(other_number), body, timestamp))


@send_control.command("new-device-registered")
@local_globals
def new_device_registered(settings: Settings) -> None:
    """Announce this device again, over sessions rebuilt from fresh key bundles.

    The repair for broken sessions: every other device builds a new session
    with this one on receipt.
    """
    from textsecure_provision.flows.sessions import new_device_registered as build

    _send(settings, build, fresh=True)


def _send(settings: Settings, build: Build, *, fresh: bool = False) -> None:
    import asyncio

    from textsecure_provision.cli.output import Output
    from textsecure_provision.errors import UserInterruptError
    from textsecure_provision.flows.devices import api_for
    from textsecure_provision.flows.sessions import SendReport, send_control

    config = flow_config(settings)
    store = config.store()
    record = store.require_record()
    control = build(record)
    out = Output.from_settings(settings)

    async def main() -> SendReport:
        async with api_for(record, config) as api:
            return await send_control(record, api, control, store=store, fresh_sessions=fresh)

    try:
        report = asyncio.run(main())
    except KeyboardInterrupt:
        raise UserInterruptError(
            "the message may or may not have reached the server; running the command again "
            "sends it once more."
        ) from None
    for device_id in report.gone:
        out.progress(
            "device_gone",
            f"Device {device_id} is no longer on the account; its session was dropped.",
            device_id=device_id,
        )
    for device_id in report.rebuilt:
        out.progress(
            "session_rebuilt",
            f"The session with device {device_id} was rebuilt from a fresh key bundle.",
            device_id=device_id,
        )
    for device_id in report.skipped:
        out.progress(
            "device_skipped",
            f"Device {device_id} has no keys on the server yet; nothing was sent to it.",
            device_id=device_id,
        )
    targets = ", ".join(f"{d.device_id} (type {d.msg_type})" for d in report.deliveries)
    out.result(
        "control_sent",
        f"Sent {control.type.name} to device(s) {targets}."
        if report.deliveries
        else f"No other device to send {control.type.name} to.",
        **report.to_json(),
    )
