"""Step 8 of §1 through the real CLI: `send-control` and `receive` between the devices of one
account (master + two secondaries), drops, undecryptable messages and stale sessions."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Account, new_number, run, run_here

from textsecure_provision.flows.sessions import new_device_registered, parse_key_bundles
from textsecure_provision.protocol.bodies import OutgoingMessage
from textsecure_provision.protocol.messages import encode_device_control
from textsecure_provision.protocol.session import encrypt, initiate_session
from textsecure_provision.store import DeviceStore
from textsecure_provision.store.sessions import SESSIONS_FILE, SessionStore
from textsecure_provision.transport.api import ApiClient, Credentials

OTHER = "+15550009876"


@dataclass
class Family:
    master: Account
    homes: dict[int, Path]  # device id -> data folder


def link(master: Account, home: Path, background: Any) -> None:
    secondary = background(
        "secondary", "listen", "--json", "--expect-number", master.number,
        home=home, server=master.server,
    )  # fmt: skip
    link_text = secondary.wait_event("channel_opened")["link"]
    # The master's side in this process: these tests are about the sessions, not the link.
    scan = run_here("master", "scan", "--link", link_text, "--yes", "--json", home=master.home)
    assert scan.returncode == 0, scan.stderr
    assert secondary.wait() == 0, secondary.stderr()


@pytest.fixture
def family(master: Account, tmp_path: Path, background: Any) -> Family:
    """Master (1) and two secondaries (2, 3); every announcement already received."""
    homes = {1: master.home, 2: tmp_path / "s1", 3: tmp_path / "s2"}
    link(master, homes[2], background)
    link(master, homes[3], background)
    assert run_here("receive", home=homes[2]).returncode == 0  # device 3's announcement
    return Family(master, homes)


@pytest.fixture
def pair(master: Account, tmp_path: Path, background: Any) -> Family:
    """Master (1) and one secondary (2)."""
    homes = {1: master.home, 2: tmp_path / "s1"}
    link(master, homes[2], background)
    return Family(master, homes)


def receive(home: Path, *args: str) -> list[dict[str, Any]]:
    res = run("receive", "--json", *args, home=home)
    assert res.returncode == 0, res.stderr
    return res.events()


def send_sent_message(home: Path, body: str, *args: str) -> dict[str, Any]:
    res = run("send-control", "sent-message", "--to", OTHER, "--body", body, "--json", *args,
              home=home)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.event("control_sent")


def test_sent_message_from_any_device_reaches_all_others_exactly_once(family: Family) -> None:
    # Newest device first: device 3 initiated its sessions with 1 and 2 and has had no reply
    # on them yet (type 5); device 2 likewise with 1; everything else is type 6 (§7).
    expected_types = {3: {1: 5, 2: 5}, 2: {1: 5, 3: 6}, 1: {2: 6, 3: 6}}
    for sender in (3, 2, 1):
        body = f"hello from device {sender} ✓"
        sent = send_sent_message(family.homes[sender], body, "--timestamp", "1700000000123")
        assert {d["device_id"]: d["type"] for d in sent["devices"]} == expected_types[sender]
        for receiver in expected_types[sender]:
            (event,) = receive(family.homes[receiver])
            assert event["event"] == "message"
            assert event["source"] == family.master.number
            assert event["source_device"] == sender
            assert event["message_type"] == expected_types[sender][receiver]
            assert event["control"] == {
                "type": "SENT_MESSAGE",
                "sent": {"other_number": OTHER, "timestamp": 1700000000123, "body": body},
            }
            assert receive(family.homes[receiver]) == []  # the second run gets nothing
    # Device 2 has now had replies from the master: its next message is a WhisperMessage.
    again = send_sent_message(family.homes[2], "later")
    assert {d["device_id"]: d["type"] for d in again["devices"]} == {1: 6, 3: 6}


def test_receive_wait_returns_with_the_first_message(pair: Family, background: Any) -> None:
    family = pair
    waiting = background("receive", "--json", "--wait", "30", home=family.homes[2])
    started = time.monotonic()
    send_sent_message(family.homes[1], "are you there")
    assert waiting.wait(timeout=30) == 0, waiting.stderr()
    assert time.monotonic() - started < 15  # woken by the message, not by the 30 s limit
    assert waiting.seen_event("message")["control"]["sent"]["body"] == "are you there"
    quiet = run("receive", "--json", "--wait", "1", home=family.homes[2])
    assert quiet.returncode == 0 and quiet.events() == []


def _send_raw(home: Path, destination: str, messages: list[OutgoingMessage]) -> None:
    record = DeviceStore(home).require_record()

    async def go() -> None:
        creds = Credentials(record.number, record.password, record.device_id)
        async with ApiClient(record.server, creds) as api:
            await api.send_messages(destination, messages)

    asyncio.run(go())


def test_control_from_another_account_is_dropped_and_reported(
    master: Account, tmp_path: Path
) -> None:
    stranger_home = tmp_path / "stranger"
    number = new_number()
    reg = run("register", "--number", number, "--code", "424242", home=stranger_home,
              server=master.server)  # fmt: skip
    assert reg.returncode == 0, reg.stderr
    stranger = DeviceStore(stranger_home).require_record()
    ours = DeviceStore(master.home).require_record()
    prekeys_before = len(ours.prekeys)

    async def go() -> None:
        # A real session message, made with the master's real bundle, covering every device
        # of the destination (so the server stores it, §4) — from another account.
        creds = Credentials(stranger.number, stranger.password, stranger.device_id)
        async with ApiClient(stranger.server, creds) as api:
            doc = await api.fetch_keys(master.number, "*")
            bundle = parse_key_bundles(doc, ours.identity.public)[1]
            session = initiate_session(
                stranger.identity, stranger.registration_id, bundle, os.urandom
            )
            plain = encode_device_control(new_device_registered(stranger))
            msg_type, body = encrypt(session, plain)
            await api.send_messages(
                master.number,
                [OutgoingMessage(type=msg_type, destination_device_id=1, body=body,
                                 destination_registration_id=bundle.registration_id,
                                 timestamp=5)],
            )  # fmt: skip

    asyncio.run(go())
    (event,) = receive(master.home)
    assert event["event"] == "dropped"
    assert event["source"] == number
    assert event["reason"] == "not from a device of this account"
    assert "control" not in event  # never decrypted
    assert receive(master.home) == []  # acknowledged
    assert len(DeviceStore(master.home).require_record().prekeys) == prekeys_before
    assert SessionStore(DeviceStore(master.home)).load().peers() == []


def test_undecryptable_message_is_reported_dropped_and_exits_8(pair: Family) -> None:
    family = pair
    s1 = DeviceStore(family.homes[2])
    session = SessionStore(s1).load().session(family.master.number, 1)
    assert session is not None
    _send_raw(
        family.homes[2],
        family.master.number,
        [OutgoingMessage(type=6, destination_device_id=1, body=b"\x33" + b"\x00" * 60,
                         destination_registration_id=session.remote_registration_id,
                         timestamp=1)],
    )  # fmt: skip
    res = run("receive", "--json", home=family.master.home)
    assert res.returncode == 8
    bad = res.event("undecryptable")
    assert (bad["source_device"], bad["message_type"]) == (2, 6)
    assert res.event("error")["error"] == "SessionError"
    assert "new-device-registered" in res.event("error")["hint"]
    assert receive(family.master.home) == []  # it was dropped (acknowledged)
    # The master's next send rebuilds its session with device 2, and it still works.
    sent = send_sent_message(family.master.home, "rebuilt")
    by_device = {d["device_id"]: d["type"] for d in sent["devices"]}
    assert sent["rebuilt"] == [2] and by_device[2] == 5
    assert [e["control"]["sent"]["body"] for e in receive(family.homes[2])] == ["rebuilt"]


def test_removed_and_relinked_devices_are_handled(family: Family) -> None:
    master_home = family.master.home
    # A re-linked device: the stored session names a registration id the server no longer
    # has for device 3 (410). The session is rebuilt from a fresh bundle, once.
    path = master_home / SESSIONS_FILE
    doc = json.loads(path.read_text())
    state = doc["sessions"][family.master.number]["3"]["current"]
    state["remote_registration_id"] = (state["remote_registration_id"] % 16380) + 1
    path.write_text(json.dumps(doc))
    sent = send_sent_message(master_home, "after 410")
    assert sent["rebuilt"] == [3]
    assert sorted(d["device_id"] for d in sent["devices"]) == [2, 3]
    assert [e["control"]["sent"]["body"] for e in receive(family.homes[3])] == ["after 410"]

    # A removed device: its session is dropped and it is no longer sent to.
    assert run("devices", "remove", "2", "--yes", home=master_home).returncode == 0
    res = run("send-control", "sent-message", "--to", OTHER, "--body", "after removal",
              "--json", home=master_home)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.event("device_gone")["device_id"] == 2
    assert [d["device_id"] for d in res.event("control_sent")["devices"]] == [3]
    assert [p for _, p in SessionStore(DeviceStore(master_home)).load().peers()] == [3]
    assert [e["control"]["sent"]["body"] for e in receive(family.homes[3])] == ["after removal"]
    # The removed device can no longer receive at all.
    assert run("receive", home=family.homes[2]).returncode == 7


def test_reannouncing_rebuilds_sessions(family: Family) -> None:
    res = run("send-control", "new-device-registered", "--json", home=family.homes[3])
    assert res.returncode == 0, res.stderr
    sent = res.event("control_sent")
    assert sent["control"] == {"type": "NEW_DEVICE_REGISTERED", "new_device_id": 3}
    assert sorted(sent["rebuilt"]) == [1, 2]
    assert {d["type"] for d in sent["devices"]} == {5}
    for device in (1, 2):
        (event,) = receive(family.homes[device])
        assert event["control"]["new_device_id"] == 3
    # both sides use the new sessions afterwards
    send_sent_message(family.homes[1], "after the re-announcement")
    bodies = [e["control"]["sent"]["body"] for e in receive(family.homes[3])]
    assert bodies == ["after the re-announcement"]


def test_send_control_usage_errors(master: Account) -> None:
    home = master.home
    bad = run("send-control", "sent-message", "--to", "12345", "--body", "x", home=home)
    assert bad.returncode == 2
    assert run("send-control", "sent-message", "--body", "x", home=home).returncode == 2
    assert run("send-control", "sent-message", "--to", OTHER, home=home).returncode == 2
    negative = ("--timestamp", "-1")
    assert run("send-control", "sent-message", "--to", OTHER, "--body", "x", *negative,
               home=home).returncode == 2  # fmt: skip
    assert run("receive", "--wait", "-1", home=home).returncode == 2
    assert run("receive", home=home.parent / "nobody").returncode == 9
