"""Links by short code through the flows, against the real server app in process (SQLite).

What a code link must share with a QR link (the same events, the same DeviceInit
path), and how it fails: a wrong code on both sides, a second claim, an old server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.errors import (
    NameplateBurnedError,
    NameplateClaimedError,
    NameplateGoneError,
    ShortCodeFormatError,
    ShortCodesUnsupportedError,
    WrongShortCodeError,
)
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import api_for, list_devices
from textsecure_provision.flows.secondary import ListenOptions, listen_secondary
from textsecure_provision.flows.shortcode import link_master_by_code
from textsecure_provision.flows.ui import RecordingUi
from textsecure_provision.protocol.shortcode import parse_code
from textsecure_provision.protocol.wordlist import WORDS
from textsecure_provision.store import DeviceRecord, DeviceStore
from textsecure_provision.transport.nameplates import claim_nameplate

from .flow_support import NUMBER, LinkUi, register_master, running_server


class CodeUi(LinkUi):
    """A LinkUi that also hands out each channel's short code."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.codes: asyncio.Queue[str | None] = asyncio.Queue()

    def channel_opened(self, link: str, **kw: Any) -> None:
        super().channel_opened(link, **kw)
        self.codes.put_nowait(kw.get("code"))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    async with running_server(tmp_path) as url:
        yield url


async def secondary_showing_code(
    url: str, tmp_path: Path, options: ListenOptions | None = None
) -> tuple[CodeUi, asyncio.Task[Any], str]:
    """A secondary listening on ``url``, once it shows its short code: its ui, its task, the
    code."""
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=url)
    s_ui = CodeUi()
    listening = asyncio.create_task(listen_secondary(secondary, s_ui, options))
    code = await asyncio.wait_for(s_ui.codes.get(), 10)
    assert code is not None
    return s_ui, listening, code


def wrong_secret(code: str) -> str:
    """The same nameplate with a different first word: certainly a wrong secret."""
    nameplate, first, *rest = code.split("-")
    other = WORDS[(WORDS.index(first) + 1) % len(WORDS)]
    return "-".join([nameplate, other, *rest])


async def test_link_by_code_has_the_qr_links_events(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    m_ui = RecordingUi()
    s_ui, listening, code = await secondary_showing_code(
        server, tmp_path, ListenOptions(expect_number=NUMBER)
    )
    assert parse_code(code).nameplate == 1  # the smallest free number
    assert s_ui.fields("channel_opened")["code"] == code
    result = await link_master_by_code(master, m_ui, code.upper().replace("-", " "))
    record = await asyncio.wait_for(listening, 10)

    assert isinstance(record, DeviceRecord) and record.device_id == 2
    assert s_ui.names() == ["channel_opened", "device_init_received", "registered"]
    assert m_ui.names() == ["link_parsed", "sent"]  # exactly a QR link's
    assert [k for k, *_ in m_ui.calls if k != "state"] == ["event", "confirm", "result"]  # consent
    link_uuid = s_ui.fields("channel_opened")["channel_uuid"]
    assert result.channel_uuid == link_uuid
    assert s_ui.fields("device_init_received")["confirmation_code"] == result.confirmation
    assert [d.id for d in await list_devices(master)] == [1, 2]


async def test_wrong_code_fails_both_sides_and_burns_it(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    _, listening, code = await secondary_showing_code(server, tmp_path)
    with pytest.raises(WrongShortCodeError) as on_master:
        await link_master_by_code(master, RecordingUi(), wrong_secret(code))
    with pytest.raises(WrongShortCodeError) as on_secondary:
        await asyncio.wait_for(listening, 10)
    assert "refused" in on_master.value.message
    assert "someone tried a wrong code" in on_secondary.value.message
    assert "burned" in on_secondary.value.hint
    assert [d.id for d in await list_devices(master)] == [1]  # nothing linked
    assert not (tmp_path / "secondary" / "device.json").exists()
    # Burned (its channel closed with the secondary, the nameplate kept as burned until its
    # ttl): the right code is no use now.
    with pytest.raises(NameplateBurnedError):
        await link_master_by_code(master, RecordingUi(), code)


async def test_a_used_code_is_gone_after_its_link(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    _, listening, code = await secondary_showing_code(
        server, tmp_path, ListenOptions(expect_number=NUMBER)
    )
    await link_master_by_code(master, RecordingUi(), code)
    await asyncio.wait_for(listening, 10)
    # The channel got its DeviceInit: the nameplate died with it.
    with pytest.raises(NameplateGoneError):
        await link_master_by_code(master, RecordingUi(), code)


async def test_a_claimed_code_refuses_a_second_claim(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    _, listening, code = await secondary_showing_code(server, tmp_path)
    record = DeviceStore(master.data_dir).require_record()
    async with api_for(record, master) as api:
        first = await claim_nameplate(api, parse_code(code).nameplate)
        assert len(first.messages) == 1  # the secondary's SPAKE2 message was waiting
        with pytest.raises(NameplateClaimedError):
            await claim_nameplate(api, parse_code(code).nameplate)
    with pytest.raises(NameplateClaimedError):
        await link_master_by_code(master, RecordingUi(), code)
    listening.cancel()


async def test_typo_fails_locally_before_the_one_attempt(server: str, tmp_path: Path) -> None:
    master = await register_master(server, tmp_path)
    with pytest.raises(ShortCodeFormatError):
        await link_master_by_code(master, RecordingUi(), "1-notaword-tiger")


async def test_no_code_option_shows_none(server: str, tmp_path: Path) -> None:
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server)
    s_ui = CodeUi()
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(timeout_s=1, short_code=False))
    )
    assert await asyncio.wait_for(s_ui.codes.get(), 10) is None
    listening.cancel()


async def test_server_without_short_codes(tmp_path: Path) -> None:
    async with running_server(tmp_path, short_codes=False) as url:
        master = await register_master(url, tmp_path)
        secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=url)
        s_ui = CodeUi()
        listening = asyncio.create_task(listen_secondary(secondary, s_ui))
        assert await asyncio.wait_for(s_ui.codes.get(), 10) is None
        with pytest.raises(ShortCodesUnsupportedError) as err:
            await link_master_by_code(master, RecordingUi(), "1-revenge-tiger")
        assert "does not offer links by short code" in err.value.message
        # The QR path still works on that server.
        listening.cancel()


async def test_a_renewed_channel_gets_a_new_code(tmp_path: Path) -> None:
    async with running_server(tmp_path, channel_ttl_s=3) as url:
        master = await register_master(url, tmp_path)
        secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=url)
        s_ui = CodeUi()
        listening = asyncio.create_task(
            listen_secondary(secondary, s_ui, ListenOptions(expect_number=NUMBER))
        )
        first = await asyncio.wait_for(s_ui.codes.get(), 10)
        second = await asyncio.wait_for(s_ui.codes.get(), 10)  # after the first channel expired
        assert first and second and first != second
        assert s_ui.fields("channel_renewed")["code"] == second
        # Quick, before this channel expires too: the new code links.
        result = await link_master_by_code(master, RecordingUi(), second)
        record = await asyncio.wait_for(listening, 10)
        assert isinstance(record, DeviceRecord)
        assert result.channel_uuid == s_ui.fields("channel_renewed")["channel_uuid"]
