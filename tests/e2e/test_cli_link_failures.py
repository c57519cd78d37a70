"""Every way a link can fail, each with its exit code, and the data folder left as it was."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Account, Server, folder_digest, new_number, run

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.link import ProvisioningLink, build_link, parse_link
from textsecure_provision.protocol.messages import (
    DeviceInitMessage,
    IdentityKeyPayload,
    decode_device_init,
    encode_device_init,
)
from textsecure_provision.protocol.provisioning import seal_device_init
from textsecure_provision.store import DeviceStore
from textsecure_provision.transport.api import ApiClient, Credentials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_crafted(
    master: Account,
    link_text: str,
    *,
    tamper: bool = False,
    code: int | None = None,
    raw: bytes | None = None,
) -> str:
    """As the master would, but with the core directly: seal, maybe tamper, PUT to the channel.

    Returns the provisioning code used (fetched from the server unless given).
    """
    record = DeviceStore(master.home).require_record()
    link = parse_link(link_text)

    async def go() -> str:
        creds = Credentials(record.number, record.password, record.device_id)
        async with ApiClient(record.server, creds) as api:
            used = code if code is not None else int(await api.fetch_provisioning_code())
            payload = IdentityKeyPayload(record.identity, record.number, record.server, False, used)
            device_init = seal_device_init(payload, link.public_key).device_init
            if tamper:
                msg = decode_device_init(device_init)
                body = bytearray(msg.identity_key_message)
                body[40] ^= 0x01  # one bit of the ciphertext
                device_init = encode_device_init(
                    DeviceInitMessage(msg.master_ephemeral, bytes(body))
                )
            await api.send_to_channel(link.channel_uuid, raw if raw is not None else device_init)
            return str(used)

    return asyncio.run(go())


def test_master_refuses_untrusted_channel_server(master: Account) -> None:
    link = build_link(
        ProvisioningLink(
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "https://evil.example.net",
            KeyPair.generate().public,
        )
    )
    before = folder_digest(master.home)
    res = run("master", "scan", "--link", link, "--yes", "--json", home=master.home)
    assert res.returncode == 5
    err = res.event("error")
    assert err["error"] == "UntrustedServerError"
    assert "evil.example.net" in err["message"]
    assert "--trusted-server" in err["hint"]
    assert [e["event"] for e in res.events()] == ["error"]  # nothing was sent
    assert folder_digest(master.home) == before


def test_secondary_refuses_untrusted_server_in_device_init(
    master: Account, tmp_path: Path, background
) -> None:
    # The secondary talks to the same server under another name (localhost): the
    # DeviceInit names 127.0.0.1, which the secondary was never told to trust.
    other_name = master.server.replace("127.0.0.1", "localhost")
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "--json", "--expect-number", master.number, home=home, server=other_name
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run(
        "--trusted-server", other_name, "master", "--link", link, "--yes", "--ack-timeout", "0",
        home=master.home,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    assert secondary.wait() == 5
    err = secondary.seen_event("error")
    assert err["error"] == "UntrustedServerError"
    assert "device_init_received" not in secondary.names()
    assert folder_digest(home) == "absent"


def test_number_mismatch_exits_4_and_stores_nothing(
    master: Account, tmp_path: Path, background
) -> None:
    home = tmp_path / "secondary"
    home.mkdir(mode=0o700)
    before = folder_digest(home)
    secondary = background(
        "secondary", "--json", "--expect-number", new_number(), home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    scan = run("master", "--link", link, "--yes", "--ack-timeout", "0", home=master.home)
    assert scan.returncode == 0
    assert secondary.wait() == 4
    assert secondary.seen_event("error")["error"] == "NumberMismatchError"
    assert folder_digest(home) == before
    # the server never saw a registration: still one device
    devices = run("devices", "--json", home=master.home).events()[0]["devices"]
    assert [d["id"] for d in devices] == [1]


def test_no_terminal_and_no_yes_means_no(master: Account, tmp_path: Path, background) -> None:
    # §8: a QR from an untrusted source must never link silently.
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "--json", "--timeout", "30", home=home, server=master.server
    )
    link = secondary.wait_event("channel_opened")["link"]
    res = run("master", "--link", link, "--json", home=master.home)
    assert res.returncode == 4
    assert res.event("error")["error"] == "RefusedError"
    # The secondary, without --yes or --expect-number and no terminal, refuses too.
    scan = run("master", "--link", link, "--yes", "--ack-timeout", "0", home=master.home)
    assert scan.returncode == 0
    assert secondary.wait() == 4
    assert folder_digest(home) == "absent"


def test_expired_channel_is_renewed_and_old_link_gets_404(
    make_server, tmp_path: Path, background
) -> None:
    srv: Server = make_server(channel_ttl_s=1)
    number = new_number()
    master_home = tmp_path / "master"
    assert (
        run(
            "register", "--number", number, "--code", "424242", home=master_home, server=srv.url
        ).returncode
        == 0
    )
    home = tmp_path / "secondary"
    secondary = background("secondary", "--json", "--timeout", "4", home=home, server=srv.url)
    first = secondary.wait_event("channel_opened")
    second = secondary.wait_event("channel_renewed")
    assert second["channel_uuid"] != first["channel_uuid"]
    assert parse_link(second["link"]).public_key != parse_link(first["link"]).public_key
    res = run("master", "--link", first["link"], "--yes", "--json", home=master_home)
    assert res.returncode == 7
    err = res.event("error")
    assert err["error"] == "ChannelGoneError"
    assert "Restart `provision secondary`" in err["hint"]
    assert secondary.wait(timeout=30) == 3  # gave up after --timeout, still renewing
    assert secondary.seen_event("error")["error"] == "TimedOutError"
    assert folder_digest(home) == "absent"


@pytest.mark.parametrize(
    ("crafted", "exit_code", "error", "says"),
    [
        pytest.param({"tamper": True}, 8, "EnvelopeError", ("hint", "tampered"), id="tampered"),
        pytest.param(
            {"raw": b"\xff" * 40}, 8, "BadMessageError", ("message", "malformed"), id="garbage"
        ),
        pytest.param({"code": 123456789}, 7, "CodeRejectedError", None, id="wrong-code"),
    ],
)
def test_a_bad_device_init_fails_the_secondary(
    master: Account,
    tmp_path: Path,
    background: Any,
    crafted: dict[str, Any],
    exit_code: int,
    error: str,
    says: tuple[str, str] | None,
) -> None:
    home = tmp_path / "secondary"
    secondary = background("secondary", "--json", "--yes", home=home, server=master.server)
    link = secondary.wait_event("channel_opened")["link"]
    send_crafted(master, link, **crafted)
    assert secondary.wait() == exit_code
    err = secondary.seen_event("error")
    assert err["error"] == error
    if says is not None:
        field, fragment = says
        assert fragment in err[field]
    assert folder_digest(home) == "absent"

def test_reused_provisioning_code_exits_7(master: Account, tmp_path: Path, background) -> None:
    first_home, second_home = tmp_path / "first", tmp_path / "second"
    first = background("secondary", "--json", "--yes", home=first_home, server=master.server)
    code = send_crafted(master, first.wait_event("channel_opened")["link"])
    assert first.wait() == 0, first.stderr()
    second = background("secondary", "--json", "--yes", home=second_home, server=master.server)
    send_crafted(master, second.wait_event("channel_opened")["link"], code=int(code))
    assert second.wait() == 7
    assert second.seen_event("error")["error"] == "CodeRejectedError"
    assert folder_digest(second_home) == "absent"


def test_server_down_exits_6(master: Account, tmp_path: Path, make_server) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    res = run("secondary", "--json", home=tmp_path / "s", server=down)
    assert res.returncode == 6
    assert res.event("error")["error"] == "ServerUnreachableError"
    assert folder_digest(tmp_path / "s") == "absent"

    srv = make_server()
    home = tmp_path / "m"
    assert (
        run(
            "register", "--number", new_number(), "--code", "424242", home=home, server=srv.url
        ).returncode
        == 0
    )
    srv.stop()
    before = folder_digest(home)
    link = build_link(
        ProvisioningLink("0f8fad5b-d9cb-469f-a165-70867728950e", srv.url, KeyPair.generate().public)
    )
    res = run("master", "--link", link, "--yes", home=home)
    assert res.returncode == 6
    assert "Error:" in res.stderr and "Next:" in res.stderr
    assert folder_digest(home) == before
    assert run("devices", home=home).returncode == 6


def test_bad_store_permissions_exit_9(master: Account, tmp_path: Path) -> None:
    os.chmod(master.home, 0o755)
    try:
        res = run("whoami", "--json", home=master.home)
        assert res.returncode == 9
        assert "0700" in res.event("error")["message"]
        link = build_link(
            ProvisioningLink(
                "0f8fad5b-d9cb-469f-a165-70867728950e", master.server, KeyPair.generate().public
            )
        )
        assert run("master", "--link", link, "--yes", home=master.home).returncode == 9
        # A bad link is refused first: it is checked before the data folder is read.
        assert run("master", "--link", "x", "--yes", home=master.home).returncode == 2
    finally:
        os.chmod(master.home, 0o700)
    os.chmod(master.home / "device.json", 0o644)
    try:
        assert run("devices", home=master.home).returncode == 9
    finally:
        os.chmod(master.home / "device.json", 0o600)
    assert run("whoami", home=master.home).returncode == 0

    empty = tmp_path / "open"
    empty.mkdir(mode=0o777)
    os.chmod(empty, 0o777)
    res = run("secondary", "--json", home=empty, server=master.server)
    assert res.returncode == 9
    assert res.event("error")["error"] == "StoreError"


def test_existing_account_is_not_overwritten(master: Account) -> None:
    before = folder_digest(master.home)
    res = run("secondary", "--json", home=master.home, server=master.server)
    assert res.returncode == 9
    assert "already holds account" in res.event("error")["message"]
    res = run(
        "register",
        "--number",
        new_number(),
        "--code",
        "424242",
        home=master.home,
        server=master.server,
    )
    assert res.returncode == 9
    assert folder_digest(master.home) == before


def test_register_failures(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "m"
    res = run(
        "register",
        "--number",
        new_number(),
        "--code",
        "999999",
        "--json",
        home=home,
        server=server.url,
    )
    assert res.returncode == 7
    error = res.event("error")
    assert error["error"] == "RegistrationCodeRejectedError"
    assert "registration code" in error["hint"] and "secondary" not in error["hint"]
    assert folder_digest(home) == "absent"
    res = run("register", "--number", "5550001111", home=home, server=server.url)
    assert res.returncode == 2
    res = run("register", "--number", new_number(), home=home, server=server.url)
    assert res.returncode == 2  # no --code and no terminal to ask on
    assert "--code" in res.stderr
    res = run("register", "--number", new_number(), "--code", "424242", home=home)
    assert res.returncode == 2  # no --server
    assert folder_digest(home) == "absent"


def test_bad_usage_exits_2(master: Account, tmp_path: Path) -> None:
    assert run("master", "--link", "https://example.org", "--yes", home=master.home).returncode == 2
    assert (
        run("master", "--qr", str(tmp_path / "none.png"), "--yes", home=master.home).returncode == 2
    )
    assert run("master", "--qr", "a.png", "--link", "x", home=master.home).returncode == 2
    assert run("master", "--yes", home=master.home, input="").returncode == 2
    res = run(
        "secondary", "--qr-out", str(tmp_path / "q.gif"), home=tmp_path / "s", server=master.server
    )
    assert res.returncode == 2
    assert run("verify", "--code", "12", home=tmp_path / "s").returncode == 2
    assert run("secondary", "--timeout", "0", server=master.server).returncode == 2
    assert folder_digest(tmp_path / "s") == "absent"
