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
    import sys

    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.errors import InvalidInputError
    from textsecure_provision.flows.register import NOTHING_REGISTERED, register_account

    if code is None and not sys.stdin.isatty():
        # Fail before asking the server: a request costs an SMS and a rate-limit token.
        raise InvalidInputError(
            "no --code, and no terminal to ask for the registration code on",
            hint="Pass --code CODE (a self-hosted relay writes codes to its log), or run "
            "`provision register` in a terminal; nothing was requested.",
        )
    ui = CliUi(Output.from_settings(settings))
    flow = register_account(flow_config(settings), ui, number, code=code, name=name)
    ui.run(flow, interrupted=NOTHING_REGISTERED)
