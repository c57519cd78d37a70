"""Steps 7 of §1 through the real CLI and a server subprocess: the announcement is the
acknowledgement. `master scan` exits 0 only once the new device's NEW_DEVICE_REGISTERED
arrived, and 3 when it never does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Account, Result, cli_env, provision_args, run

from textsecure_provision.store import DeviceStore
from textsecure_provision.store.sessions import SessionStore


def link_secondary(master: Account, home: Path, background: Any) -> tuple[Result, Any]:
    """`secondary listen` in the background, `master scan` in the foreground; both exit."""
    secondary = background(
        "secondary", "listen", "--json", "--expect-number", master.number,
        home=home, server=master.server,
    )  # fmt: skip
    link = secondary.wait_event("channel_opened")["link"]
    scan = run("master", "scan", "--link", link, "--yes", "--json", home=master.home)
    assert secondary.wait() == 0, secondary.stderr()
    return scan, secondary


def test_each_announcement_acknowledges_its_link_and_reaches_earlier_devices(
    master: Account, tmp_path: Path, background: Any
) -> None:
    s1_home, s2_home = tmp_path / "s1", tmp_path / "s2"
    scan, s1 = link_secondary(master, s1_home, background)
    assert scan.returncode == 0, scan.stderr
    names = [e["event"] for e in scan.events()]
    assert names == ["link_parsed", "sent", "waiting_ack", "message", "acknowledged"]
    assert scan.event("acknowledged") == {
        "event": "acknowledged", "device_id": 2, "number": master.number,
    }  # fmt: skip
    message = scan.event("message")
    assert (message["source"], message["source_device"], message["message_type"]) == (
        master.number, 2, 5,
    )  # fmt: skip
    assert message["control"] == {"type": "NEW_DEVICE_REGISTERED", "new_device_id": 2}
    assert s1.seen_event("announced")["devices"] == [1]

    scan, s2 = link_secondary(master, s2_home, background)
    assert scan.returncode == 0, scan.stderr
    assert scan.event("acknowledged")["device_id"] == 3  # device 2 existed before: not an ack
    assert sorted(s2.seen_event("announced")["devices"]) == [1, 2]

    # The second secondary's announcement reached the first one too.
    got = run("receive", "--json", home=s1_home)
    assert got.returncode == 0, got.stderr
    (event,) = got.events()
    assert event["event"] == "message"
    assert (event["source_device"], event["message_type"]) == (3, 5)
    assert event["control"] == {"type": "NEW_DEVICE_REGISTERED", "new_device_id": 3}
    assert 3 in SessionStore(DeviceStore(s1_home)).load().devices
    # ...and the master's copy was consumed by its acknowledgement wait.
    again = run("receive", "--json", home=master.home)
    assert again.returncode == 0 and again.events() == []
    assert run("receive", "--json", home=s1_home).events() == []


def test_scan_exits_3_when_the_new_device_never_announces(
    master: Account, tmp_path: Path, background: Any
) -> None:
    # --no-verify: the secondary receives the DeviceInit and exits without registering,
    # so no NEW_DEVICE_REGISTERED ever comes.
    home = tmp_path / "s"
    secondary = background(
        "secondary", "listen", "--no-verify", "--json", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run(
        "master", "scan", "--link", link, "--yes", "--json", "--ack-timeout", "1",
        home=master.home,
    )  # fmt: skip
    assert secondary.wait() == 0, secondary.stderr()
    assert scan.returncode == 3, scan.stderr
    error = scan.event("error")
    assert error["error"] == "TimedOutError"
    assert "did not confirm the link" in error["message"]
    assert "may be incomplete" in error["hint"]
    assert "acknowledged" not in [e["event"] for e in scan.events()]
    assert "sent" in [e["event"] for e in scan.events()]  # it did send: the DeviceInit is out


def test_human_output_names_the_new_device(
    master: Account, tmp_path: Path, background: Any
) -> None:
    home = tmp_path / "s"
    secondary = background(
        "secondary", "--json", "--expect-number", master.number, home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run("master", "--link", link, "--yes", home=master.home)
    assert scan.returncode == 0, scan.stderr
    assert "Device 2 confirmed the link" in scan.stdout
    assert "Waiting up to 120 s" in scan.stderr
    assert secondary.wait() == 0


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")
def test_ack_wait_counts_down_on_a_terminal(
    master: Account, tmp_path: Path, background: Any
) -> None:
    from test_cli_terminal import PtyProcess

    home = tmp_path / "s"
    secondary = background(
        "secondary", "listen", "--no-verify", "--json", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    env = cli_env(master.home, None, NO_COLOR="1", TERM="xterm")
    term = PtyProcess(
        provision_args("master", "scan", "--link", link, "--yes", "--ack-timeout", "2"), env
    )
    try:
        assert term.wait() == 3
    finally:
        term.close()
    screen = term.screen
    assert "\rWaiting for the new device to confirm the link: 0:02 left" in screen
    assert "0:01 left" in screen  # it counts down, rewriting one line
    assert "may be incomplete" in screen
    assert "\x1b[" not in screen
