"""``provision verify``: finish a link received with ``secondary listen --no-verify``."""

from __future__ import annotations

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals


@click.command()
@click.option("--number", metavar="+E164", help="Confirm this number without a prompt.")
@click.option(
    "--code",
    metavar="SAS",
    help="The confirmation code the master printed; refused (exit 4) if it differs.",
)
@local_globals
def verify(settings: Settings, number: str | None, code: str | None) -> None:
    """Finish the pending link in the data folder (within 10 minutes of receiving it).

    Opens and checks the received DeviceInit again, compares --code with its
    confirmation code (on a terminal without --code, --number or --yes, you
    type it), confirms the number (--number, a prompt, or --yes),
    then registers, uploads keys and stores this device, and tells the
    account's other devices (NEW_DEVICE_REGISTERED).
    """
    import sys

    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.secondary import PENDING_KEPT, verify_pending
    from textsecure_provision.flows.sessions import linked_hook

    ui = CliUi(Output.from_settings(settings))
    config = flow_config(settings)
    ask_code = not (settings.json_mode or settings.assume_yes or number) and sys.stdin.isatty()
    flow = verify_pending(
        config,
        ui,
        number=number,
        code=code,
        on_linked=linked_hook(config.store()),
        ask_code=ask_code,
    )
    ui.run(flow, interrupted=PENDING_KEPT)
