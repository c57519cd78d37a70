"""The ``provision`` command group: global options, lazy subcommands, errors → exit codes.

Only click is imported here. Each subcommand lives in its own module and is
imported when it is run (or when its ``--help`` is asked for), so that
``provision --help`` stays as fast as ``import click``.
"""

from __future__ import annotations

import gc
import importlib
from typing import TYPE_CHECKING, Any

import click

from textsecure_provision import __version__
from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import setup_logging, split_servers
from textsecure_provision.errors import EXIT_CODES, ProvisionError, UserInterruptError

if TYPE_CHECKING:
    import threading

# Ctrl-C where no command said more (the linking commands do: cli/ui.py, flows' ``state``).
INTERRUPTED = "the command stopped before finishing."

# name -> "module:attribute"; the module is imported only when the command runs.
COMMANDS: dict[str, str] = {
    "qr": "textsecure_provision.cli.qr:qr",
    "server": "textsecure_provision.cli.server:server",
    "register": "textsecure_provision.cli.register:register",
    "secondary": "textsecure_provision.cli.secondary:secondary",
    "master": "textsecure_provision.cli.master:master",
    "verify": "textsecure_provision.cli.verify:verify",
    "devices": "textsecure_provision.cli.devices:devices",
    "whoami": "textsecure_provision.cli.whoami:whoami",
    "demo": "textsecure_provision.cli.demo:demo",
    "receive": "textsecure_provision.cli.receive:receive",
    "reset": "textsecure_provision.cli.reset:reset",
    "send-control": "textsecure_provision.cli.send_control:send_control",
}

# One line each for `provision --help`, without importing the command modules.
SHORT_HELP: dict[str, str] = {
    "qr": "Draw or decode provisioning QR codes.",
    "server": "Run the relay server.",
    "register": "Create an account on the server; this device becomes device 1.",
    "secondary": "On the new device: show a QR code and wait to be linked.",
    "master": "On the account's device: scan a QR code and link the new device.",
    "verify": "Finish a link received with `secondary listen --no-verify`.",
    "devices": "List or remove the account's devices.",
    "whoami": "Show this device's account, device id, server and identity key.",
    "demo": "Run a whole link on loopback with a throw-away server.",
    "receive": "Fetch, decrypt and acknowledge messages from the account's devices.",
    "reset": "Unlink this device if it still can, and delete its data folder.",
    "send-control": "Send a DeviceControl message to the account's other devices.",
}

_EXIT_CODE_EPILOG = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            pause_collector()
            module_name, attr = self.lazy[cmd_name].split(":")
            cmd: click.Command = getattr(importlib.import_module(module_name), attr)
            return cmd
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


COLLECTOR_PAUSE_S = 1.0
_collector_paused = False


def pause_collector() -> threading.Timer | None:
    """The cyclic garbage collector off for this process's first ``COLLECTOR_PAUSE_S``; the
    timer that turns it back on (None if it was off already, or paused once before).

    A command's imports allocate its modules, classes and functions, garbage-free, and the
    collector's runs over that growing heap were ~3 % of a link process's CPU (callgrind,
    ``master scan``; B2). A link ends within that time and never needs it; a longer command
    (the server, ``secondary`` waiting to be scanned, ``receive --wait``) has it back after
    it from a daemon timer, whatever the command does. ``main`` freezes the heap at the end.
    """
    global _collector_paused
    if _collector_paused or not gc.isenabled():
        return None
    import signal
    import threading  # asyncio imports both anyway; not on the `--help` path

    class CollectorTimer(threading.Timer):
        def run(self) -> None:
            # Signals stay the main thread's: a Ctrl-C taken by this thread would set Python's
            # flag but not interrupt the main thread's wait, so it could go unseen for a while.
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            super().run()

    _collector_paused = True
    gc.disable()
    timer = CollectorTimer(COLLECTOR_PAUSE_S, gc.enable)
    timer.daemon = True
    timer.start()
    return timer


class ProvisionGroup(LazyGroup):
    """The root group: renders every ``ProvisionError`` once, with its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except (KeyboardInterrupt, click.Abort):  # Abort: click's prompts on Ctrl-C/Ctrl-D
                raise UserInterruptError(INTERRUPTED) from None
        except ProvisionError as exc:
            settings = ctx.find_object(Settings) or Settings()
            from textsecure_provision.cli.output import Output

            Output.from_settings(settings).error(exc)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            settings = ctx.find_object(Settings) or Settings()
            if settings.verbose:
                raise
            from textsecure_provision.cli.output import Output

            Output.from_settings(settings).error(
                ProvisionError(f"unexpected error: {type(exc).__name__}")
            )
            ctx.exit(1)


@click.group(
    cls=ProvisionGroup,
    lazy=COMMANDS,
    context_settings={"auto_envvar_prefix": "PROVISION", "help_option_names": ["-h", "--help"]},
    epilog=_EXIT_CODE_EPILOG,
)
@click.version_option(__version__, prog_name="provision")
@click.option(
    "--data-dir",
    envvar="PROVISION_HOME",
    type=click.Path(file_okay=False),
    help="Where this device keeps its keys [env PROVISION_HOME; default: the user data folder].",
)
@click.option(
    "--server",
    "server_url",
    metavar="URL",
    envvar="PROVISION_SERVER",
    help="Server base URL, for register and secondary [env PROVISION_SERVER].",
)
@click.option(
    "--trusted-server",
    "trusted_servers",
    metavar="URL",
    multiple=True,
    envvar="PROVISION_TRUSTED_SERVERS",
    help="A server this device trusts (repeatable; default: the account's own server) "
    "[env PROVISION_TRUSTED_SERVERS].",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    envvar="PROVISION_CA_FILE",
    help="Trust this CA (PEM) for TLS [env PROVISION_CA_FILE].",
)
@click.option(
    "--json",
    "json_mode",
    is_flag=True,
    envvar="PROVISION_JSON",
    help="One JSON object per event on stdout [env PROVISION_JSON].",
)
@click.option(
    "--yes",
    "-y",
    "assume_yes",
    is_flag=True,
    envvar="PROVISION_YES",
    help="Answer yes to every prompt [env PROVISION_YES].",
)
@click.option("-v", "--verbose", count=True, help="More output; tracebacks on errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: str | None,
    server_url: str | None,
    trusted_servers: tuple[str, ...],
    ca_file: str | None,
    json_mode: bool,
    assume_yes: bool,
    verbose: int,
) -> None:
    """Link a new device to your account by QR code.

    On the new device run `provision secondary`; on the account's device run
    `provision master --qr IMAGE` (or scan the QR code it shows).
    """
    ctx.obj = Settings(
        data_dir=data_dir,
        server_url=server_url,
        trusted_servers=split_servers(trusted_servers),
        ca_file=ca_file,
        json_mode=json_mode,
        assume_yes=assume_yes,
        verbose=verbose,
    )
    setup_logging(verbose)


def main(argv: list[str] | None = None) -> None:
    """The ``provision`` command; the process ends when it returns (click raises SystemExit)."""
    try:
        cli.main(args=argv, prog_name="provision")
    finally:
        # Everything still alive goes with the process; the interpreter's last full collection
        # would only walk the whole heap first: ~60 ms of the master's CPU after a link and
        # ~90 ms of the secondary's, both on the link's timed path (B2). Frozen objects are
        # skipped by it. Files are not left to it: the store fsyncs and closes its own, and
        # logging and stdout are flushed at exit as before.
        gc.freeze()
