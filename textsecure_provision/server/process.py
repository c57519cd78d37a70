"""``provision server`` as a child process on 127.0.0.1, found through its ``--port-file``.

``provision demo`` runs its throw-away server this way, and so do the tests that need a real
server process (tests/server_harness.py): one way to start, find and stop it. The server
writes its base URL and a newline to the port file once it listens, so the wait is on that
file (bounded), never on a sleep of a guessed length. Only the standard library is imported:
``provision --help`` must stay light.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from textsecure_provision.errors import ServerUnreachableError, TimedOutError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.02


class ServerProcess:
    """One server process at a time in ``workdir``; ``start`` again after ``stop`` or ``kill``.

    ``db`` (a SQLite file) outlives the process, so a restart finds what was committed.
    ``port`` 0 lets the server pick a free port (a restart then gets another one).
    Each start logs to its own ``server-N.log`` in ``workdir``; ``log()`` joins them.
    """

    def __init__(
        self,
        workdir: Path,
        db: Path | None = None,
        port: int = 0,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.workdir = workdir
        self.db = db if db is not None else workdir / "server.db"
        self.port = port
        self.args = tuple(args)
        self.env = dict(env) if env is not None else _clean_env()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.logs: list[Path] = []

    def start(self) -> str:
        """Start the server and return its base URL once it listens."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        port_file = self.workdir / "server.url"
        port_file.unlink(missing_ok=True)
        log_path = self.workdir / f"server-{len(self.logs)}.log"
        self.logs.append(log_path)
        command = [
            sys.executable, "-m", "textsecure_provision", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--port-file", str(port_file),
            "--db", f"sqlite:///{self.db}", *self.args,
        ]  # fmt: skip
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        try:
            self.url = self._wait_for_url(port_file, log_path)
        except BaseException:
            self.kill()
            raise
        return self.url

    def _wait_for_url(self, port_file: Path, log_path: Path) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            text = port_file.read_text() if port_file.exists() else ""
            if text.endswith("\n"):
                return text.strip()
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServerUnreachableError(f"provision server exited:\n{tail}")
            if time.monotonic() > deadline:
                raise TimedOutError(f"provision server did not start in {self.start_timeout_s} s")
            time.sleep(_POLL_S)  # waiting on another process's file, bounded by the deadline

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM (the server's graceful stop), then SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed beyond what was committed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _clean_env() -> dict[str, str]:
    # The child is configured by its arguments only, not by this shell's PROVISION_* settings.
    return {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
