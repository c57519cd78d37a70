"""``provision devices [list]`` and ``provision devices remove ID``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.default_group import DefaultGroup
from textsecure_provision.cli.options import flow_config, local_globals


@click.group(cls=DefaultGroup, default="list")
def devices() -> None:
    """List or remove the account's devices. `provision devices` alone lists them."""


@devices.command("list")
@local_globals
def list_(settings: Settings) -> None:
    """List the account's devices (with --json: {"devices": [{id, name, created, last_seen}]})."""
    import asyncio

    from textsecure_provision.flows.devices import list_devices

    config = flow_config(settings)
    found = asyncio.run(list_devices(config))
    if settings.json_mode:
        rows = [
            {"id": d.id, "name": d.name, "created": d.created, "last_seen": d.last_seen}
            for d in found
        ]
        click.echo(json.dumps({"devices": rows}, separators=(",", ":")))
        return
    from textsecure_provision.cli.output import terminal_safe

    me = config.store().require_record().device_id
    click.echo(f"{'ID':>3}  {'NAME':<20} {'CREATED':<17} {'LAST SEEN':<17}")
    for d in found:
        mark = "  (this device)" if d.id == me else ""
        name = terminal_safe(d.name, one_line=True) if d.name else "-"  # the server's text
        click.echo(f"{d.id:>3}  {name:<20} {_when(d.created):<17} {_when(d.last_seen):<17}{mark}")


@devices.command("remove")
@click.argument("device_id", type=click.IntRange(min=1), metavar="ID")
@local_globals
def remove(settings: Settings, device_id: int) -> None:
    """Unlink device ID from the account (not device 1)."""
    import asyncio

    from textsecure_provision.cli.output import Output
    from textsecure_provision.errors import UserInterruptError
    from textsecure_provision.flows.devices import remove_device

    out = Output.from_settings(settings)
    from textsecure_provision.errors import RefusedError

    try:
        out.confirm(
            f"Unlink device {device_id}?",
            refusal="you did not confirm the removal",
            interrupted="nothing was removed.",
        )
    except RefusedError as exc:  # not the linking hint ("Nothing was linked...")
        raise exc.with_hint("Nothing was removed.") from None
    try:
        record = asyncio.run(remove_device(flow_config(settings), device_id))
    except KeyboardInterrupt:
        raise UserInterruptError(
            f"device {device_id} may have been removed; `provision devices` shows whether it was."
        ) from None
    out.result(
        "device_removed",
        f"Device {device_id} was unlinked from {record.number}.",
        device_id=device_id,
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
