"""``provision master --code``: the short-code half of ``master scan`` (kept apart from it).

With a value, the code is used as given. Alone on a terminal, it asks for the
code, completing words with Tab where ``readline`` exists; alone without a
terminal it is a usage error (exit 2), since nobody could answer.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import flow_config

PROMPT = "Type the code `provision secondary` shows (e.g. 7-revenge-tiger)"
MAX_CODE_INPUT = 200


def run_code_link(settings: Settings, code: str, ack_timeout: float) -> None:
    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.master import NOTHING_SENT
    from textsecure_provision.flows.shortcode import link_master_by_code

    if not code.strip():
        code = ask_code()
    ui = CliUi(Output.from_settings(settings))
    config = flow_config(settings)
    on_sent = None
    if ack_timeout > 0:
        from textsecure_provision.flows.acknowledge import ack_hook

        on_sent = ack_hook(config.store(), timeout_s=ack_timeout)
    ui.run(link_master_by_code(config, ui, code, on_sent=on_sent), interrupted=NOTHING_SENT)


def ask_code() -> str:
    if not sys.stdin.isatty():
        raise click.UsageError(
            "--code needs the code (e.g. --code 7-revenge-tiger) without a terminal"
        )
    from textsecure_provision.cli.output import interruptible
    from textsecure_provision.flows.master import NOTHING_SENT

    with _word_completion(), interruptible(NOTHING_SENT):  # Ctrl-C: exit 130, one line
        text = click.prompt(PROMPT, err=True)
    return str(text)[:MAX_CODE_INPUT]


def completions(text: str) -> list[str]:
    """Completions of the last part of ``text`` (the number and earlier words stay)."""
    from textsecure_provision.protocol.wordlist import complete_word

    head, _, last = text.rpartition("-")
    if not head:  # still typing the number
        return []
    return [f"{head}-{word}" for word in complete_word(last)]


@contextlib.contextmanager
def _word_completion() -> Iterator[None]:
    try:
        import readline
    except ImportError:  # e.g. Windows: no completion, the prompt still works
        yield
        return
    old_completer, old_delims = readline.get_completer(), readline.get_completer_delims()

    def complete(text: str, state: int) -> str | None:
        found = completions(readline.get_line_buffer())
        return found[state] if state < len(found) else None

    readline.set_completer_delims(" ")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    try:
        yield
    finally:
        readline.set_completer(old_completer)
        readline.set_completer_delims(old_delims)
