"""Options every linking command also takes after its name (``master scan --qr q.png --yes``).

``--json`` and ``--yes`` are global options, but scripts naturally put them
after the subcommand too; both places mean the same. The merged settings are
also put back on the root context, so the error rendering in ``cli/main.py``
sees ``--json`` given late.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from textsecure_provision.cli.context import Settings

F = TypeVar("F", bound=Callable[..., Any])


def local_globals(func: F) -> F:
    """Add ``--json`` / ``--yes`` to a command and pass it the merged ``Settings``."""

    @click.option("--json", "local_json", is_flag=True, help="Same as the global --json.")
    @click.option("--yes", "-y", "local_yes", is_flag=True, help="Same as the global --yes.")
    @click.pass_context  # type: ignore[arg-type]
    @functools.wraps(func)  # keeps the name: click names the command after it
    def wrapper(
        ctx: click.Context, *args: Any, local_json: bool, local_yes: bool, **kw: Any
    ) -> Any:
        settings = ctx.find_object(Settings) or Settings()
        if local_json or local_yes:
            settings = settings._replace(
                json_mode=settings.json_mode or local_json,
                assume_yes=settings.assume_yes or local_yes,
            )
            ctx.find_root().obj = settings
        return func(settings, *args, **kw)

    return wrapper  # type: ignore[return-value]


QR_DECODERS = ("zxing", "zbar")  # qr/scan.DECODERS, repeated so --help imports no decoder


def qr_decoder_option(func: F) -> F:
    """``--qr-decoder``: which library reads a QR picture (zbar needs the [zbar] extra)."""
    return click.option(
        "--qr-decoder",
        type=click.Choice(QR_DECODERS),
        default=QR_DECODERS[0],
        show_default=True,
        envvar="PROVISION_QR_DECODER",
        show_envvar=True,
        help="The QR decoder: zxing (built in) or zbar (pip install "
        "'textsecure-provision[zbar]' and the libzbar0 system library).",
    )(func)


def flow_config(settings: Settings) -> Any:
    """The flows' view of the global options (imported lazily: flows pull in the core)."""
    from textsecure_provision.flows.config import FlowConfig

    return FlowConfig(
        data_dir=settings.data_dir,
        server_url=settings.server_url,
        trusted_servers=settings.trusted_servers,
        ca_file=settings.ca_file,
    )
