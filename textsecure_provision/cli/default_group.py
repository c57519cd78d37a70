"""A click group with a default subcommand (``provision secondary`` = ``... secondary listen``)."""

from __future__ import annotations

from typing import Any

import click


class DefaultGroup(click.Group):
    """Runs ``default`` when the first argument is not one of the group's subcommands."""

    def __init__(self, *args: Any, default: str, **kw: Any) -> None:
        kw.setdefault("invoke_without_command", False)
        super().__init__(*args, **kw)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        help_names = set(ctx.help_option_names)
        if not args or (args[0] not in self.commands and args[0] not in help_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, f"[{self.default}] [OPTIONS] | COMMAND [ARGS]...")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's options, then the default subcommand's: they are what people look for
        (``secondary --help`` must show ``--qr-out``, ``master --help`` must show ``--qr``)."""
        super().format_options(ctx, formatter)
        command = self.commands.get(self.default)
        if command is None:
            return
        sub_ctx = click.Context(command, info_name=self.default, parent=ctx)
        rows = [
            record
            for param in command.get_params(sub_ctx)
            if (record := param.get_help_record(sub_ctx)) is not None
        ]
        if rows:
            with formatter.section(f"Options of `{ctx.command_path} {self.default}` (the default)"):
                formatter.write_dl(rows)
