"""Shared pieces of the hardening tests: servers (in-process and real processes), raw API
clients, fuzz budgets and throw-away certificates.

Servers here are started by the hardening tests themselves rather than through the
integration fixtures, so that a kill -9 and a restart on the same database (faults) or a
per-test configuration (brute force, fuzzing) are explicit in each test.
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import server_harness as harness  # tests/, on sys.path (tests/conftest.py)
from hypothesis import HealthCheck, settings

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.crypto.signing import sign

TEST_CODE = "246810"
START_TIMEOUT_S = harness.START_TIMEOUT_S
STOP_TIMEOUT_S = harness.STOP_TIMEOUT_S
POLL_S = harness.POLL_S

# -- fuzz budgets ----------------------------------------------------------------------------

LONG_PROFILE = "long"


def fuzz_examples(default: int) -> int:
    """The example budget of one property: ``default`` in the normal run; ``FUZZ_EXAMPLES=N``
    or ``--hypothesis-profile=long`` (tests/hardening/conftest.py) raise it for a long run."""
    env = os.environ.get("FUZZ_EXAMPLES")
    if env:
        return max(1, int(env))
    if settings.get_current_profile_name() == LONG_PROFILE:
        return int(settings.default.max_examples)
    return default


def fuzz(default: int) -> settings:
    """``@fuzz(50)``: hypothesis settings for a bounded fuzz property (no deadline: a live
    server's latency varies, and a slow example is not a failure here)."""
    return settings(
        max_examples=fuzz_examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,  # no example database in the repo; failures print their seed
    )


# -- servers: the suite's one harness (tests/server_harness.py) ---------------------------------

LiveServer = harness.InProcessServer
ServerProcess = harness.ServerProcess
free_port = harness.free_port
wait_for = harness.wait_for
clean_env = harness.clean_env
Pki = harness.Pki
make_pki = harness.make_pki


def start_live_server(*, limiter: Any = None, **fields: Any) -> LiveServer:
    config = harness.server_config(**{"test_registration_code": TEST_CODE, **fields})
    return harness.start_in_process(config, limiter=limiter)


def make_server_process(
    workdir: Path, *args: str, port: int | None = None, test_code: str | None = TEST_CODE
) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    extra = (*args, "--test-registration-code", test_code) if test_code else args
    return ServerProcess(workdir, workdir / "relay.sqlite3", port or free_port(), tuple(extra))


def db_counts(db: Path, tables: Iterable[str]) -> dict[str, int]:
    """Row counts, read through SQLite itself (a second reader is fine in WAL mode)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def integrity_ok(db: Path) -> bool:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


# -- the CLI in the background ----------------------------------------------------------------

FAULT_CLI = Path(__file__).with_name("fault_cli.py")


def start_cli(
    *args: str,
    home: Path,
    server: str | None = None,
    fault: str | None = None,
    marker: Path | None = None,
) -> Any:
    """The real CLI in the background (an e2e_helpers.Background); with ``fault``, through
    fault_cli.py, which pauses it at that point (see there)."""
    from e2e_helpers import Background, cli_env  # tests/e2e, on sys.path via conftest.py

    env = cli_env(home, server)
    argv = [sys.executable, "-m", "textsecure_provision", *args]
    if fault:
        assert marker is not None
        env.update(FAULT_PAUSE_AT=fault, FAULT_MARKER=str(marker))
        argv = [sys.executable, str(FAULT_CLI), *args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    )
    return Background(proc)


# -- the raw API, synchronously --------------------------------------------------------------


def new_number() -> str:
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def new_password() -> str:
    return base64.b64encode(os.urandom(18)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def basic_header(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{username}:{password}".encode())}


@dataclass
class Device:
    number: str
    device_id: int
    password: str = field(repr=False)
    registration_id: int = 1
    identity: KeyPair = field(default_factory=KeyPair.generate, repr=False)

    @property
    def username(self) -> str:
        return self.number if self.device_id == 1 else f"{self.number}.{self.device_id}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def register(client: httpx.Client, number: str | None = None, code: str = TEST_CODE) -> Device:
    number = number or new_number()
    password = new_password()
    registration_id = secrets.randbelow(16380) + 1
    r = client.put(
        f"/v1/accounts/code/{code}",
        json={"registrationId": registration_id, "fetchesMessages": True},
        auth=(number, password),
    )
    assert r.status_code == 200, r.text
    return Device(number, 1, password, registration_id)


def provisioning_code(client: httpx.Client, device: Device) -> str:
    r = client.get("/v1/devices/provisioning_code", auth=device.auth)
    assert r.status_code == 200, r.text
    code: str = r.json()["verificationCode"]
    return code


def link_with_code(client: httpx.Client, master: Device, code: str) -> httpx.Response:
    password = new_password()
    return client.put(
        f"/v1/devices/{code}",
        json={"registrationId": secrets.randbelow(16380) + 1, "fetchesMessages": True},
        auth=(master.number, password),
    )


def linked_pair(client: httpx.Client, registration_id: int) -> tuple[Device, Device]:
    """A new master with keys uploaded, and a device linked to it with ``registration_id``
    (no keys of its own)."""
    master = register(client)
    r = client.put("/v1/keys", json=keys_body(master.identity), auth=master.auth)
    assert r.status_code == 200, r.text
    code = provisioning_code(client, master)
    password = new_password()
    r = client.put(
        f"/v1/devices/{code}", json={"registrationId": registration_id}, auth=(master.number, password)
    )
    assert r.status_code == 200, r.text
    second = Device(master.number, r.json()["deviceId"], password, registration_id, master.identity)
    return master, second


def keys_body(identity: KeyPair, prekeys: int = 3) -> dict[str, Any]:
    spk = KeyPair.generate().public.serialize()
    return {
        "identityKey": b64(identity.public.serialize()),
        "signedPreKey": {"keyId": 1, "publicKey": b64(spk), "signature": b64(sign(identity.private, spk))},
        "preKeys": [
            {"keyId": i + 1, "publicKey": b64(KeyPair.generate().public.serialize())}
            for i in range(prekeys)
        ],
        "lastResortKey": {"keyId": 0xFFFFFF, "publicKey": b64(KeyPair.generate().public.serialize())},
    }
