"""The flows against the real server app, in process (uvicorn on 127.0.0.1:0, real SQLite).

A ``RecordingUi`` logs every call, so each test asserts the exact sequence of
steps a user would see, and what the data folder holds afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import (
    ConfirmationMismatchError,
    InvalidInputError,
    LinkError,
    NumberMismatchError,
    RefusedError,
    StoreError,
    TimedOutError,
    UntrustedServerError,
)
from textsecure_provision.flows import master as master_flow
from textsecure_provision.flows import secondary as secondary_flow
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import list_devices, whoami
from textsecure_provision.flows.master import MasterLinkResult, link_master
from textsecure_provision.flows.register import register_account
from textsecure_provision.flows.secondary import (
    ListenOptions,
    PendingSaved,
    listen_secondary,
    verify_pending,
)
from textsecure_provision.flows.ui import RecordingUi
from textsecure_provision.protocol.prekeys import verify_signed_prekey
from textsecure_provision.store import DeviceRecord, DeviceStore

from .flow_support import NUMBER, LinkUi, register_master, running_server


def prompts_and_steps(ui: RecordingUi) -> list[str]:
    """The kinds of the UI calls in order, without the Ctrl-C ``state`` notes."""
    return [kind for kind, *_ in ui.calls if kind != "state"]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    async with running_server(tmp_path) as url:
        yield url


def digest(path: Path) -> Any:
    if not path.exists():
        return None
    return sorted((str(p), p.read_bytes()) for p in path.rglob("*") if p.is_file())


async def test_link_step_by_step_with_hooks(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui, m_ui = LinkUi(), RecordingUi()
    linked: list[tuple[DeviceRecord, Any]] = []
    sent: list[MasterLinkResult] = []

    async def on_linked(record: DeviceRecord, api: Any, ui: Any) -> None:
        linked.append((record, await api.fetch_prekey_count()))  # the api is live and ours

    async def on_sent(result: MasterLinkResult, record: DeviceRecord, api: Any, ui: Any) -> None:
        sent.append(result)

    listening = asyncio.create_task(
        listen_secondary(
            secondary, s_ui, ListenOptions(expect_number=NUMBER, name="tab"), on_linked=on_linked
        )
    )
    link = await asyncio.wait_for(s_ui.links.get(), 10)
    result = await link_master(master, m_ui, link, on_sent=on_sent)
    record = await asyncio.wait_for(listening, 10)

    assert isinstance(record, DeviceRecord)
    assert s_ui.names() == ["channel_opened", "device_init_received", "registered"]
    assert prompts_and_steps(s_ui) == ["channel", "event", "result"]  # no prompt needed
    assert m_ui.names() == ["link_parsed", "sent"]
    assert prompts_and_steps(m_ui) == ["event", "confirm", "result"]
    # What a Ctrl-C would have said at each point: truthful once the DeviceInit may be out.
    assert s_ui.states() == [
        secondary_flow.NOTHING_LINKED,
        secondary_flow.RECEIVED_UNUSED,
        secondary_flow.MAY_BE_REGISTERED,
        secondary_flow.LINKED_NOT_ANNOUNCED,
    ]
    assert m_ui.states() == [master_flow.NOTHING_SENT, master_flow.MAY_HAVE_SENT, master_flow.SENT]
    assert s_ui.fields("device_init_received")["confirmation_code"] == result.confirmation
    assert m_ui.fields("sent")["confirmation_code"] == result.confirmation
    assert sent == [result]
    assert [(r.device_id, count) for r, count in linked] == [(2, 100)]
    assert record.identity == DeviceStore(master.data_dir).require_record().identity
    assert whoami(secondary)["device_id"] == 2
    assert [(d.id, d.name) for d in await list_devices(master)] == [(1, "phone"), (2, "tab")]


async def test_the_new_devices_key_pairs_are_made_before_its_link_is_shown(
    server: str, tmp_path: Path
) -> None:
    """Once the DeviceInit is in, the other device waits: the secondary then only signs its
    signed prekey, and the 102 key pairs it uploads and stores were made beforehand (B2)."""
    import secrets

    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = LinkUi()
    draws: list[tuple[bool, int]] = []  # (the DeviceInit was in, bytes drawn)

    def rng(n: int) -> bytes:
        draws.append(("device_init_received" in s_ui.names(), n))
        return secrets.token_bytes(n)

    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(expect_number=NUMBER), rng=rng)
    )
    link = await asyncio.wait_for(s_ui.links.get(), 10)
    await link_master(master, RecordingUi(), link)
    record = await asyncio.wait_for(listening, 10)

    assert isinstance(record, DeviceRecord) and len(record.prekeys) == 100
    before = [n for after, n in draws if not after]
    after = [n for after, n in draws if after]
    assert before.count(32) >= 102  # the channel's key, 100 prekeys, signed and last resort
    assert 32 not in after  # no key pair after the DeviceInit: password, id, signature nonce
    assert sorted(after) == sorted([18, 4, 64])
    assert verify_signed_prekey(
        record.identity.public,
        record.signed_prekey.key_pair.public,
        record.signed_prekey.signature,
    )


async def test_user_says_no_on_master_sends_nothing(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = LinkUi(answers={"confirm": True})
    listening = asyncio.create_task(listen_secondary(secondary, s_ui))
    link = await asyncio.wait_for(s_ui.links.get(), 10)
    with pytest.raises(RefusedError):
        await link_master(master, RecordingUi(answers={"confirm": False}), link)
    # The channel is still open and unused: a consenting master can still link it.
    await link_master(master, RecordingUi(), link)
    record = await asyncio.wait_for(listening, 10)
    assert isinstance(record, DeviceRecord)
    assert [k for k, name, _ in s_ui.calls if k == "confirm"] == ["confirm"]  # number prompt


async def test_secondary_user_refuses_number(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    home = tmp_path / "secondary"
    secondary = FlowConfig(data_dir=str(home), server_url=server)
    s_ui = LinkUi(answers={"confirm": False})
    listening = asyncio.create_task(listen_secondary(secondary, s_ui))
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(RefusedError):
        await asyncio.wait_for(listening, 10)
    assert "registered" not in s_ui.names()
    assert digest(home) is None
    assert [d.id for d in await list_devices(master)] == [1]


async def test_failed_commit_unlinks_the_half_registered_device(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = await register_master(server, tmp_path)
    home = tmp_path / "secondary"
    secondary = FlowConfig(data_dir=str(home), server_url=server)

    def broken_commit(self: DeviceStore, record: DeviceRecord, **kw: Any) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(DeviceStore, "commit_record", broken_commit)
    s_ui = LinkUi()
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(expect_number=NUMBER))
    )
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(StoreError, match="disk full"):
        await asyncio.wait_for(listening, 10)
    assert "registered" not in s_ui.names()
    assert digest(home) is None
    # The server had given it device id 2; the flow took it back.
    assert [d.id for d in await list_devices(master)] == [1]


async def test_expect_number_mismatch(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = LinkUi()
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(expect_number="+15559999999"))
    )
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(NumberMismatchError):
        await asyncio.wait_for(listening, 10)
    assert [d.id for d in await list_devices(master)] == [1]


async def test_channel_on_another_trusted_name(server: str, tmp_path: Path) -> None:
    # The secondary reaches the server as "localhost", the account lives on "127.0.0.1":
    # the master must trust the channel's name, the secondary the account's.
    master = await register_master(server, tmp_path)
    other = server.replace("127.0.0.1", "localhost")
    secondary = FlowConfig(
        data_dir=str(tmp_path / "secondary"), server_url=other, trusted_servers=(server,)
    )
    s_ui = LinkUi()
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(expect_number=NUMBER))
    )
    link = await asyncio.wait_for(s_ui.links.get(), 10)
    with pytest.raises(UntrustedServerError):
        await link_master(master, RecordingUi(), link)
    trusting = FlowConfig(data_dir=master.data_dir, trusted_servers=(other,))
    await link_master(trusting, RecordingUi(), link)
    record = await asyncio.wait_for(listening, 10)
    assert isinstance(record, DeviceRecord) and record.server == server


async def test_short_channel_ttl_renews_with_new_keys_then_times_out(tmp_path: Path) -> None:
    async with running_server(tmp_path, channel_ttl_s=0.2) as url:
        secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=url)
        s_ui = LinkUi()
        with pytest.raises(TimedOutError):
            await listen_secondary(secondary, s_ui, ListenOptions(timeout_s=1.0))
    names = s_ui.names()
    assert names[0] == "channel_opened"
    assert len(names) >= 3 and set(names[1:]) == {"channel_renewed"}
    links = [f["link"] for kind, _, f in s_ui.calls if kind == "channel"]
    assert len(set(links)) == len(links)  # each renewal: new uuid and new key
    assert not (tmp_path / "secondary").exists()


async def link_without_verify(
    server: str, tmp_path: Path
) -> tuple[FlowConfig, LinkUi, MasterLinkResult, PendingSaved]:
    """A link received with ``--no-verify``: the secondary's config and ui, the master's
    result, and the pending link the secondary saved (in ``tmp_path/secondary``)."""
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = LinkUi()
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(no_verify=True))
    )
    result = await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    saved = await asyncio.wait_for(listening, 10)
    assert isinstance(saved, PendingSaved)
    return secondary, s_ui, result, saved


async def test_no_verify_then_verify(server: str, tmp_path: Path) -> None:
    secondary, s_ui, result, saved = await link_without_verify(server, tmp_path)
    home = tmp_path / "secondary"
    assert saved.confirmation == result.confirmation
    assert s_ui.names() == ["channel_opened", "device_init_received", "pending_saved"]
    assert json.loads((home / "pending_link.json").read_text())["version"] == 1

    before = digest(home)
    with pytest.raises(ConfirmationMismatchError):
        wrong = "999 999" if result.confirmation != "999 999" else "111 111"
        await verify_pending(secondary, RecordingUi(), number=NUMBER, code=wrong)
    assert digest(home) == before

    v_ui = RecordingUi()
    record = await verify_pending(secondary, v_ui, code=result.confirmation.replace(" ", "-"))
    assert record.device_id == 2
    assert v_ui.names() == ["device_init_received", "registered"]
    assert prompts_and_steps(v_ui).count("confirm") == 1  # the number was confirmed
    assert not (home / "pending_link.json").exists()


async def test_expired_pending_link_is_dropped(server: str, tmp_path: Path) -> None:
    secondary, _, _, saved = await link_without_verify(server, tmp_path)
    home = tmp_path / "secondary"
    with pytest.raises(TimedOutError, match="expired"):
        await verify_pending(secondary, RecordingUi(), now_ms=saved.expires_ms)
    assert not (home / "pending_link.json").exists()
    with pytest.raises(StoreError, match="no pending link"):
        await verify_pending(secondary, RecordingUi())


async def test_register_asks_for_the_code_when_not_given(server: str, tmp_path: Path) -> None:
    config = FlowConfig(data_dir=str(tmp_path / "m"), server_url=server)
    ui = RecordingUi(answers={"ask": "424-242"})
    record = await register_account(config, ui, NUMBER)
    assert record.device_id == 1
    assert ui.names() == ["code_requested", "account_registered"]
    assert prompts_and_steps(ui) == ["event", "ask", "result"]


async def test_no_verify_with_wrong_expected_number_saves_nothing(
    server: str, tmp_path: Path
) -> None:
    master = await register_master(server, tmp_path)
    home = tmp_path / "secondary"
    secondary = FlowConfig(data_dir=str(home), server_url=server)
    s_ui = LinkUi()
    options = ListenOptions(no_verify=True, expect_number="+15559999999")
    listening = asyncio.create_task(listen_secondary(secondary, s_ui, options))
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(NumberMismatchError):
        await asyncio.wait_for(listening, 10)
    assert digest(home) is None


def other_code(code: str) -> str:
    return "999 999" if code != "999 999" else "111 111"


class TypingUi(LinkUi):
    """Types, at the code prompt, what ``typed`` makes of the code the secondary received."""

    def __init__(self, typed: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.typed = typed

    def ask(self, question: str) -> str:
        self.calls.append(("ask", question, {}))
        return str(self.typed(self.fields("device_init_received")["confirmation_code"]))


async def test_typed_code_must_match_the_masters(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    home = tmp_path / "secondary"
    secondary = FlowConfig(data_dir=str(home), server_url=server)
    s_ui = TypingUi(other_code)  # e.g. the code on the user's own master, after a race
    listening = asyncio.create_task(listen_secondary(secondary, s_ui, ListenOptions(ask_code=True)))
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(ConfirmationMismatchError) as info:
        await asyncio.wait_for(listening, 10)
    assert info.value.exit_code == 4
    assert "Nothing was registered" in info.value.hint
    assert "registered" not in s_ui.names()
    assert [k for k, *_ in s_ui.calls].count("confirm") == 0  # it stopped before the number
    assert digest(home) is None  # nothing stored
    assert [d.id for d in await list_devices(master)] == [1]  # nothing registered


async def test_typed_code_matching_links(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = TypingUi(lambda code: " " + code.replace(" ", "-") + " ")  # dashes, spaces: ignored
    listening = asyncio.create_task(listen_secondary(secondary, s_ui, ListenOptions(ask_code=True)))
    link = await asyncio.wait_for(s_ui.links.get(), 10)
    result = await link_master(master, RecordingUi(), link)
    record = await asyncio.wait_for(listening, 10)
    assert isinstance(record, DeviceRecord) and record.device_id == 2
    assert s_ui.fields("device_init_received")["confirmation_code"] == result.confirmation
    asks = [name for kind, name, _ in s_ui.calls if kind == "ask"]
    assert asks == [secondary_flow.CODE_QUESTION]
    assert prompts_and_steps(s_ui) == ["channel", "event", "ask", "confirm", "result"]


async def test_malformed_typed_code_is_asked_again_then_refused(
    server: str, tmp_path: Path
) -> None:
    master = await register_master(server, tmp_path)
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = TypingUi(lambda code: "12 34")
    listening = asyncio.create_task(listen_secondary(secondary, s_ui, ListenOptions(ask_code=True)))
    await link_master(master, RecordingUi(), await asyncio.wait_for(s_ui.links.get(), 10))
    with pytest.raises(InvalidInputError, match="six digits"):
        await asyncio.wait_for(listening, 10)
    assert [kind for kind, *_ in s_ui.calls].count("ask") == secondary_flow.MAX_CODE_ATTEMPTS
    assert s_ui.names().count("code_malformed") == secondary_flow.MAX_CODE_ATTEMPTS - 1
    assert "registered" not in s_ui.names()
    assert [d.id for d in await list_devices(master)] == [1]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
async def test_unwritable_data_folder_fails_before_the_channel_opens(server: str) -> None:
    # /proc takes no new folder, not even from root (the tests may run as root, where
    # permission bits would not stop anything).
    secondary = FlowConfig(data_dir="/proc/provision-test/new", server_url=server)
    s_ui = LinkUi()
    with pytest.raises(StoreError, match="cannot create the data folder"):
        await listen_secondary(secondary, s_ui)
    assert s_ui.names() == []  # no channel was opened, no QR shown


async def test_data_folder_under_a_file_fails_before_the_channel_opens(
    server: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    secondary = FlowConfig(data_dir=str(tmp_path / "file" / "new"), server_url=server)
    s_ui = LinkUi()
    with pytest.raises(StoreError, match=r"data folder .*: Not a directory"):
        await listen_secondary(secondary, s_ui)
    assert s_ui.names() == []


LOW_ORDER_KEY = "BQ" + "A" * 42 + "%3D"  # 0x05 || u=0: X25519 with it is all-zero
CHANNEL = "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"


def _link(server: str, key: str) -> str:
    from urllib.parse import quote

    return (
        f"textsecure-device-init:/?channel_uuid={CHANNEL}"
        f"&channel_server={quote(server, safe='')}&publicKey={key}"
    )


@pytest.mark.parametrize(
    ("case", "error"),
    [("low_order_key", LinkError), ("untrusted", UntrustedServerError), ("refused", RefusedError)],
)
async def test_master_refuses_locally_before_any_request(
    tmp_path: Path, case: str, error: type[Exception]
) -> None:
    """Nothing reaches the server for a link we will refuse: with the server gone, each
    refusal is still the local one (a request would have failed as "cannot connect")."""
    async with running_server(tmp_path) as url:
        master = await register_master(url, tmp_path)
    good_key = KeyPair.generate().public.serialize()
    import base64
    from urllib.parse import quote

    key = quote(base64.b64encode(good_key).decode(), safe="")
    link = {
        "low_order_key": _link(url, LOW_ORDER_KEY),
        "untrusted": _link("https://evil.example.org", key),
        "refused": _link(url, key),
    }[case]
    ui = RecordingUi(answers={"confirm": False})
    with pytest.raises(error):
        await link_master(master, ui, link)
    if case != "refused":
        assert prompts_and_steps(ui) == []  # refused before even asking the user


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a 0500 folder all the same")
async def test_master_with_unwritable_data_folder_sends_nothing(
    server: str, tmp_path: Path
) -> None:
    master = await register_master(server, tmp_path)
    home = Path(master.data_dir or "")
    home.chmod(0o500)
    ui = RecordingUi()
    try:
        with pytest.raises(StoreError, match="cannot write to"):
            await link_master(master, ui, _link(server, _good_key()))
    finally:
        home.chmod(0o700)
    assert prompts_and_steps(ui) == []  # refused before asking, before any request


def _good_key() -> str:
    import base64
    from urllib.parse import quote

    return quote(base64.b64encode(KeyPair.generate().public.serialize()).decode(), safe="")
