"""``provision secondary [listen]``: on the new device, show a QR code and wait to be linked."""

from __future__ import annotations

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.default_group import DefaultGroup
from textsecure_provision.cli.options import flow_config, local_globals


@click.group(cls=DefaultGroup, default="listen")
def secondary() -> None:
    """On the new device: show a QR code and wait to be linked.

    `provision secondary` alone is `provision secondary listen`.
    """


@secondary.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Give up after this many seconds (the QR code is renewed meanwhile).",
)
@click.option(
    "--qr-out",
    type=click.Path(dir_okay=False),
    metavar="FILE.png|FILE.svg",
    help="Also write the QR code to this image (rewritten when renewed, removed at the end).",
)
@click.option("--print-link", is_flag=True, help="Print the bare link on stdout (not with --json).")
@click.option("--ascii", "ascii_qr", is_flag=True, help="Draw the QR code with ASCII only.")
@click.option(
    "--expect-number",
    metavar="+E164",
    help="Confirm this number without a prompt; any other number fails (exit 4).",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Stop once received; finish within 10 minutes with `provision verify`.",
)
@click.option("--name", metavar="NAME", help="A name for this device.")
@click.option(
    "--no-code",
    is_flag=True,
    help="Show no short code (`provision master --code`), only the QR code and link.",
)
@click.option(
    "--code-words",
    type=click.IntRange(2, 8),
    default=2,
    show_default=True,
    metavar="N",
    help="Words in the short code's secret (8 bits each; see docs/security.md).",
)
@local_globals
def listen(
    settings: Settings,
    timeout: float,
    qr_out: str | None,
    print_link: bool,
    ascii_qr: bool,
    expect_number: str | None,
    no_verify: bool,
    name: str | None,
    no_code: bool,
    code_words: int,
) -> None:
    """Open a channel on --server, show its QR code, and link when the master sends.

    When the link arrives, asks you to type the confirmation code the other
    device shows (a mismatch stops it: exit 4, nothing registered), then to
    confirm the account's number. --expect-number confirms the number without
    a prompt and asks no code (for scripts); --yes accepts whatever number
    arrives, printing it. Then registers, uploads keys and stores this
    device. Nothing is stored if any step fails. Last, it tells the
    account's other devices (NEW_DEVICE_REGISTERED): the master's
    acknowledgement that the link is complete.
    """
    import sys

    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.secondary import NOTHING_LINKED, ListenOptions, listen_secondary
    from textsecure_provision.flows.sessions import linked_hook

    if qr_out:
        from textsecure_provision.qr.render import image_format_for

        image_format_for(qr_out)  # a bad suffix is a usage error before anything is opened
    ui = CliUi(
        Output.from_settings(settings),
        qr_out=qr_out,
        print_link=print_link,
        ascii_qr=ascii_qr,
        remove_qr_out=True,
    )
    # A person at a terminal types the code; scripts use --expect-number (or --yes).
    ask_code = not (settings.json_mode or settings.assume_yes or expect_number)
    options = ListenOptions(
        timeout_s=timeout,
        expect_number=expect_number,
        no_verify=no_verify,
        name=name,
        ask_code=ask_code and sys.stdin.isatty(),
        short_code=not no_code,
        code_words=code_words,
    )
    config = flow_config(settings)
    # httpx imports its HTTP engine at the first request (~75 ms here): load it now, while
    # nobody has scanned yet, rather than between the DeviceInit and the registration (B2).
    import httpcore  # noqa: F401

    flow = listen_secondary(config, ui, options, on_linked=linked_hook(config.store()))
    ui.run(flow, interrupted=NOTHING_LINKED)
