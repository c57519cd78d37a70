"""``provision master [scan]``: on the account's device, link the new device shown in a QR code."""

from __future__ import annotations

import sys

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.default_group import DefaultGroup
from textsecure_provision.cli.options import flow_config, local_globals, qr_decoder_option

MAX_STDIN_LINK = 4096  # a link is ~200 characters; refuse to slurp anything big
# `secondary --qr-out` rewrites its image at least once per channel lifetime (§4.1, 120 s)
# and removes it when it ends: an older image is a leftover of an earlier run.
STALE_IMAGE_S = 130.0
IMAGE_POLL_S = 0.1


@click.group(cls=DefaultGroup, default="scan")
def master() -> None:
    """On the account's device: scan a QR code and link the new device.

    `provision master` alone is `provision master scan`.
    """


@master.command()
@click.option(
    "--qr",
    "qr_image",
    type=click.Path(dir_okay=False),
    metavar="IMAGE",
    help="A picture of the QR code (PNG, JPEG, ...).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="With --qr: wait up to this long for a new IMAGE (one written less than "
    f"{STALE_IMAGE_S:.0f} s ago), e.g. while `secondary --qr-out IMAGE` starts beside it.",
)
@click.option(
    "--link", "link_text", metavar="URI", help="The link itself (textsecure-device-init:...)."
)
@click.option(
    "--code",
    "short_code",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="CODE",
    help="The short code `provision secondary` shows (e.g. 7-revenge-tiger); alone, asks for it.",
)
@click.option(
    "--ack-timeout",
    type=click.FloatRange(min=0),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for the new device to confirm the link (exit 3 if it does not); "
    "0: do not wait.",
)
@qr_decoder_option
@local_globals
def scan(
    settings: Settings,
    qr_image: str | None,
    wait_s: float,
    link_text: str | None,
    short_code: str | None,
    ack_timeout: float,
    qr_decoder: str,
) -> None:
    """Link the new device whose QR code is in IMAGE, whose short code is given (--code),
    or whose link is given or on stdin.

    Refuses a channel server that is not trusted (the account's own server and
    --trusted-server), shows what is about to happen and asks before sending
    (--yes for scripts). Prints the confirmation code the new device shows too.
    Then waits for the new device's NEW_DEVICE_REGISTERED message, the sign
    that the link is complete, and prints its device id.
    """
    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.errors import UserInterruptError
    from textsecure_provision.flows.master import NOTHING_SENT, link_master

    if sum(x is not None for x in (qr_image, link_text, short_code)) > 1:
        raise click.UsageError("give one of --qr, --link and --code")
    if wait_s and not qr_image:
        raise click.UsageError("--wait needs --qr IMAGE")
    if short_code is not None:
        from textsecure_provision.cli.shortcode import run_code_link

        run_code_link(settings, short_code, ack_timeout)
        return
    try:
        if qr_image and wait_s:
            text = _wait_for_image(qr_image, wait_s, qr_decoder)
        elif qr_image:
            text = _scan(qr_image, qr_decoder)
        elif link_text:
            text = link_text
        else:
            text = _read_stdin_link()
    except KeyboardInterrupt:
        raise UserInterruptError(NOTHING_SENT) from None
    ui = CliUi(Output.from_settings(settings))
    config = flow_config(settings)
    on_sent = None
    if ack_timeout > 0:
        from textsecure_provision.flows.acknowledge import ack_hook

        on_sent = ack_hook(config.store(), timeout_s=ack_timeout)
    ui.run(link_master(config, ui, text, on_sent=on_sent), interrupted=NOTHING_SENT)


def _scan(path: str, decoder: str) -> str:
    from textsecure_provision.qr.scan import scan_text

    return scan_text(path, decoder=decoder)


def _wait_for_image(path: str, wait_s: float, decoder: str) -> str:
    """The link in the first fresh, readable image at ``path`` within ``wait_s`` seconds.

    "Fresh": written less than ``STALE_IMAGE_S`` ago, so a leftover of an earlier run (whose
    channel is long gone) is never scanned; it is replaced by the secondary's new image.
    """
    import os
    import time

    from textsecure_provision.errors import ProvisionError, TimedOutError

    deadline = time.monotonic() + wait_s
    last_error: ProvisionError | None = None
    while True:
        try:
            fresh = time.time() - os.stat(path).st_mtime < STALE_IMAGE_S
        except OSError:
            fresh = False
        if fresh:
            try:
                return _scan(path, decoder)
            except ProvisionError as exc:  # e.g. not an image (yet): keep waiting
                last_error = exc
        if time.monotonic() >= deadline:
            if last_error is not None:
                raise last_error
            raise TimedOutError(
                f"no new QR image at {path} within {wait_s:.0f} s",
                hint="Start `provision secondary --qr-out IMAGE` on the new device (it writes "
                "the image once its channel is open), or give a longer --wait.",
            )
        time.sleep(IMAGE_POLL_S)  # polling a file another process writes


def _read_stdin_link() -> str:
    if sys.stdin.isatty():
        click.echo("Paste the link shown by `provision secondary`, then press Enter:", err=True)
        return sys.stdin.readline(MAX_STDIN_LINK)
    text = sys.stdin.read(MAX_STDIN_LINK + 1)
    if len(text) > MAX_STDIN_LINK:
        raise click.BadParameter("the link on stdin is too long", param_hint="stdin")
    if not text.strip():
        raise click.UsageError("no link: pass --qr IMAGE, --link URI, or the link on stdin")
    return text
