"""Shared by the flow tests: the real server app in process, and a UI that hands out links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.flows.ui import RecordingUi

server_app = pytest.importorskip("textsecure_provision.server.app")
server_runner = pytest.importorskip("textsecure_provision.server.runner")
server_config = pytest.importorskip("textsecure_provision.server.config")

CODE = "424242"  # the server's fixed test registration code
NUMBER = "+15550001111"


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, **config: Any) -> AsyncIterator[str]:
    """uvicorn on 127.0.0.1:0 in this event loop, SQLite in ``tmp_path``; yields the URL."""
    cfg = server_config.ServerConfig(
        host="127.0.0.1",
        port=0,
        db_url=f"sqlite:///{tmp_path / 'server.db'}",
        test_registration_code=CODE,
        **config,
    )
    srv = server_runner.ProvisionServer(
        server_runner.uvicorn_config(server_app.create_app(cfg), cfg), cfg
    )
    task = asyncio.create_task(srv.serve())
    try:
        while not srv.started_event.is_set():  # uvicorn runs in this loop: yield to it
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield srv.base_url
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


class LinkUi(RecordingUi):
    """A RecordingUi that also signals when a channel is shown."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.links: asyncio.Queue[str] = asyncio.Queue()

    def channel_opened(self, link: str, **kw: Any) -> None:
        super().channel_opened(link, **kw)
        self.links.put_nowait(link)
