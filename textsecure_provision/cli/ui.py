"""The flows' ``Ui`` for a terminal or a script: QR codes, a countdown, prompts, JSON lines.

Human mode: steps and prompts on stderr, results on stdout. ``--json``: one
object per event on stdout and nothing else there; a QR code is still drawn
on stderr when stderr is a terminal (someone has to scan it), but no
countdown. The countdown is one line rewritten with a carriage return (no
escape sequences), only when stderr is a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import datetime, timezone
from typing import Any

import click

from textsecure_provision.cli.output import Output, colour_enabled
from textsecure_provision.errors import InvalidInputError

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
    ) -> None:
        self.out = out
        self.qr_out = qr_out
        self.print_link = print_link
        self.ascii_qr = ascii_qr
        self.label = label
        self.extra = dict(extra or {})  # added to every JSON event (the demo's "side")
        self._countdown: asyncio.Task[None] | None = None
        self._countdown_width = 0

    # -- Ui -------------------------------------------------------------------------------
    def event(self, name: str, message: str, **fields: Any) -> None:
        self.stop_countdown()
        self.out.progress(name, self._labelled(message), **self.extra, **fields)

    def result(self, name: str, message: str, **fields: Any) -> None:
        self.stop_countdown()
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
        if self._should_draw_qr():
            from textsecure_provision.qr.render import needs_ascii, render_terminal

            ascii_only = self.ascii_qr or needs_ascii(getattr(sys.stderr, "encoding", None))
            self.out.stderr(
                render_terminal(link, ascii_only=ascii_only, colour=colour_enabled(sys.stderr)),
                nl=False,
            )
        where = f" (also saved as {self.qr_out})" if self.qr_out else ""
        self.out.info(
            self._labelled(
                f"Scan this QR code{where} with `provision master scan` on your account's device."
            )
        )
        if code is not None:
            line = self._labelled(code_line(code))
            if self.out.json_mode and _isatty(sys.stderr):
                self.out.stderr(line)  # a person reads this terminal, as the QR code above
            else:
                self.out.info(line)
        if not self.out.json_mode and _isatty(sys.stderr):
            self._start_countdown(expires_in, deadline_in)

    def confirm(self, question: str, *, refusal: str) -> None:
        self.stop_countdown()
        if self.out.assume_yes:
            self.out.info(self._labelled(f"{question} yes (--yes)"))
        self.out.confirm(self._labelled(question), refusal=refusal)

    def ask(self, question: str) -> str:
        self.stop_countdown()
        if not _isatty(sys.stdin):
            raise InvalidInputError(
                f"no terminal to ask for the {question.lower()} on",
                hint="Pass it as an option (e.g. --code), or run the command in a terminal.",
            )
        return str(click.prompt(self._labelled(question), err=True)).strip()

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
