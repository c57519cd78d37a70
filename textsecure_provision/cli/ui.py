"""The flows' ``Ui`` for a terminal or a script: QR codes, a countdown, prompts, JSON lines.

Human mode: steps and prompts on stderr, results on stdout. ``--json``: one
object per event on stdout and nothing else there; a QR code is still drawn
on stderr when stderr is a terminal (someone has to scan it), but no
countdown. The countdown is one line rewritten with a carriage return (no
escape sequences), only when stderr is a terminal.

On a terminal the QR code is drawn only if it fits the window; otherwise the
user is told so and gets the bare link (and the short code), and the QR code
is drawn when the window grows (SIGWINCH). Ctrl-C anywhere ends the command
with exit 130 and one line: the last ``state`` note the flow gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Coroutine
from datetime import datetime, timezone
from typing import Any, TypeVar

import click

from textsecure_provision.cli.output import Output, colour_enabled, interruptible, prompt_line
from textsecure_provision.errors import InvalidInputError, UserInterruptError

T = TypeVar("T")
RESIZE_SETTLE_S = 0.15  # a window being dragged sends a burst of SIGWINCH: draw once it rests
TEXT_ROWS_BELOW_QR = 2  # the "Scan this QR code" line and the countdown must fit as well

COUNTDOWN_TICK_S = 1.0


def _isatty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}:{seconds % 60:02d}"


def code_line(code: str) -> str:
    """The short-code line under the QR code (fits 80 columns: codes are short)."""
    return f"Or, on your other device: provision master --code {code}"


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CliUi:
    def __init__(
        self,
        out: Output,
        *,
        qr_out: str | None = None,
        print_link: bool = False,
        ascii_qr: bool = False,
        label: str = "",
        extra: dict[str, Any] | None = None,
        remove_qr_out: bool = False,
    ) -> None:
        self.out = out
        self.qr_out = qr_out
        # The image of a channel that no longer works must not be scanned later: removed on
        # close when asked (`secondary --qr-out`; `demo --keep` keeps its image).
        self.remove_qr_out = remove_qr_out
        self._qr_written = False
        self.print_link = print_link
        self.ascii_qr = ascii_qr
        self.label = label
        self.extra = dict(extra or {})  # added to every JSON event (the demo's "side")
        self.interrupt_note = "nothing was changed."
        self._countdown: asyncio.Task[None] | None = None
        self._countdown_width = 0
        self._shown: dict[str, Any] | None = None  # the link on screen, for redraws
        self._resize: asyncio.TimerHandle | None = None
        self._drawn_for: tuple[int, int] | None = None

    def state(self, note: str) -> None:
        self.interrupt_note = note

    # -- Ui -------------------------------------------------------------------------------
    def event(self, name: str, message: str, **fields: Any) -> None:
        self.stop_countdown()
        self._stop_watching()
        self.out.progress(name, self._labelled(message), **self.extra, **fields)

    def result(self, name: str, message: str, **fields: Any) -> None:
        self.stop_countdown()
        self._stop_watching()
        self.out.result(name, self._labelled(message), **self.extra, **fields)

    def channel_opened(
        self,
        link: str,
        *,
        channel_uuid: str,
        expires_in: float,
        deadline_in: float,
        renewed: bool,
        code: str | None = None,
    ) -> None:
        self.stop_countdown()
        if self.qr_out:
            from textsecure_provision.qr.render import write_qr_file

            write_qr_file(link, self.qr_out)  # atomic: a reader never sees half an image
            self._qr_written = True
        event = "channel_renewed" if renewed else "channel_opened"
        now = time.time()
        self.out.emit(
            event,
            **self.extra,
            link=link,
            channel_uuid=channel_uuid,
            expires_at=iso_utc(now + expires_in),
            expires_in=round(expires_in),
            gives_up_in=round(deadline_in),
            **({"code": code} if code is not None else {}),
        )
        if not self.out.json_mode and self.print_link:
            click.echo(link)
        if renewed:
            self.out.info("The QR code expired; here is a new one (the old one no longer works).")
        loop = asyncio.get_running_loop()
        self._shown = {
            "link": link,
            "code_line": code_line(code) if code is not None else None,
            "expires_at": loop.time() + expires_in,
            "deadline_at": loop.time() + deadline_in,
        }
        self._drawn_for = None
        self._show_link()
        self._watch_resizes()

    def _show_link(self) -> None:
        """Draw the QR code (or say why not), the scan line, then the countdown."""
        assert self._shown is not None
        link, line = self._shown["link"], self._shown["code_line"]
        size = _terminal_size(sys.stderr)
        self._drawn_for = size
        drawn = True
        if self._should_draw_qr():  # a person reads this terminal: the code line goes there too
            drawn = self._draw_qr(link, line, size)
        elif line:
            self.out.info(self._labelled(line))
        if drawn:
            where = f" (also saved as {self.qr_out})" if self.qr_out else ""
            scan = (
                f"Scan this QR code{where} with `provision master scan` on your account's device."
            )
        elif self.qr_out:
            scan = f"Or scan the QR code saved as {self.qr_out} with `provision master scan`."
        else:
            scan = ""
        if scan:
            self.out.info(self._labelled(scan))
        if not self.out.json_mode and _isatty(sys.stderr):
            loop = asyncio.get_running_loop()
            self._start_countdown(
                self._shown["expires_at"] - loop.time(), self._shown["deadline_at"] - loop.time()
            )

    def _draw_qr(self, link: str, short_line: str | None, size: tuple[int, int] | None) -> bool:
        """Draw the QR code if it fits; else say so and show the link. True if drawn."""
        from textsecure_provision.qr.render import fit_terminal, needs_ascii, render_terminal

        ascii_only = self.ascii_qr or needs_ascii(getattr(sys.stderr, "encoding", None))
        level: Any = "M"
        if size is not None:
            columns, rows = size
            level, (need_cols, need_rows) = fit_terminal(
                link, columns, rows - TEXT_ROWS_BELOW_QR, ascii_only=ascii_only
            )
            if level is None:
                # Short lines: they must not wrap in the very terminal that is too small.
                lines = [
                    f"The QR code needs {need_cols}x{need_rows + TEXT_ROWS_BELOW_QR}"
                    + (" (less without --ascii)" if self.ascii_qr else "")
                    + f"; this terminal is {columns}x{rows}. Enlarge it to see the code.",
                    "Meanwhile, the link for `provision master --link` on your account's device:",
                    link,
                ]
                if short_line:
                    lines.append(short_line)
                self.out.stderr(self._labelled("\n".join(lines)))
                return False
        self.out.stderr(
            render_terminal(
                link,
                ascii_only=ascii_only,
                colour=colour_enabled(sys.stderr),
                error_level=level,
            ),
            nl=False,
        )
        if short_line:
            self.out.stderr(self._labelled(short_line))
        return True

    def _watch_resizes(self) -> None:
        sigwinch = getattr(signal, "SIGWINCH", None)
        if sigwinch is None or not _isatty(sys.stderr) or not self._should_draw_qr():
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sigwinch, self._on_resize)

    def _on_resize(self) -> None:
        if self._resize is not None:
            self._resize.cancel()
        self._resize = asyncio.get_running_loop().call_later(RESIZE_SETTLE_S, self._redraw)

    def _redraw(self) -> None:
        self._resize = None
        if self._shown is None or _terminal_size(sys.stderr) == self._drawn_for:
            return
        self.stop_countdown()
        self._show_link()

    def _stop_watching(self) -> None:
        self._shown = None
        if self._resize is not None:
            self._resize.cancel()
            self._resize = None
        sigwinch = getattr(signal, "SIGWINCH", None)
        if sigwinch is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(sigwinch)

    def confirm(self, question: str, *, refusal: str) -> None:
        self.stop_countdown()
        if self.out.assume_yes:
            self.out.info(self._labelled(f"{question} yes (--yes)"))
        self.out.confirm(self._labelled(question), refusal=refusal, interrupted=self.interrupt_note)

    def ask(self, question: str) -> str:
        self.stop_countdown()
        if not _isatty(sys.stdin):
            raise InvalidInputError(
                f"no terminal to ask for the {question.lower()} on",
                hint="Pass it as an option (e.g. --code), or run the command in a terminal.",
            )
        with interruptible(self.interrupt_note):
            while True:
                answer = prompt_line(f"{self._labelled(question)}: ").strip()
                if answer:  # an empty line asks again, as click's prompt did
                    return answer

    # -- helpers ----------------------------------------------------------------------------
    def _labelled(self, text: str) -> str:
        if not self.label:
            return text
        return "\n".join(f"[{self.label}] {line}" for line in text.splitlines())

    def _should_draw_qr(self) -> bool:
        # Human mode draws it (unless it went to a file and nobody watches stderr);
        # --json mode draws it only for a person at a terminal.
        if _isatty(sys.stderr):
            return True
        return not self.out.json_mode and not self.qr_out

    def _start_countdown(self, expires_in: float, deadline_in: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def tick() -> None:
            while True:
                elapsed = loop.time() - start
                valid, left = expires_in - elapsed, deadline_in - elapsed
                if valid >= left - 1:  # this QR code lasts until the end anyway
                    line = f"Waiting to be linked: giving up in {_clock(left)}"
                else:
                    qr = (
                        f"QR code valid for {_clock(valid)}"
                        if valid > 0
                        else "renewing the QR code"
                    )
                    line = f"Waiting to be linked: {qr}; giving up in {_clock(left)}"
                pad = max(0, self._countdown_width - len(line))
                self._countdown_width = len(line)
                sys.stderr.write("\r" + line + " " * pad)
                sys.stderr.flush()
                await asyncio.sleep(COUNTDOWN_TICK_S)

        self._countdown = loop.create_task(tick())

    def countdown(self, message: str, seconds: float) -> None:
        """A plain ``message: m:ss left`` countdown on a terminal (the acknowledgement wait).

        Any later event stops it; the flow starts it again with the time left.
        """
        self.stop_countdown()
        if self.out.json_mode or not _isatty(sys.stderr):
            return
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def tick() -> None:
            while True:
                line = f"{self._labelled(message)}: {_clock(seconds - (loop.time() - start))} left"
                pad = max(0, self._countdown_width - len(line))
                self._countdown_width = len(line)
                sys.stderr.write("\r" + line + " " * pad)
                sys.stderr.flush()
                await asyncio.sleep(COUNTDOWN_TICK_S)

        self._countdown = loop.create_task(tick())

    def stop_countdown(self) -> None:
        """Stop the countdown and clear its line (call it before anything else is printed)."""
        if self._countdown is None:
            return
        self._countdown.cancel()
        self._countdown = None
        with contextlib.suppress(Exception):
            sys.stderr.write("\r" + " " * self._countdown_width + "\r")
            sys.stderr.flush()
        self._countdown_width = 0

    def close(self) -> None:
        self.stop_countdown()
        self._stop_watching()
        if self.remove_qr_out and self._qr_written and self.qr_out:
            with contextlib.suppress(OSError):
                os.unlink(self.qr_out)
            self._qr_written = False

    def run(self, flow: Coroutine[Any, Any, T], *, interrupted: str) -> T:
        """``asyncio.run(flow)``; Ctrl-C ends it with ``UserInterruptError`` and the flow's note.

        ``interrupted`` is the note until the flow gives its own (``state``).
        """
        self.interrupt_note = interrupted
        try:
            return asyncio.run(flow)
        except KeyboardInterrupt:
            raise UserInterruptError(self.interrupt_note) from None
        finally:
            self.close()


def _terminal_size(stream: Any) -> tuple[int, int] | None:
    """(columns, rows) of the terminal ``stream`` is on, or None when it is not one."""
    if not _isatty(stream):
        return None
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        size = shutil.get_terminal_size()
    if size.columns <= 0 or size.lines <= 0:
        return None
    return size.columns, size.lines
