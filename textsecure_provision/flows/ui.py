"""What a flow needs from its user interface, and two plain implementations.

Flows never print or prompt themselves: they call a ``Ui``. The CLI passes
one that renders human text or JSON lines (``cli/ui.py``), ``provision demo``
one that labels each side, tests a ``RecordingUi`` that logs every call, so
the exact sequence of steps can be asserted.

Event names are the ``--json`` event names (docs/cli.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from textsecure_provision.errors import InvalidInputError, RefusedError


@runtime_checkable
class Ui(Protocol):
    def event(self, name: str, message: str, **fields: Any) -> None:
        """A step along the way (stderr / one JSON line)."""

    def result(self, name: str, message: str, **fields: Any) -> None:
        """The command's outcome (stdout / one JSON line)."""

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
        """A channel is open: show the link as a QR code until it is used or expires, and
        the short code (``provision master --code``) when the server gave one."""

    def confirm(self, question: str, *, refusal: str) -> None:
        """Ask yes/no; raise ``RefusedError(refusal)`` unless the answer is yes."""

    def ask(self, question: str) -> str:
        """Ask for a line of text (e.g. the registration code)."""

    def state(self, note: str) -> None:
        """What is true if the command stops now (Ctrl-C): shown as the one line it ends with.

        Flows call it before each step that changes the answer, e.g. before a request
        whose effect on the server cannot be taken back.
        """

    def countdown(self, message: str, seconds: float) -> None:
        """Show ``seconds`` running down while waiting (a terminal draws it; others may not).

        Any later event ends it; the flow starts it again with the time left.
        """

    def close(self) -> None:
        """The command is over: stop anything still drawing (a countdown)."""


@dataclass
class RecordingUi:
    """A ``Ui`` for tests and embedding: logs every call, answers from a script."""

    answers: dict[str, Any] = field(default_factory=dict)
    """``confirm`` → bool (default True), ``ask`` → str, or a dict question → str."""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def event(self, name: str, message: str, **fields: Any) -> None:
        self.calls.append(("event", name, fields))

    def result(self, name: str, message: str, **fields: Any) -> None:
        self.calls.append(("result", name, fields))

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
        self.calls.append(
            (
                "channel",
                "channel_renewed" if renewed else "channel_opened",
                {"link": link, "channel_uuid": channel_uuid, "code": code},
            )
        )

    def confirm(self, question: str, *, refusal: str) -> None:
        self.calls.append(("confirm", question, {}))
        if not self.answers.get("confirm", True):
            raise RefusedError(refusal)

    def ask(self, question: str) -> str:
        self.calls.append(("ask", question, {}))
        answer = self.answers.get("ask")
        if isinstance(answer, dict):
            answer = answer.get(question)
        if not isinstance(answer, str):
            raise InvalidInputError("no answer scripted")
        return answer

    def state(self, note: str) -> None:
        self.calls.append(("state", note, {}))

    def states(self) -> list[str]:
        """The notes given to ``state`` in order."""
        return [name for kind, name, _ in self.calls if kind == "state"]
    def countdown(self, message: str, seconds: float) -> None:
        self.calls.append(("countdown", message, {"seconds": seconds}))

    def close(self) -> None:
        self.calls.append(("close", "", {}))

    def names(self) -> list[str]:
        """The event/result/channel names in order (prompts left out)."""
        return [name for kind, name, _ in self.calls if kind in ("event", "result", "channel")]

    def fields(self, name: str) -> dict[str, Any]:
        """The fields of the last call named ``name``."""
        for _kind, n, found in reversed(self.calls):
            if n == name:
                return dict(found)
        raise KeyError(name)
