"""PostgreSQL and Redis for the multi-node tests: the shared services, and private throwaway ones.

The shared services are the machine's (127.0.0.1:5432 trust auth, 127.0.0.1:6379;
override with PROVISION_TEST_POSTGRES_URL / PROVISION_TEST_REDIS_URL). Tests
that need them call ``require_services()``: without them a laptop skips with
the reason, while CI (``CI=true``) fails, so a CI run never silently tests less.

The fault tests must stop and restart their services, so they run private ones
instead (``PrivateRedis``, ``PrivatePostgres``: own port, own data folder), and
never disturb the shared services other tests (or other test runs) are using.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "PROVISION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PROVISION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICE_TIMEOUT_S = 20.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip on a laptop; fail in CI, where the services are part of the contract."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the multi-node tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1.0
        ):
            return True
    except OSError:
        return False


def require_services() -> None:
    if not _reachable(POSTGRES_URL, 5432):
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL} (start it, e.g. `.ci/run`)")
    if not _reachable(REDIS_URL, 6379):
        unavailable(f"Redis is not reachable at {REDIS_URL} (start it, e.g. `.ci/run`)")


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + database, query="").geturl()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout_s: float = SERVICE_TIMEOUT_S) -> None:
    """Wait until 127.0.0.1:port accepts connections (or refuses them, for ``up=False``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)  # polling another process's socket: there is nothing to wait on
    raise AssertionError(f"port {port} did not come {'up' if up else 'down'} in time")


class PrivateRedis:
    """A redis-server of our own on a free port, in the foreground (so we can kill it)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (needed for the fault tests)")
        self.binary = str(binary)
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # as abrupt as a crash: nothing is saved (--save "")
            self.proc.wait(10)
        self.proc = None
        wait_port(self.port, up=False)


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb in a temp folder, trust auth, fsync off).

    As root it runs as the ``postgres`` user (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        bindir = _postgres_bin()
        if bindir is None:
            unavailable("PostgreSQL server binaries (initdb) are not installed")
        self.bindir = bindir
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root without a 'postgres' user to run initdb as")
            self.user = "postgres"
        self.folder = Path(tempfile.mkdtemp(prefix="provision-pg-"))
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self.data = self.folder / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            user=self.user,
            capture_output=True,
            timeout=60,
            check=False,
            cwd=self.folder,
        )
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed: {result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c full_page_writes=off")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "log"), "-w", "-t", "30", "start")  # fmt: skip

    def stop(self) -> None:
        # "fast": active sessions are cut off, as in an operator's restart.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
