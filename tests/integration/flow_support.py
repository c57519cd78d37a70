"""Shared by the flow tests: the real server in process, and a UI that hands out links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import server_harness as harness  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.register import register_account
from textsecure_provision.flows.ui import RecordingUi

CODE = "424242"  # the server's fixed test registration code
NUMBER = "+15550001111"


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, **config: Any) -> AsyncIterator[str]:
    """The relay server (tests/server_harness.py) with SQLite in ``tmp_path``; yields its URL."""
    cfg = harness.server_config(
        db_url=f"sqlite:///{tmp_path / 'server.db'}", test_registration_code=CODE, **config
    )
    srv = await asyncio.to_thread(harness.start_in_process, cfg)
    try:
        yield srv.url
    finally:
        await asyncio.to_thread(srv.stop)


async def register_master(url: str, tmp_path: Path) -> FlowConfig:
    """The account ``NUMBER`` registered on ``url``, its device 1's data in ``tmp_path/master``."""
    config = FlowConfig(data_dir=str(tmp_path / "master"), server_url=url)
    ui = RecordingUi()
    await register_account(config, ui, NUMBER, code=CODE, name="phone")
    assert ui.names() == ["account_registered"]
    return config


class LinkUi(RecordingUi):
    """A RecordingUi that also signals when a channel is shown."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.links: asyncio.Queue[str] = asyncio.Queue()

    def channel_opened(self, link: str, **kw: Any) -> None:
        super().channel_opened(link, **kw)
        self.links.put_nowait(link)
