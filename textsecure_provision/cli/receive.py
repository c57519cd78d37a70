"""``provision receive [--wait S]``: fetch, decrypt, act on and acknowledge messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config, local_globals

if TYPE_CHECKING:
    from textsecure_provision.flows.receive import ReceiveSummary

INTERRUPTED = (
    "the messages handled so far are stored; the others stay on the server for the next "
    "`provision receive`."
)


@click.command()
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="With nothing pending, wait this long for the first message.",
)
@local_globals
def receive(settings: Settings, wait_s: float) -> None:
    """Handle the messages the account's other devices sent to this one.

    Each is decrypted, acted on (sessions are updated, announced devices
    remembered), printed, and only then acknowledged. Messages from another
    account, or of an unknown type, are dropped and reported; a message that
    fails to decrypt is reported and dropped too (exit 8 at the end, since the
    sender's session may need rebuilding).
    """
    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.errors import SessionError
    from textsecure_provision.flows.devices import api_for
    from textsecure_provision.flows.receive import MESSAGE, UNDECRYPTABLE, receive_messages

    config = flow_config(settings)
    store = config.store()
    record = store.require_record()
    out = Output.from_settings(settings)
    ui = CliUi(out)

    async def main() -> ReceiveSummary:
        async with api_for(record, config) as api:
            return await receive_messages(record, api, ui, store=store, wait_s=wait_s)

    summary = ui.run(main(), interrupted=INTERRUPTED)
    handled = summary.count(MESSAGE)
    others = len(summary.outcomes) - handled
    skipped = f", {others} skipped or dropped" if others else ""
    out.info(f"{handled} message(s) received{skipped}.")
    failed = summary.count(UNDECRYPTABLE)
    if failed:
        raise SessionError(
            f"{failed} message(s) could not be decrypted; they were dropped",
            hint="Run `provision send-control new-device-registered` on this device to rebuild "
            "its sessions, and ask the sender to send again.",
        )
