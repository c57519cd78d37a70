"""TLS: `provision server --tls-cert/--tls-key`, and clients that pin a CA with --ca-file.

tests/e2e/test_cli_tls.py proves the good path (the whole link over HTTPS and WSS with the
right CA) and that no CA at all fails. Here, every wrong certificate a client can meet is
refused, on each of the three ways a client reaches a server (HTTPS for register and
master, WSS for the secondary's channel), with exit code 6, a message that says what was
wrong with the certificate, and nothing written:

* a certificate from another CA (--ca-file pins: the system store is not consulted);
* the right CA, but a certificate for another host (hostname / IP mismatch);
* the right CA and host, but expired;
* TLS spoken to a plain-HTTP server, and plain HTTP to a TLS server.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import folder_digest, run

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.link import ProvisioningLink, build_link

from .support import TEST_CODE, Pki, ServerProcess, make_pki, make_server_process, new_number

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")


class Tls:
    def __init__(self, root: Path) -> None:
        self.good = make_pki(root / "good")  # CA A, certificate for 127.0.0.1
        self.other_ca = make_pki(root / "other")  # CA B, certificate for 127.0.0.1
        self.wrong_host = make_pki(root / "host", san_ips=("127.0.0.2",), san_dns=("relay.example",))
        self.expired = make_pki(root / "expired", valid_days=-1, not_before_days=-30)
        self.servers: dict[str, ServerProcess] = {}

    def serve(self, name: str, pki: Pki | None, root: Path) -> ServerProcess:
        args: tuple[str, ...] = ()
        if pki is not None:
            args = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
        srv = make_server_process(root / f"srv-{name}", *args).start()
        self.servers[name] = srv
        return srv


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    root = tmp_path_factory.mktemp("tls")
    t = Tls(root)
    wanted = {"good": t.good, "wrong_host": t.wrong_host, "expired": t.expired, "plain": None}
    try:
        # Four processes start at once: each start is mostly waiting for its port file.
        with ThreadPoolExecutor(len(wanted)) as pool:
            for started in [pool.submit(t.serve, name, pki, root) for name, pki in wanted.items()]:
                started.result()
        yield t
    finally:
        for srv in t.servers.values():
            srv.stop()


def refused(res: Any, *needles: str) -> str:
    assert res.returncode == 6, (res.returncode, res.stdout, res.stderr)
    error = res.event("error")
    assert error["error"] == "ServerUnreachableError"
    message: str = error["message"]
    for needle in needles:
        assert needle in message, message
    assert "--ca-file" in error["hint"]
    return message


def register_cmd(tmp: Path, url: str, ca: Path | None) -> Any:
    args = ["--ca-file", str(ca)] if ca else []
    return run(*args, "register", "--number", new_number(), "--code", TEST_CODE, "--json", home=tmp, server=url)


def secondary_cmd(tmp: Path, url: str, ca: Path | None) -> Any:
    args = ["--ca-file", str(ca)] if ca else []
    return run(*args, "secondary", "--json", "--timeout", "5", home=tmp, server=url)


@pytest.mark.parametrize("command", [register_cmd, secondary_cmd], ids=["https", "wss"])
@pytest.mark.parametrize(
    ("server", "ca", "says"),
    [
        pytest.param("good", "other_ca", ("certificate", "unable to get local issuer certificate"),
                     id="another-ca"),
        pytest.param("wrong_host", "wrong_host", ("mismatch",), id="another-host"),
        pytest.param("expired", "expired", ("expired",), id="expired"),
    ],
)  # fmt: skip
def test_a_certificate_that_cannot_be_verified_is_refused(
    tls: Tls, tmp_path: Path, command: Any, server: str, ca: str, says: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    res = command(home, tls.servers[server].url, getattr(tls, ca).ca)
    refused(res, "could not be verified", *says)
    assert folder_digest(home) == "absent"


def test_master_refuses_before_anything_is_sent(tls: Tls, tmp_path: Path) -> None:
    """A master with the right CA registers; the same master handed a wrong CA fails at its
    first request (the provisioning code), so no DeviceInit goes anywhere."""
    home = tmp_path / "master"
    url = tls.servers["good"].url
    assert register_cmd(home, url, tls.good.ca).returncode == 0
    before = folder_digest(home)
    link = build_link(ProvisioningLink("0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10", url, KeyPair.generate().public))
    res = run("--ca-file", str(tls.other_ca.ca), "master", "--link", link, "--yes", "--json", home=home)
    refused(res, "could not be verified")
    assert [e["event"] for e in res.events()] == ["link_parsed", "error"]  # nothing "sent"
    assert folder_digest(home) == before


def test_tls_to_a_plain_server_and_plain_to_a_tls_server(tls: Tls, tmp_path: Path) -> None:
    plain = tls.servers["plain"].url
    res = register_cmd(tmp_path / "a", plain.replace("http://", "https://"), tls.good.ca)
    refused(res, "TLS connection")
    res = secondary_cmd(tmp_path / "b", plain.replace("http://", "https://"), tls.good.ca)
    refused(res, "TLS connection")
    good = tls.servers["good"].url
    res = register_cmd(tmp_path / "c", good.replace("https://", "http://"), None)
    assert res.returncode == 6, res.stderr  # the TLS server drops the plain request
    assert folder_digest(tmp_path / "c") == "absent"


def test_server_needs_both_halves_of_its_tls_pair(tls: Tls) -> None:
    res = run("server", "--port", "0", "--tls-cert", str(tls.good.cert))
    assert res.returncode == 2
    assert "--tls-cert and --tls-key go together" in res.stderr
