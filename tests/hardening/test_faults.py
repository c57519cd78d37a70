"""Faults with real processes and kill -9: the server, and the secondary CLI mid-registration.

Every kill is SIGKILL: no handler, no flush, no goodbye. What must hold afterwards:
nothing the server acknowledged (a 200) is lost, nothing acknowledged as deleted comes
back, the database passes SQLite's integrity check, the device's data folder is either as
it was or complete, the user gets a clear message, and running the command again works.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import Background, folder_digest, run

from textsecure_provision.store import DeviceStore

from .support import (
    TEST_CODE,
    Device,
    ServerProcess,
    b64,
    integrity_ok,
    linked_pair,
    make_server_process,
    new_number,
    new_password,
    provisioning_code,
    register,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def relay(tmp_path: Path) -> Any:
    servers: list[ServerProcess] = []

    def make(*args: str) -> ServerProcess:
        srv = make_server_process(tmp_path / f"relay{len(servers)}", *args).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def restart(srv: ServerProcess) -> None:
    """kill -9, check the file, start again on the same database and port."""
    srv.kill9()
    assert integrity_ok(srv.db)
    srv.start()


def cli_register(srv: ServerProcess, home: Path) -> str:
    number = new_number()
    res = run("register", "--number", number, "--code", TEST_CODE, "--json", home=home, server=srv.url)
    assert res.returncode == 0, res.stderr
    return number


# -- the server killed between the provisioning code and the registration ----------------------


def test_code_survives_a_server_kill_and_the_link_completes(relay: Any, tmp_path: Path) -> None:
    """secondary --no-verify holds the DeviceInit (with its code); the server dies; after a
    restart on the same database, `provision verify` registers with that code."""
    srv = relay()
    master_home, home = tmp_path / "master", tmp_path / "secondary"
    number = cli_register(srv, master_home)
    secondary = start_cli(
        "secondary", "--json", "--no-verify", "--expect-number", number, home=home, server=srv.url
    )
    try:
        link = secondary.wait_event("channel_opened")["link"]
        scan = run("master", "--link", link, "--yes", "--json", "--ack-timeout", "0", home=master_home)
        assert scan.returncode == 0, scan.stderr
        assert secondary.wait() == 0, secondary.stderr()
        assert secondary.seen_event("pending_saved")["number"] == number
    finally:
        secondary.kill()
    before = folder_digest(home)

    srv.kill9()  # the code is issued and unused
    assert integrity_ok(srv.db)
    down = run("verify", "--number", number, "--json", home=home)
    assert down.returncode == 6, down.stderr  # unreachable: a clear message, nothing changed
    assert "cannot connect" in down.event("error")["message"]
    assert folder_digest(home) == before

    srv.start()  # same database, same port: the DeviceInit's server URL still holds
    done = run("verify", "--number", number, "--json", home=home)
    assert done.returncode == 0, done.stderr
    assert done.event("registered")["device_id"] == 2
    devices = run("devices", "--json", home=master_home)
    assert [d["id"] for d in devices.events()[0]["devices"]] == [1, 2]


def test_codes_after_restarts_stay_single_use_and_replaced(relay: Any) -> None:
    """Raw API: a code issued before a kill works once after it; codes outstanding across a
    restart all stay valid (a code belongs to one link, §4), each once."""
    srv = relay()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        master = register(c)
        first = provisioning_code(c, master)
    restart(srv)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert link_status(c, master.number, first) == 200
        assert link_status(c, master.number, first) == 403  # single use, across the restart
        second = provisioning_code(c, master)
    restart(srv)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        third = provisioning_code(c, master)  # does not void the second
        assert link_status(c, master.number, second) == 200
        r = c.put(f"/v1/devices/{second}", json={"registrationId": 1}, auth=(master.number, new_password()))
        assert r.json() == {"error": "wrong, expired or already used provisioning code", "code": 403}
    restart(srv)
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert link_status(c, master.number, third) == 200
        assert [d["id"] for d in c.get("/v1/devices/", auth=master.auth).json()["devices"]] == [1, 2, 3, 4]


def link_status(c: httpx.Client, number: str, code: str) -> int:
    r = c.put(f"/v1/devices/{code}", json={"registrationId": 5}, auth=(number, new_password()))
    return r.status_code


# -- the server killed between storing a message and its acknowledgement -------------------


def send(c: httpx.Client, sender: Device, to: Device, body: bytes) -> httpx.Response:
    message = {
        "type": 1,
        "destinationDeviceId": to.device_id,
        "destinationRegistrationId": to.registration_id,
        "body": b64(body),
        "timestamp": 1,
    }
    return c.put(f"/v1/messages/{to.number}", json={"messages": [message]}, auth=sender.auth)


def fetch_all(c: httpx.Client, device: Device, *, ack: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        doc = c.get("/v1/messages/", auth=device.auth).json()
        out += doc["messages"]
        if not ack:
            return out
        for m in doc["messages"]:
            assert c.delete(f"/v1/messages/{m['guid']}", auth=device.auth).status_code == 200
        if not doc["more"]:
            return out


def test_stored_message_survives_a_kill_until_acknowledged(relay: Any) -> None:
    srv = relay()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        master, second = linked_pair(c, 77)
        assert send(c, master, second, b"\x00kept until acked\xff").status_code == 200
    restart(srv)  # stored, not acknowledged
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        (message,) = fetch_all(c, second, ack=False)
        assert base64.b64decode(message["body"]) == b"\x00kept until acked\xff"
        assert (message["source"], message["sourceDevice"]) == (master.number, 1)
        assert fetch_all(c, second, ack=False) == [message]  # fetching is not acknowledging
        assert c.delete(f"/v1/messages/{message['guid']}", auth=second.auth).status_code == 200
        assert fetch_all(c, second, ack=False) == []
    restart(srv)  # acknowledged: gone for good
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert fetch_all(c, second, ack=False) == []
        assert c.delete(f"/v1/messages/{message['guid']}", auth=second.auth).status_code == 404


def test_kill_during_concurrent_sends_and_acks_loses_nothing(relay: Any) -> None:
    """Senders and an acknowledger run flat out; kill -9 lands in the middle. After the
    restart: every message answered 200 and never acknowledged is there, once; no message
    whose DELETE was answered 200 is. (A request whose answer the kill swallowed may have
    happened or not: a send that got no answer may be stored, an ack that got none may
    have deleted; both are allowed, and the client retries or re-fetches.)"""
    srv = relay("--rate-limit", "message_send_device=off")
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        master, second = linked_pair(c, 77)
    stored: set[bytes] = set()
    acked: set[bytes] = set()
    acking: set[bytes] = set()  # DELETE sent: if its answer never came, either outcome is fine
    lock = threading.Lock()
    stop = threading.Event()

    def sender(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            for i in range(100_000):
                if stop.is_set():
                    return
                body = f"{k}-{i}".encode()
                try:
                    ok = send(c, master, second, body).status_code == 200
                except httpx.HTTPError:
                    return  # the server is gone: this one's fate is unknown, either is fine
                if ok:
                    with lock:
                        stored.add(body)

    def acknowledger() -> None:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            while not stop.is_set():
                try:
                    for m in c.get("/v1/messages/", auth=second.auth).json()["messages"]:
                        body = base64.b64decode(m["body"])
                        with lock:
                            acking.add(body)
                        if c.delete(f"/v1/messages/{m['guid']}", auth=second.auth).status_code == 200:
                            with lock:
                                acked.add(body)
                except (httpx.HTTPError, ValueError):
                    return

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=acknowledger))
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(stored) >= 150 and len(acked) >= 30, 60, "traffic before the kill")
        os.kill(srv.pid, signal.SIGKILL)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    srv.proc.wait(10)  # type: ignore[union-attr]
    assert integrity_ok(srv.db)
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        after = [base64.b64decode(m["body"]) for m in fetch_all(c, second, ack=True)]
    assert len(after) == len(set(after)), "a message came back twice"
    assert not set(after) & acked, "an acknowledged message came back"
    missing = stored - acking - set(after)  # acking includes every acked one
    assert not missing, f"{len(missing)} messages answered 200 were lost"
    print(f"\nkill -9 under load: {len(stored)} stored (200), {len(acked)} acked before the kill, "
          f"{len(after)} delivered after the restart, 0 lost")  # fmt: skip


# -- the secondary killed mid-registration ---------------------------------------------------


@pytest.mark.parametrize("point", ["after_register", "before_rename"])
def test_secondary_killed_mid_registration(relay: Any, tmp_path: Path, point: str) -> None:
    srv = relay()
    master_home, home = tmp_path / "master", tmp_path / "secondary"
    number = cli_register(srv, master_home)
    before = folder_digest(home)
    assert before == "absent"
    marker = tmp_path / "paused"
    secondary = start_cli(
        "secondary", "--json", "--expect-number", number,
        home=home, server=srv.url, fault=point, marker=marker,
    )  # fmt: skip
    scan: Background | None = None
    try:
        link = secondary.wait_event("channel_opened")["link"]
        scan = start_cli("master", "--link", link, "--yes", "--json", "--ack-timeout", "3", home=master_home)
        wait_for(marker.exists, 30, f"the secondary to reach {point}")
        # As an operator would see it: the master's device list shows device 2.
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            master = DeviceStore(master_home).require_record()
            auth = (master.number, master.password)
            listed = wait_for(
                lambda: [d["id"] for d in c.get("/v1/devices/", auth=auth).json()["devices"]] == [1, 2],
                10,
                "device 2 on the server",
            )
            assert listed
            keys = c.get(f"/v1/keys/{number}/2", auth=auth).status_code
        os.kill(secondary.proc.pid, signal.SIGKILL)
        assert secondary.wait() == -signal.SIGKILL
        # The master was waiting for NEW_DEVICE_REGISTERED: it says clearly that none came.
        assert scan.wait(30) == 3, scan.stderr()
        error = scan.seen_event("error")
        assert "did not confirm the link" in error["message"]
        assert "provision devices" in error["hint"]
    finally:
        secondary.kill()
        if scan is not None:
            scan.kill()

    # The data folder: never half-written.
    if point == "after_register":
        assert keys == 404  # killed before the keys upload
        assert folder_digest(home) == before  # untouched: it does not even exist
    else:
        assert keys == 200  # killed after the keys upload, inside the atomic write
        leftovers = sorted(p.name for p in home.iterdir())
        assert "device.json" not in leftovers
        assert all(name.startswith(".tmp-device.json.") for name in leftovers), leftovers
    who = run("whoami", "--json", home=home)
    assert who.returncode == 9 and "no account" in who.event("error")["message"]

    # Running the command again works, in the same folder: a fresh link (device 3).
    again = start_cli("secondary", "--json", "--expect-number", number, home=home, server=srv.url)
    try:
        link = again.wait_event("channel_opened")["link"]
        scan2 = run("master", "--link", link, "--yes", "--json", home=master_home)
        assert scan2.returncode == 0, scan2.stderr
        assert again.wait() == 0, again.stderr()
    finally:
        again.kill()
    assert again.seen_event("registered")["device_id"] == 3
    assert scan2.event("acknowledged")["device_id"] == 3
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".tmp-")) == []  # swept
    assert DeviceStore(home).require_record().device_id == 3

    # The half-registered device 2 is visible to the master, and removable.
    listed = run("devices", "--json", home=master_home).events()[0]["devices"]
    assert [d["id"] for d in listed] == [1, 2, 3]
    removed = run("devices", "remove", "2", "--yes", "--json", home=master_home)
    assert removed.returncode == 0, removed.stderr
    listed = run("devices", "--json", home=master_home).events()[0]["devices"]
    assert [d["id"] for d in listed] == [1, 3]
