"""The contract of server/uvicorn_adapter.py with uvicorn and httptools: what it reaches
inside them still exists and behaves as it assumes. When uvicorn is upgraded past the
pinned range, this test says what moved before a client finds out.

The behaviour itself (deadlines, 431, ordered upgrades on a keep-alive connection) is
tested against a live server in tests/hardening/test_hostile_sockets.py.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import socket
from pathlib import Path

import httptools
import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from textsecure_provision.server import uvicorn_adapter

ROOT = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_pyproject_pins_uvicorn_to_the_adapters_range() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    (pin,) = re.findall(r'^\s*"(uvicorn\[standard\][^"]*)"', text, flags=re.M)
    assert pin == "uvicorn[standard]" + uvicorn_adapter.UVICORN_VERSIONS, pin


def test_installed_uvicorn_is_in_the_range() -> None:
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", uvicorn_adapter.UVICORN_VERSIONS).groups()
    assert _version(low) <= _version(uvicorn.__version__) < _version(high)


@pytest.mark.parametrize("path", sorted(uvicorn_adapter.USED_INTERNALS))
def test_every_method_used_still_exists(path: str) -> None:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    for method in uvicorn_adapter.USED_INTERNALS[path]:
        assert callable(getattr(cls, method, None)), f"{path}.{method} is gone"


async def test_every_attribute_used_is_set_once_connected() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        return None

    config = Config(app, log_config=None)
    config.load()
    proto = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    left, right = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: proto, sock=left)
    try:
        proto.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")  # sets url, scope, cycle
        for name in uvicorn_adapter.USED_ATTRIBUTES:
            assert hasattr(proto, name), f"HttpToolsProtocol has no {name!r}"
        assert proto.url == b"/x" and proto.scope["method"] == "GET"
        assert isinstance(proto.headers, list)
    finally:
        transport.close()
        right.close()


def test_httptools_upgrade_reports_the_offset_of_the_bytes_after_the_head() -> None:
    head = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

    class Sink:
        pass

    parser = httptools.HttpRequestParser(Sink())
    with pytest.raises(httptools.HttpParserUpgrade) as info:
        parser.feed_data(head + b"\x81\x00")
    assert info.value.args[0] == len(head)


def test_an_exception_in_a_callback_stops_the_parser_as_a_parser_error() -> None:
    class Stop(Exception):
        pass

    class Sink:
        def on_headers_complete(self) -> None:
            raise Stop

    parser = httptools.HttpRequestParser(Sink())
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\n")
