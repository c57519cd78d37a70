"""``provision server`` as a real process: defaults, port file, env vars, refusals, TLS, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from import_probe import modules_loaded  # tests/, on sys.path (tests/conftest.py)
from server_harness import make_pki  # tests/, on sys.path (tests/conftest.py)

START_TIMEOUT_S = 20.0


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


class ServerProcess:
    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        port_file: Path,
        log: Path,
        global_args: tuple[str, ...] = (),
    ) -> None:
        self.port_file = port_file
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "textsecure_provision", *global_args, "server", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited:\n" + self.log.read_text())
            if self.port_file.exists():
                text = self.port_file.read_text()
                assert text.endswith("\n")
                return text.strip()
            time.sleep(0.05)  # waiting for another process's file: nothing to wait on
        raise AssertionError("no port file:\n" + self.log.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return int(self.proc.returncode)


Spawn = Callable[..., ServerProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    procs: list[ServerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        port_file: Path | None = None,
        global_args: tuple[str, ...] = (),
    ) -> ServerProcess:
        port_file = port_file or tmp_path / f"url{len(procs)}"
        proc = ServerProcess(
            list(args),
            env or _env(tmp_path),
            port_file,
            tmp_path / f"log{len(procs)}",
            global_args,
        )
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def test_defaults_env_vars_and_clean_stop(tmp_path: Path, spawn: Spawn) -> None:
    """No option on the command line: port and port file from PROVISION_SERVER_*, the
    database in the user data folder (0700), /health answers, SIGTERM exits 0."""
    port_file = tmp_path / "url-env"
    env = _env(tmp_path, PROVISION_SERVER_PORT="0", PROVISION_SERVER_PORT_FILE=str(port_file))
    proc = spawn(env=env, port_file=port_file)
    url = proc.wait_url()
    assert url.startswith("http://127.0.0.1:")
    r = httpx.get(f"{url}/health", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    folder = tmp_path / "xdg" / "textsecure-provision" / "server"
    assert (folder / "relay.sqlite3").exists()
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert proc.stop() == 0


def test_data_dir_keeps_the_database_apart(tmp_path: Path, spawn: Spawn) -> None:
    """`provision --data-dir X server` (or `server --data-dir X`) keeps its database under X:
    two servers with different folders never share one database."""
    first = spawn("--port", "0", "--port-file", str(tmp_path / "u1"),
                  "--test-registration-code", "424242",
                  global_args=("--data-dir", str(tmp_path / "one")), port_file=tmp_path / "u1")  # fmt: skip
    second = spawn("--port", "0", "--port-file", str(tmp_path / "u2"),
                   "--data-dir", str(tmp_path / "two"), port_file=tmp_path / "u2")  # fmt: skip
    url_one, url_two = first.wait_url(), second.wait_url()
    assert (tmp_path / "one" / "relay.sqlite3").exists()
    assert (tmp_path / "two" / "relay.sqlite3").exists()
    assert ((tmp_path / "one").stat().st_mode & 0o777) == 0o700
    assert not (tmp_path / "xdg" / "textsecure-provision" / "server").exists()
    # An account made on the first is unknown to the second.
    number = "+15550002222"
    body = {"registrationId": 7, "fetchesMessages": True}
    r = httpx.put(f"{url_one}/v1/accounts/code/424242", json=body, auth=(number, "pw" * 16))
    assert r.status_code == 200, r.text
    r = httpx.get(f"{url_two}/v1/devices/", auth=(number, "pw" * 16), timeout=5)
    assert r.status_code == 401
    r = httpx.get(f"{url_one}/v1/devices/", auth=(number, "pw" * 16), timeout=5)
    assert r.status_code == 200
    assert first.stop() == 0 and second.stop() == 0


def test_test_code_on_a_public_bind_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "textsecure_provision", "server", "--host", "0.0.0.0",
         "--port", "0", "--test-registration-code", "123456"],
        capture_output=True, text=True, env=_env(tmp_path), timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "allow-test-code-on-public-bind" in out.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--rate-limit", "nosuch=1/2"], "unknown rate limit"),
        (["--rate-limit", "code_guess_number=lots"], "NAME=COUNT/SECONDS"),
        (["--registration-codes", "test"], "--test-registration-code"),
        (["--tls-cert", __file__], "--tls-key"),
        (["--channel-ttl", "0"], "channel-ttl"),
        (["--redis", "http://127.0.0.1:6379"], "--redis takes a redis://"),
        (["--redis", "redis://127.0.0.1:6379", "--redis-prefix", "a b"], "--redis-prefix"),
        (["--db", "postgresql://u@127.0.0.1:1/x?schema=Bad-Name"], "schema="),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "textsecure_provision", "server", "--port", "0", *args],
        capture_output=True, text=True, env=_env(tmp_path), timeout=30,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once this returns


@pytest.mark.parametrize("which", ["redis", "postgres"])
def test_an_unreachable_dependency_stops_the_start_with_a_clear_error(
    tmp_path: Path, which: str
) -> None:
    """A node that cannot reach PostgreSQL or Redis at start exits (its supervisor retries)
    rather than serving 503s it could never recover from by itself."""
    port = _closed_port()
    args = (
        ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--redis", f"redis://127.0.0.1:{port}/0"]
        if which == "redis"
        else ["--db", f"postgresql://postgres@127.0.0.1:{port}/x"]
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "textsecure_provision", "server", "--port", "0", *args],
        capture_output=True, text=True, env=_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert f"cannot reach {'Redis' if which == 'redis' else 'PostgreSQL'} at" in out.stderr
    assert "Application startup failed" in out.stderr
    assert time.monotonic() - started < 20


def test_cli_module_imports_nothing_heavy() -> None:
    heavy = ["starlette", "uvicorn", "httpx", "websockets", "textsecure_provision.server"]
    assert modules_loaded("import textsecure_provision.cli.server", heavy) == []


def test_tls(tmp_path: Path, spawn: Spawn) -> None:
    pki = make_pki(tmp_path / "pki")
    proc = spawn(
        "--port", "0", "--port-file", str(tmp_path / "url0"), "--db", str(tmp_path / "t.db"),
        "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
    )  # fmt: skip
    url = proc.wait_url()
    assert url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    r = httpx.get(f"{url}/health", verify=ctx, timeout=5)
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):  # an unpinned client refuses the certificate
        httpx.get(f"{url}/health", timeout=5)

    async def channel() -> dict[str, str]:
        from websockets.asyncio.client import connect

        ws_url = url.replace("https://", "wss://") + "/v1/temp_websocket"
        async with connect(ws_url, ssl=ctx, open_timeout=5) as ws:
            doc: dict[str, str] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return doc

    assert set(asyncio.run(channel())) == {"uuid"}
    assert proc.stop() == 0
