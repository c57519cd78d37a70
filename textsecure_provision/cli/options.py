"""The global options, accepted after a command's name too (``secondary --server URL``).

Every global option of ``provision`` (``--data-dir``, ``--server``,
``--trusted-server``, ``--ca-file``, ``--json``, ``--yes``, ``-v``) can also be
given after the subcommand, where people naturally put them; both places mean
the same, and a value given after the name wins. The merged settings are also
put back on the root context, so the error rendering in ``cli/main.py`` sees
``--json`` given late. These late copies read no environment variable: the
global option already does (``PROVISION_SERVER``, ...).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from textsecure_provision.cli.context import Settings

F = TypeVar("F", bound=Callable[..., Any])

_LOCAL = {"allow_from_autoenv": False}


def local_globals(func: F) -> F:
    """Add the global options to a command and pass it the merged ``Settings``."""

    @click.option(
        "--data-dir",
        "local_data_dir",
        type=click.Path(file_okay=False),
        help="Same as the global --data-dir.",
        **_LOCAL,
    )
    @click.option(
        "--server", "local_server", metavar="URL", help="Same as the global --server.", **_LOCAL
    )
    @click.option(
        "--trusted-server",
        "local_trusted",
        metavar="URL",
        multiple=True,
        help="Same as the global --trusted-server.",
        **_LOCAL,
    )
    @click.option(
        "--ca-file",
        "local_ca_file",
        type=click.Path(dir_okay=False),
        help="Same as the global --ca-file.",
        **_LOCAL,
    )
    @click.option("--json", "local_json", is_flag=True, help="Same as the global --json.", **_LOCAL)
    @click.option(
        "--yes", "-y", "local_yes", is_flag=True, help="Same as the global --yes.", **_LOCAL
    )
    @click.option(
        "-v", "--verbose", "local_verbose", count=True, help="Same as the global -v.", **_LOCAL
    )
    @click.pass_context  # type: ignore[arg-type]
    @functools.wraps(func)  # keeps the name: click names the command after it
    def wrapper(
        ctx: click.Context,
        *args: Any,
        local_data_dir: str | None,
        local_server: str | None,
        local_trusted: tuple[str, ...],
        local_ca_file: str | None,
        local_json: bool,
        local_yes: bool,
        local_verbose: int,
        **kw: Any,
    ) -> Any:
        settings = ctx.find_object(Settings) or Settings()
        merged = settings._replace(
            data_dir=local_data_dir or settings.data_dir,
            server_url=local_server or settings.server_url,
            trusted_servers=settings.trusted_servers + split_servers(local_trusted),
            ca_file=local_ca_file or settings.ca_file,
            json_mode=settings.json_mode or local_json,
            assume_yes=settings.assume_yes or local_yes,
            verbose=settings.verbose + local_verbose,
        )
        if merged != settings:
            ctx.find_root().obj = merged
            if merged.verbose != settings.verbose:
                setup_logging(merged.verbose)
        return func(merged, *args, **kw)

    return wrapper  # type: ignore[return-value]


def split_servers(values: tuple[str, ...]) -> tuple[str, ...]:
    """PROVISION_TRUSTED_SERVERS may hold several URLs separated by spaces or commas."""
    out: list[str] = []
    for value in values:
        out.extend(v for v in value.replace(",", " ").split() if v)
    return tuple(out)


def setup_logging(verbose: int) -> None:
    if not verbose:
        return
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )


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
