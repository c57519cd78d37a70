"""A whole link through the real CLI and a real server: register, listen, scan, devices, verify."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

from e2e_helpers import REGISTRATION_CODE, Account, folder_digest, new_number, run

from textsecure_provision.store import DeviceStore


def test_register_creates_device_1(server, tmp_path: Path) -> None:
    number, home = new_number(), tmp_path / "master"
    reg = run("register", "--number", number, "--code", REGISTRATION_CODE, "--json",
              home=home, server=server.url)  # fmt: skip
    assert reg.returncode == 0, reg.stderr
    master = Account(number, home, server.url)
    res = run("whoami", "--json", home=master.home)
    assert res.returncode == 0, res.stderr
    (doc,) = res.events()
    assert set(doc) == {"number", "device_id", "server", "identity_key"}
    assert doc["number"] == master.number
    assert doc["device_id"] == 1
    assert doc["server"] == master.server
    assert stat.S_IMODE(master.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((master.home / "device.json").stat().st_mode) == 0o600


def test_full_link_with_qr_image(master: Account, tmp_path: Path, background) -> None:
    qr = tmp_path / "q.png"
    home = tmp_path / "secondary"
    secondary = background(
        "secondary",
        "listen",
        "--qr-out",
        str(qr),
        "--json",
        "--expect-number",
        master.number,
        home=home,
        server=master.server,
    )
    opened = secondary.wait_event("channel_opened")
    assert qr.exists()
    assert opened["link"].startswith("textsecure-device-init:/?channel_uuid=")
    assert opened["expires_in"] > 0

    started = time.monotonic()
    scan = run("master", "scan", "--qr", str(qr), "--yes", "--json", home=master.home)
    assert scan.returncode == 0, scan.stderr
    assert secondary.wait() == 0, secondary.stderr()
    elapsed = time.monotonic() - started
    print(f"\nfull link wall time (master scan start to both exited): {elapsed:.3f} s")

    sent = scan.event("sent")
    received = secondary.seen_event("device_init_received")
    assert received["number"] == master.number
    assert received["confirmation_code"] == sent["confirmation_code"]
    registered = secondary.seen_event("registered")
    assert registered["device_id"] == 2
    # --json: nothing but JSON objects on stdout, each with an event name
    assert all("event" in e for e in secondary.seen)
    assert secondary.names() == [
        "channel_opened",
        "device_init_received",
        "registered",
        "announced",
    ]
    assert scan.event("acknowledged")["device_id"] == 2  # §1 step 7: the link is complete

    devices = run("devices", "--json", home=master.home)
    assert devices.returncode == 0, devices.stderr
    (doc,) = devices.events()
    assert [d["id"] for d in doc["devices"]] == [1, 2]
    assert set(doc["devices"][0]) == {"id", "name", "created", "last_seen"}

    mine = run("whoami", "--json", home=master.home).events()[0]
    theirs = run("whoami", "--json", home=home).events()[0]
    assert theirs["device_id"] == 2
    assert theirs["number"] == master.number
    assert theirs["identity_key"] == mine["identity_key"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for f in home.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600

    # The secondary lists the same devices with its own credentials.
    assert [d["id"] for d in run("devices", "--json", home=home).events()[0]["devices"]] == [1, 2]


def test_default_subcommands_and_link_on_stdin(master: Account, tmp_path: Path, background) -> None:
    home = tmp_path / "secondary"
    # `provision secondary` alone is `secondary listen`; `master` alone is `master scan`
    secondary = background(
        "--json", "--yes", "secondary", "--name", "tablet", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run("--yes", "master", home=master.home, input=link + "\n")
    assert scan.returncode == 0, scan.stderr
    assert "Confirmation code:" in scan.stdout
    assert secondary.wait() == 0, secondary.stderr()
    devices = run("devices", "--json", home=master.home).events()[0]["devices"]
    assert {d["id"]: d["name"] for d in devices}[2] == "tablet"


def test_no_verify_then_verify_from_another_process(
    master: Account, tmp_path: Path, background
) -> None:
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "listen", "--no-verify", "--json", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    # The master waits for the acknowledgement, which only `verify` will send.
    scan = background("master", "scan", "--link", link, "--yes", "--json", home=master.home)
    code = scan.wait_event("sent")["confirmation_code"]
    assert secondary.wait() == 0, secondary.stderr()
    pending = secondary.seen_event("pending_saved")
    assert pending["number"] == master.number
    assert pending["confirmation_code"] == code
    pending_file = home / "pending_link.json"
    assert stat.S_IMODE(pending_file.stat().st_mode) == 0o600
    assert not (home / "device.json").exists()

    # A wrong confirmation code or number is refused, and changes nothing.
    before = folder_digest(home)
    wrong = "000 000" if code != "000 000" else "111 111"
    res = run("verify", "--number", master.number, "--code", wrong, "--json", home=home)
    assert res.returncode == 4
    assert res.event("error")["error"] == "ConfirmationMismatchError"
    res = run("verify", "--number", "+15550009999", "--code", code, home=home)
    assert res.returncode == 4
    assert "Restart" in res.stderr
    assert folder_digest(home) == before

    res = run("verify", "--number", master.number, "--code", code, "--json", home=home)
    assert res.returncode == 0, res.stderr
    assert res.event("registered")["device_id"] == 2
    assert not pending_file.exists()
    assert DeviceStore(home).require_record().device_id == 2
    assert run("verify", "--yes", home=home).returncode == 9  # nothing pending any more
    assert scan.wait() == 0, scan.stderr()
    assert scan.seen_event("acknowledged")["device_id"] == 2


def test_second_scan_of_the_same_qr_does_not_break_the_first_link(
    master: Account, tmp_path: Path, background
) -> None:
    """Issue 11 as a new user hit it: listen --no-verify, scan, scan the same QR again, verify.
    The second scan fails (the channel is used: exit 7) and the first link still completes."""
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "listen", "--no-verify", "--json", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    first = background("master", "scan", "--link", link, "--yes", "--json", home=master.home)
    code = first.wait_event("sent")["confirmation_code"]
    assert secondary.wait() == 0, secondary.stderr()
    again = run("master", "scan", "--link", link, "--yes", "--json", "--ack-timeout", "0",
                home=master.home)
    assert again.returncode == 7, again.stderr
    assert again.event("error")["error"] == "ChannelGoneError"
    res = run("verify", "--number", master.number, "--code", code, "--json", home=home)
    assert res.returncode == 0, res.stderr
    assert res.event("registered")["device_id"] == 2
    assert first.wait() == 0, first.stderr()
    assert first.seen_event("acknowledged")["device_id"] == 2


def test_devices_remove(master: Account, tmp_path: Path, background) -> None:
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "--json", "--expect-number", master.number, home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    assert run("master", "--link", link, "--yes", home=master.home).returncode == 0
    assert secondary.wait() == 0
    res = run("devices", "remove", "1", "--yes", home=master.home)
    assert res.returncode == 2  # device 1 cannot be removed
    res = run("devices", "remove", "2", "--yes", "--json", home=master.home)
    assert res.returncode == 0, res.stderr
    assert res.event("device_removed")["device_id"] == 2
    assert [d["id"] for d in run("devices", "--json", home=master.home).events()[0]["devices"]] == [
        1
    ]
    # The removed device's credentials are gone on the server: it is told it is no longer
    # linked, and given the way out.
    res = run("devices", "--json", home=home)
    assert res.returncode == 7
    error = res.event("error")
    assert error["error"] == "DeviceUnlinkedError"
    assert "no longer accepts this device (device 2 of" in error["message"]
    assert "provision reset" in error["hint"]
    res = run("reset", "--yes", "--json", home=home)
    assert res.returncode == 0, res.stderr
    assert res.event("reset_already_unlinked")["device_id"] == 2
    assert res.event("reset_done") == {
        "event": "reset_done", "path": str(home), "unlinked": False, "device_id": 2
    }  # fmt: skip
    assert not home.exists()


def test_human_devices_and_whoami(master: Account) -> None:
    res = run("devices", home=master.home)
    assert res.returncode == 0
    assert "(this device)" in res.stdout
    res = run("whoami", home=master.home)
    assert master.number in res.stdout and "device id:    1" in res.stdout


def test_print_link_and_svg_qr_out(server, tmp_path: Path, background) -> None:
    res = run(
        "secondary", "--print-link", "--timeout", "1", home=tmp_path / "s", server=server.url
    )
    assert res.returncode == 3  # nobody scanned it
    (link,) = res.stdout.splitlines()  # the bare link is all there is on stdout
    assert link.startswith("textsecure-device-init:/?channel_uuid=")
    assert "Next:" in res.stderr
    svg = tmp_path / "q.svg"
    bg = background("secondary", "--json", "--qr-out", str(svg), "--timeout", "2",
                    home=tmp_path / "s", server=server.url)  # fmt: skip
    bg.wait_event("channel_opened")
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert bg.wait() == 3
    assert not svg.exists()  # the image of a channel that is gone is not left to be scanned
    assert folder_digest(tmp_path / "s") == "absent"


def test_demo_links_two_devices() -> None:
    res = run("demo", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    events = res.events()
    sides = [(e.get("side"), e["event"]) for e in events]
    assert ("master", "sent") in sides
    assert ("secondary", "registered") in sides
    done = res.event("demo_done")
    assert done["devices"] == [1, 2] and done["device_id"] == 2
    sent = next(e for e in events if e["event"] == "sent")
    received = next(e for e in events if e["event"] == "device_init_received")
    assert sent["confirmation_code"] == received["confirmation_code"]


def test_verbose_logs_hold_no_secrets(server, tmp_path: Path, background) -> None:
    number = new_number()
    master_home, home = tmp_path / "m", tmp_path / "s"
    reg = run(
        "-vv",
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        home=master_home,
        server=server.url,
    )
    assert reg.returncode == 0, reg.stderr
    assert "DEBUG" in reg.stderr  # the logs are really on
    secondary = background(
        "-vv", "secondary", "--json", "--expect-number", number, home=home, server=server.url
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run("-vv", "master", "--link", link, "--yes", home=master_home)
    assert scan.returncode == 0, scan.stderr
    assert secondary.wait() == 0, secondary.stderr()
    logs = reg.stderr + scan.stderr + secondary.stderr()
    secrets = [
        REGISTRATION_CODE,
        DeviceStore(master_home).require_record().password,
        DeviceStore(home).require_record().password,
    ]
    for secret in secrets:
        assert secret not in logs
    # no code in any URL: /v1/devices/{code} and /v1/accounts/code/{code}
    assert not re.search(r"/v1/devices/\d{6,}", logs)
    assert not re.search(r"/v1/accounts/code/\d", logs)
    assert '"message"' not in logs  # the DeviceInit frame is never logged
