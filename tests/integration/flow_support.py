"""Shared by the flow tests: the real server in process, and a UI that hands out links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import server_harness as harness  # tests/, on sys.path (tests/conftest.py)

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


class LinkUi(RecordingUi):
    """A RecordingUi that also signals when a channel is shown."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.links: asyncio.Queue[str] = asyncio.Queue()

    def channel_opened(self, link: str, **kw: Any) -> None:
        super().channel_opened(link, **kw)
        self.links.put_nowait(link)
