"""Everything a command shows: human text, or one JSON object per event.

Human mode: results on stdout, progress, prompts and QR codes on stderr, colour
only on a terminal and never with ``NO_COLOR``. ``--json`` mode: exactly one
JSON object per line on stdout for each event, nothing else there.

Human text often carries what a server or a QR code chose (a device name, a
``channel_server``, an error message), so every line written here passes
``terminal_safe``: control characters (ESC, CR, backspace, C1, bidi overrides)
are shown escaped, never obeyed, so no server can move the cursor, recolour or
forge a line. Only ``stderr`` (QR drawings, which are ours) is written as is.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.errors import ProvisionError, RefusedError

# C0 controls but newline, DEL, C1 controls, and the Unicode controls that reorder or
# hide text (bidi embeddings/overrides/isolates, line and paragraph separators).
_CONTROLS = r"\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(rf"[\x00-\x09{_CONTROLS}]")  # newline kept: a message may span lines
_UNSAFE_IN_FIELD = re.compile(rf"[\x00-\x0a{_CONTROLS}]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``); with
    ``one_line``, newlines too (one field of a table row)."""
    return (_UNSAFE_IN_FIELD if one_line else _UNSAFE).sub(_escape, text)


def colour_enabled(stream: Any = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class Output:
    json_mode: bool = False
    assume_yes: bool = False
    verbose: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Output:
        return cls(settings.json_mode, settings.assume_yes, settings.verbose)

    # -- events -------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Write one JSON event line to stdout (only in --json mode)."""
        if self.json_mode:
            click.echo(json.dumps({"event": event, **fields}, separators=(",", ":")))

    def result(self, event: str, human: str, **fields: Any) -> None:
        """A result: JSON on stdout, or the human text on stdout."""
        if self.json_mode:
            self.emit(event, **fields)
        else:
            click.echo(terminal_safe(human))

    def progress(self, event: str, human: str, **fields: Any) -> None:
        """A step along the way: JSON on stdout, or the human text on stderr."""
        if self.json_mode:
            self.emit(event, **fields)
        else:
            self.info(human)

    def info(self, text: str) -> None:
        """Human-only text on stderr (silent in --json mode unless -v)."""
        if not self.json_mode or self.verbose:
            click.echo(terminal_safe(text), err=True)

    def stderr(self, text: str, nl: bool = True) -> None:
        """Always on stderr, in both modes (QR codes, countdowns, prompts)."""
        click.echo(text, err=True, nl=nl)

    def style(self, text: str, **kw: Any) -> str:
        return click.style(text, **kw) if colour_enabled() else text

    # -- errors and prompts ---------------------------------------------------------------
    def error(self, exc: ProvisionError) -> None:
        if self.json_mode:
            self.emit(
                "error",
                exit_code=exc.exit_code,
                error=type(exc).__name__,
                message=exc.message,
                hint=exc.hint,
            )
            return
        message = terminal_safe(exc.message)
        click.echo(f"{self.style('Error:', fg='red', bold=True)} {message}", err=True)
        if exc.hint:
            click.echo(f"{self.style('Next:', fg='yellow')} {terminal_safe(exc.hint)}", err=True)

    def confirm(self, question: str, *, refusal: str = "you did not confirm") -> None:
        """Ask a yes/no question on stderr; raise ``RefusedError`` on no.

        With --yes the answer is yes. Without a terminal to ask on, the answer is
        no: a script must say --yes, so nothing is ever linked silently (§8).
        """
        if self.assume_yes:
            return
        if not sys.stdin.isatty():
            raise RefusedError(
                f"{refusal}: no terminal to ask on",
                hint="Run it in a terminal, or pass --yes if you have checked what it will do.",
            )
        if not click.confirm(terminal_safe(question), default=False, err=True):
            raise RefusedError(refusal)
