"""End-to-end fixtures: a real `provision server` subprocess, and the real CLI in subprocesses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    REGISTRATION_CODE,
    Account,
    Background,
    Server,
    cli_env,
    new_number,
    provision_args,
    run_here,
    start_server,
)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session; tests use fresh numbers and data folders."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """A private server (e.g. with a short channel TTL, or to stop it)."""
    started: list[Server] = []

    def make(**kw: Any) -> Server:
        srv = start_server(tmp_path / f"server{len(started)}", **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def background() -> Iterator[Any]:
    """Start CLIs in the background; any still running at the end are killed."""
    started: list[Background] = []

    def start(
        *args: str,
        home: Path | None = None,
        server: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Background:
        proc = subprocess.Popen(
            provision_args(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**cli_env(home, server), **(env or {})},
        )
        bg = Background(proc)
        started.append(bg)
        return bg

    yield start
    for bg in started:
        bg.kill()


@pytest.fixture
def master(server: Server, tmp_path: Path) -> Account:
    """A freshly registered master (device 1) on the session server (registered in this
    process: test_cli_link.py registers through the CLI process)."""
    number = new_number()
    home = tmp_path / "master"
    res = run_here(
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        "--json",
        home=home,
        server=server.url,
    )
    assert res.returncode == 0, res.stderr
    return Account(number, home, server.url)
