"""``provision register``: create the account; this device becomes device 1."""

from __future__ import annotations

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals


@click.command()
@click.option("--number", required=True, metavar="+E164", help="The account's phone number.")
@click.option(
    "--code",
    metavar="CODE",
    help="The registration code, if you already have one (else one is requested and asked for).",
)
@click.option("--name", metavar="NAME", help="A name for this device.")
@local_globals
def register(settings: Settings, number: str, code: str | None, name: str | None) -> None:
    """Create an account on --server; this device becomes its device 1.

    Generates and stores the identity key pair and uploads a signed prekey,
    100 one-time prekeys and a last-resort key. Without --code, asks the
    server to deliver a code and prompts for it.
    """
    import asyncio

    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.register import register_account

    ui = CliUi(Output.from_settings(settings))
    try:
        asyncio.run(register_account(flow_config(settings), ui, number, code=code, name=name))
    finally:
        ui.close()
