"""``provision whoami``: this device's account, device id, server and identity key."""

from __future__ import annotations

import json

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals


@click.command()
@local_globals
def whoami(settings: Settings) -> None:
    """Show this device's number, device id, server and identity key.

    With --json: {"number", "device_id", "server", "identity_key"} (the key as
    base64 of its 33 bytes). Reads only the data folder.
    """
    from textsecure_provision.flows.devices import whoami as read_whoami

    info = read_whoami(flow_config(settings))
    if settings.json_mode:
        click.echo(json.dumps(info, separators=(",", ":")))
        return
    click.echo(f"number:       {info['number']}")
    click.echo(f"device id:    {info['device_id']}")
    click.echo(f"server:       {info['server']}")
    click.echo(f"identity key: {info['identity_key']}")
