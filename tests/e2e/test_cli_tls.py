"""--ca-file: the whole link over HTTPS and WSS against a server with its own CA."""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import REGISTRATION_CODE, folder_digest, new_number, run
from server_harness import make_pki


def test_link_over_tls_with_ca_file(make_server, tmp_path: Path, background) -> None:
    pki = make_pki(tmp_path / "pki")
    ca_file, cert_file, key_file = pki.ca, pki.cert, pki.key
    srv = make_server(extra_args=("--tls-cert", str(cert_file), "--tls-key", str(key_file)))
    assert srv.url.startswith("https://127.0.0.1:")
    number = new_number()
    master_home, home = tmp_path / "master", tmp_path / "secondary"

    # Without the CA, the certificate cannot be verified: exit 6, nothing stored.
    res = run(
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        "--json",
        home=master_home,
        server=srv.url,
    )
    assert res.returncode == 6
    assert "certificate" in res.event("error")["message"]
    assert folder_digest(master_home) == "absent"
    res = run("secondary", "--json", home=home, server=srv.url)
    assert res.returncode == 6

    ca = {"PROVISION_CA_FILE": str(ca_file)}
    res = run(
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        home=master_home,
        server=srv.url,
        env=ca,
    )
    assert res.returncode == 0, res.stderr
    secondary = background(
        "--ca-file",
        str(ca_file),
        "secondary",
        "--json",
        "--expect-number",
        number,
        home=home,
        server=srv.url,
    )
    link = secondary.wait_event("channel_opened")["link"]
    assert "channel_server=https%3A%2F%2F127.0.0.1" in link
    res = run("master", "--link", link, "--yes", home=master_home, env=ca)
    assert res.returncode == 0, res.stderr
    assert secondary.wait() == 0, secondary.stderr()
    assert secondary.seen_event("registered")["device_id"] == 2
