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

import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.errors import ProvisionError, RefusedError, UserInterruptError

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
            extra: dict[str, Any] = {}
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int):
                extra["retry_after"] = retry_after  # seconds, as the server's Retry-After said
            self.emit(
                "error",
                exit_code=exc.exit_code,
                error=type(exc).__name__,
                message=exc.message,
                hint=exc.hint,
                **extra,
            )
            return
        if isinstance(exc, UserInterruptError):  # one line: what state things are in
            message = terminal_safe(exc.message)
            click.echo(f"{self.style('Interrupted:', fg='yellow')} {message}", err=True)
            return
        message = terminal_safe(exc.message)
        click.echo(f"{self.style('Error:', fg='red', bold=True)} {message}", err=True)
        if exc.hint:
            click.echo(f"{self.style('Next:', fg='yellow')} {terminal_safe(exc.hint)}", err=True)

    def confirm(
        self,
        question: str,
        *,
        refusal: str = "you did not confirm",
        interrupted: str = "nothing was changed.",
    ) -> None:
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
        with interruptible(interrupted):
            while True:
                answer = prompt_line(f"{terminal_safe(question)} [y/N]: ").strip().lower()
                if answer in ("y", "yes", "n", "no", ""):
                    break
                click.echo("Error: invalid input", err=True)
        if answer not in ("y", "yes"):
            raise RefusedError(refusal)


def prompt_line(text: str) -> str:
    """Show ``text`` on stderr and read one line from the terminal on stdin.

    Not ``input()``: a Ctrl-C that arrives just as the prompt appears, before the read
    has begun, would be noted and then wait until Enter (the signal cannot interrupt a
    read that starts after it). Here the wait is a ``select`` that also watches the
    signal wake-up pipe, so Ctrl-C ends the wait whenever it comes; its handler then
    raises ``KeyboardInterrupt``. End of input raises ``EOFError``.
    """
    import select

    click.echo(text, nl=False, err=True)
    fd = sys.stdin.fileno()
    if threading.current_thread() is not threading.main_thread():
        line = sys.stdin.readline()  # no signals here; nothing better to wait on
    else:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous = signal.set_wakeup_fd(wake_w)
        try:
            while True:
                ready, _, _ = select.select([fd, wake_r], [], [])
                if wake_r in ready:  # a signal came: its handler has run (Ctrl-C raised)
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                if fd in ready:
                    line = sys.stdin.readline()
                    break
        finally:
            signal.set_wakeup_fd(previous)
            os.close(wake_r)
            os.close(wake_w)
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


@contextlib.contextmanager
def interruptible(note: str) -> Iterator[None]:
    """Ctrl-C (or Ctrl-D) at a prompt ends the command at once: ``UserInterruptError(note)``.

    Inside ``asyncio.run`` the first Ctrl-C only cancels the main task, which a blocking
    prompt never notices (the person saw ``^C`` and nothing happened); so for the prompt's
    duration Ctrl-C raises ``KeyboardInterrupt`` again, as in any plain program.
    """
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or Ctrl-D (end of input) at a prompt
        click.echo("", err=True)  # end the prompt's line
        raise UserInterruptError(note) from None
    except click.Abort as exc:  # click's own catch of both, should a click prompt be used
        click.echo("", err=True)
        raise UserInterruptError(note) from exc
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)
