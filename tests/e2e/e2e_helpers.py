"""Helpers for the end-to-end tests: a real `provision server` subprocess (the suite's one
harness, tests/server_harness.py) and CLI subprocesses.

Every wait is on something observable (a file appearing, a JSON line, a
process exiting), each with a deadline; nothing sleeps to paper over a race.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import server_harness as harness  # tests/, on sys.path (tests/conftest.py)

REGISTRATION_CODE = "424242"
START_TIMEOUT_S = harness.START_TIMEOUT_S
CLI_TIMEOUT_S = 60.0
POLL_S = 0.02
# Every test client comes from 127.0.0.1, so the per-address limits (which protect a real
# server from one guesser) would count the whole suite as one client; the per-number limits,
# which fresh numbers per test never reach, stay at their defaults.
SHARED_ADDRESS_LIMITS = [
    f"{name}=10000/3600"
    for name in (
        "sms_code_address",
        "registration_guess_address",
        "code_guess_address",
        "channel_create_address",
        "auth_failure_address",
        "nameplate_allocate_address",
        "nameplate_claim_address",
    )
]


wait_for = harness.wait_for
Server = harness.ServerProcess  # the suite's one server process (tests/server_harness.py)


def start_server(
    workdir: Path, *, channel_ttl_s: float | None = None, extra_args: tuple[str, ...] = ()
) -> Server:
    """``provision server`` on a free port, SQLite in ``workdir``, the test registration code."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--test-registration-code", REGISTRATION_CODE]
    if channel_ttl_s is not None:
        args += ["--channel-ttl", str(channel_ttl_s)]
    for rule in SHARED_ADDRESS_LIMITS:
        args += ["--rate-limit", rule]
    args += extra_args
    return Server(workdir, workdir / "server.db", args=tuple(args)).start()


def new_number() -> str:
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def cli_env(home: Path | None, server_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env.update(NO_COLOR="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    if home is not None:
        env["PROVISION_HOME"] = str(home)
    if server_url is not None:
        env["PROVISION_SERVER"] = server_url
    env.update(extra)
    return env


def provision_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "textsecure_provision", *args]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events() if e.get("event") == name]
        assert found, f"no {name!r} event in {self.stdout!r} (stderr {self.stderr!r})"
        return found[-1]


def run(
    *args: str,
    home: Path | None = None,
    server: str | None = None,
    input: str | None = None,
    timeout: float = CLI_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> Result:
    proc = subprocess.run(
        provision_args(*args),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**cli_env(home, server), **(env or {})},
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_here(*args: str, home: Path | None = None, server: str | None = None) -> Result:
    """The CLI in this process (click's runner), for a test's set-up that is not about the
    process: it saves a subprocess's interpreter start and imports (~0.3 s of CPU each).
    The same environment as ``run`` (no inherited PROVISION_*; no colour)."""
    from click.testing import CliRunner

    from textsecure_provision.cli.main import cli

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROVISION_")}
    env.update(cli_env(home, server))
    result = CliRunner().invoke(cli, list(args), env=env, input="")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@dataclass
class Background:
    """A CLI running in the background; its stdout JSON lines are read as they come."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    stderr_text: str = ""

    def __post_init__(self) -> None:
        self._out = threading.Thread(target=self._pump, daemon=True)
        self._out.start()
        self._err_chunks: list[str] = []
        self._err = threading.Thread(target=self._pump_err, daemon=True)
        self._err.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for chunk in self.proc.stderr:
            self._err_chunks.append(chunk)

    def wait_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON event called ``name`` (earlier ones are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event; seen {self.seen}; {self.stderr()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # keep the end-of-stream marker for later calls
                raise AssertionError(
                    f"exited ({self.proc.wait()}) before {name!r}; seen {self.seen}; "
                    f"stderr {self.stderr()}"
                )
            if not line.strip():
                continue
            event = json.loads(line)
            self.seen.append(event)
            if event.get("event") == name:
                return event

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._out.join(timeout=5)
        self._err.join(timeout=5)
        while True:  # drain whatever the pump read after the last wait_event
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line and line.strip():
                self.seen.append(json.loads(line))
        return code

    def stderr(self) -> str:
        return "".join(self._err_chunks)

    def seen_event(self, name: str) -> dict[str, Any]:
        """The last event called ``name`` read so far (call ``wait()`` first to read all)."""
        found = [e for e in self.seen if e.get("event") == name]
        assert found, f"no {name!r} event in {self.seen}; stderr {self.stderr()}"
        return found[-1]

    def names(self) -> list[str]:
        return [e.get("event", "") for e in self.seen]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def folder_digest(path: Path) -> str:
    """A hash of a folder's names, modes and contents ('absent' if it does not exist)."""
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    h.update(oct(path.stat().st_mode).encode())
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode() + oct(p.stat().st_mode).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class Account:
    number: str
    home: Path
    server: str
