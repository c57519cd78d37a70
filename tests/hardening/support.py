"""Shared pieces of the hardening tests: servers (in-process and real processes), raw API
clients, fuzz budgets and throw-away certificates.

Servers here are started by the hardening tests themselves rather than through the
integration fixtures, so that a kill -9 and a restart on the same database (faults) or a
per-test configuration (brute force, fuzzing) are explicit in each test.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.crypto.signing import sign
from textsecure_provision.server.app import create_app
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.runner import ProvisionServer, uvicorn_config
from textsecure_provision.server.services import Services

TEST_CODE = "246810"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.02

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


# -- an in-process server ----------------------------------------------------------------------


@dataclass
class LiveServer:
    """uvicorn in a background thread, over a real loopback socket (as the integration tests)."""

    config: ServerConfig
    server: ProvisionServer
    thread: threading.Thread
    app: Any

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/temp_websocket"

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "the server did not stop in time"


def start_live_server(*, limiter: Any = None, **fields: Any) -> LiveServer:
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "test_registration_code": TEST_CODE,
        "log_level": "warning",
    }
    defaults.update(fields)
    config = ServerConfig(**defaults)
    app = create_app(config, limiter=limiter)
    srv = ProvisionServer(uvicorn_config(app, config), config)
    thread = threading.Thread(target=srv.run, name="hardening-server", daemon=True)
    thread.start()
    if not srv.started_event.wait(START_TIMEOUT_S):
        srv.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        raise RuntimeError("the test server did not start")
    return LiveServer(config, srv, thread, app)


# -- a real `provision server` process ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll another process's observable state until ``predicate`` is truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISION_", "FAULT_"))}
    env.update(NO_COLOR="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """``provision server`` as its own process, on a database that outlives it."""

    workdir: Path
    db: Path
    port: int
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    logs: list[Path] = field(default_factory=list)

    def start(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        port_file = self.workdir / "server.url"
        port_file.unlink(missing_ok=True)
        log_path = self.workdir / f"server-{len(self.logs)}.log"
        self.logs.append(log_path)
        args = [
            sys.executable, "-m", "textsecure_provision", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--port-file", str(port_file),
            "--db", f"sqlite:///{self.db}", *self.args,
        ]  # fmt: skip
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        proc = self.proc

        def ready() -> str | None:
            if proc.poll() is not None:
                raise AssertionError("provision server exited:\n" + log_path.read_text())
            text = port_file.read_text() if port_file.exists() else ""
            return text.strip() if text.endswith("\n") else None

        try:
            self.url = wait_for(ready, START_TIMEOUT_S, "the server's port file")
        except BaseException:
            self.kill9()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed beyond what was committed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def rss_kib(self) -> int:
        """The process's resident set size (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


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


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(
    folder: Path,
    *,
    san_ips: tuple[str, ...] = ("127.0.0.1",),
    san_dns: tuple[str, ...] = (),
    valid_days: float = 1.0,
    not_before_days: float = -0.01,
) -> Pki:
    """A throw-away CA and a server certificate signed by it (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"hardening test CA {secrets.token_hex(4)}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)  # self-signed
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in san_ips]
    alt += [x509.DNSName(d) for d in san_dns]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(san_dns[0] if san_dns else san_ips[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=not_before_days))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki
