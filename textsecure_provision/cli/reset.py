"""``provision reset``: unlink this device if the server still has it, delete its data folder."""

from __future__ import annotations

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals


@click.command()
@local_globals
def reset(settings: Settings) -> None:
    """Unlink this device (if it still can) and delete its data folder.

    For a device that was removed from the account or replaced ("no longer
    linked"), or to start over. Says what the folder holds and asks first
    (--yes for scripts). Device 1, the account's master, is not unlinked
    (the server does not allow it): only its folder is deleted, and with it
    the account's identity key. Only a folder that holds nothing but
    provision's files is deleted.
    """
    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.reset import NOTHING_DELETED, reset_device

    ui = CliUi(Output.from_settings(settings))
    ui.run(reset_device(flow_config(settings), ui), interrupted=NOTHING_DELETED)
