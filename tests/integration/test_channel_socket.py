"""The purpose-built channel websocket (server/channel_socket.py) byte by byte over loopback,
and the PUT fast path (server/fastpath.py).

test_channels.py checks the channel contract (§4.1) through a real websocket
client; these tests speak raw RFC 6455 to check what a well-behaved client
never shows: refused handshakes, broken framing, control frames, the closing
handshake in both directions, the exact bytes of §4.1, and that every spelling
of the path reaches the one implementation (there is no ASGI fallback).
tests/hardening/test_hostile_sockets.py has the budgets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from textsecure_provision.server import channel_socket
from textsecure_provision.server.channel_socket import accept_key, new_channel_id

from .conftest import RunningServer
from .helpers import Device, b64, register

WAIT_S = 5.0
KEY = base64.b64encode(b"0123456789abcdef").decode()
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- a raw client ----------------------------------------------------------------------------------


class Raw:
    """One TCP connection speaking hand-made bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: RunningServer) -> Raw:
        url = httpx.URL(server.url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        return cls(reader, writer)

    async def request(self, *headers: str, method: str = "GET", path: str = "/v1/temp_websocket"):
        lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT_S)
        status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
        found = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), found

    async def body(self, headers: dict[str, str]) -> dict[str, object]:
        data = await asyncio.wait_for(
            self.reader.readexactly(int(headers["content-length"])), WAIT_S
        )
        doc: dict[str, object] = json.loads(data)
        return doc

    async def upgrade(self) -> str:
        """A valid handshake; returns the channel uuid from the first frame."""
        status, headers = await self.request(*UPGRADE)
        assert status == 101
        expected = base64.b64encode(hashlib.sha1(KEY.encode() + GUID).digest()).decode()
        assert headers["sec-websocket-accept"] == expected
        assert "sec-websocket-extensions" not in headers  # nothing negotiated
        opcode, payload = await self.frame()
        assert opcode == 0x1
        return str(json.loads(payload)["uuid"])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), WAIT_S)
        assert b1 & 0x80 == 0, "server frames are never masked"
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def close_code(self) -> int:
        opcode, payload = await self.frame()
        assert opcode == 0x8, (opcode, payload)
        return int.from_bytes(payload[:2], "big")

    async def eof(self) -> bool:
        """True once the server has closed the TCP connection (nothing more arrives)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), WAIT_S)
        except ConnectionResetError:
            return True
        return rest == b""

    def close(self) -> None:
        self.writer.close()


UPGRADE = (
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
          rsv: int = 0, length: int | None = None) -> bytes:  # fmt: skip
    """A client frame; ``length`` lies about the payload length when given."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def channel_put_body() -> dict[str, object]:
    return {"messages": [{"type": 0, "destinationDeviceId": 1, "body": b64(b"device-init")}]}


async def put(client: httpx.AsyncClient, master: Device, channel: str) -> httpx.Response:
    return await client.put(f"/v1/messages/{channel}", json=channel_put_body(), auth=master.auth)


@pytest.fixture
async def raw(server: RunningServer) -> AsyncIterator[Raw]:
    conn = await Raw.open(server)
    yield conn
    conn.close()


# -- pure helpers -------------------------------------------------------------------------------------


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_channel_ids_are_random_canonical_v4_uuids() -> None:
    ids = [new_channel_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:300]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lowercase canonical (§3)


def test_child_process_does_not_reuse_the_parents_random_bytes() -> None:
    new_channel_id()  # the pool now holds bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_channel_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != new_channel_id()


# -- the opening handshake --------------------------------------------------------------------------


async def test_handshake_answers_101_and_the_uuid_frame(raw: Raw) -> None:
    channel = await raw.upgrade()
    assert str(uuid.UUID(channel)) == channel


async def test_wrong_version_is_426_naming_13(raw: Raw) -> None:
    status, headers = await raw.request(*UPGRADE[:3], "Sec-WebSocket-Version: 8")
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert (await raw.body(headers))["code"] == 426
    assert await raw.eof()


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"short").decode()])
async def test_bad_key_is_400(raw: Raw, key: str) -> None:
    status, headers = await raw.request(
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    )  # fmt: skip
    assert status == 400
    assert await raw.body(headers) == {
        "error": "Sec-WebSocket-Key must be 16 bytes in base64",
        "code": 400,
    }
    assert await raw.eof()


async def test_upgrade_with_another_method_is_refused(raw: Raw) -> None:
    status, headers = await raw.request(*UPGRADE, method="POST")
    assert status in (400, 405)
    assert (await raw.body(headers))["code"] == status


async def test_upgrade_with_a_query_string_still_opens_a_channel(server: RunningServer) -> None:
    conn = await Raw.open(server)
    try:
        status, _ = await conn.request(*UPGRADE, path="/v1/temp_websocket?x=1")
        assert status == 101
    finally:
        conn.close()


async def test_other_websocket_paths_are_404(server: RunningServer) -> None:
    # The channel is the only websocket endpoint: any other path is refused before the 101.
    url = server.url.replace("http://", "ws://") + "/v1/not_a_channel"
    with pytest.raises(InvalidStatus) as info:
        await connect(url, open_timeout=WAIT_S)
    assert info.value.response.status_code == 404
    assert json.loads(info.value.response.body)["code"] == 404
    assert server.services.metrics.internal_errors == 0


@pytest.mark.parametrize("path", ["/v1/temp%5Fwebsocket", "/v1/temp%5fwebsocket?x=1", "/%761/temp_websocket"])
async def test_every_spelling_of_the_path_reaches_the_one_implementation(
    server: RunningServer, client: httpx.AsyncClient, path: str
) -> None:
    master = await register(client)
    conn = await Raw.open(server)
    try:
        status, _ = await conn.request(*UPGRADE, path=path)
        assert status == 101
        _, payload = await conn.frame()
        channel = json.loads(payload)["uuid"]
        assert server.services.metrics.open_channels == 1  # counted by channel_socket.py
        assert (await put(client, master, channel)).status_code == 200
        assert (await conn.frame())[0] == 0x1
        assert await conn.close_code() == 1000
    finally:
        conn.close()


async def test_wire_bytes_of_section_4_1(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw
) -> None:
    """The exact frames: unmasked final text frames, then close 1000 with no reason."""
    master = await register(client)
    status, _ = await raw.request(*UPGRADE)
    assert status == 101
    first = await asyncio.wait_for(raw.reader.readexactly(2 + 47), WAIT_S)
    channel = json.loads(first[2:])["uuid"]
    assert first == b"\x81\x2f" + f'{{"uuid":"{channel}"}}'.encode()
    assert (await put(client, master, channel)).status_code == 200
    body = json.dumps({"message": b64(b"device-init")}, separators=(",", ":")).encode()
    expected = bytes((0x81, len(body))) + body + b"\x88\x02\x03\xe8"
    assert await asyncio.wait_for(raw.reader.readexactly(len(expected)), WAIT_S) == expected


# -- frames from the client --------------------------------------------------------------------------


async def test_ping_is_answered_and_the_channel_stays_usable(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    raw.send(frame(0x9, b"are you there"))
    assert await raw.frame() == (0xA, b"are you there")
    raw.send(frame(0xA, b"unsolicited pong"))  # ignored
    assert (await put(client, master, channel)).status_code == 200
    opcode, payload = await raw.frame()
    assert opcode == 0x1 and json.loads(payload) == {"message": b64(b"device-init")}
    assert await raw.close_code() == 1000


async def test_ping_split_across_packets(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw
) -> None:
    await raw.upgrade()
    data = frame(0x9, b"split")
    for i in range(len(data)):
        raw.send(data[i : i + 1])
        await raw.writer.drain()
    assert await raw.frame() == (0xA, b"split")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"hello"), 1008),
        (frame(0x2, b"\x00\x01"), 1008),
        (frame(0x1, b"part", fin=False), 1008),  # a fragment is data too
        (frame(0x0, b"cont"), 1002),  # a continuation of nothing is broken framing (§5.4)
        (frame(0x1, b"x" * 5000), 1009),  # over 4 KiB
        (frame(0x2, b"", length=10_000_000), 1009),  # declared only: the payload never comes
    ],
    ids=["text", "binary", "fragment", "continuation", "over-4k", "huge-declared"],
)
async def test_client_data_closes_the_channel(
    client: httpx.AsyncClient, raw: Raw, data: bytes, code: int
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    raw.send(data)
    assert await raw.close_code() == code
    if code == 1008:  # the server waits for the client's close; over 4 KiB it does not
        raw.send(frame(0x8, code.to_bytes(2, "big")))
    assert await raw.eof()
    assert (await put(client, master, channel)).status_code == 404


@pytest.mark.parametrize(
    "data",
    [
        frame(0x1, b"hi", mask=False),  # clients must mask
        frame(0x9, b"x", rsv=0x40),  # no extension was negotiated
        frame(0x3, b""),  # reserved opcode
        frame(0x9, b"x" * 126),  # control frames are ≤ 125 bytes
        frame(0x9, b"x", fin=False),  # and never fragmented
        frame(0x8, b"\x03"),  # a close payload of one byte
        *(frame(0x8, c.to_bytes(2, "big")) for c in (1005, 999, 1004, 1006, 1015, 2000, 5000)),
    ],
    ids=["unmasked", "rsv", "opcode", "long-ping", "fragmented-ping", "close-1-byte",
         "code-1005", "code-999", "code-1004", "code-1006", "code-1015", "code-2000", "code-5000"],
)
async def test_broken_framing_is_1002(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw, data: bytes
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    raw.send(data)
    assert await raw.close_code() == 1002
    assert await raw.eof()
    assert (await put(client, master, channel)).status_code == 404
    assert server.services.metrics.internal_errors == 0


async def test_close_reason_that_is_not_utf8_is_1007(raw: Raw) -> None:
    await raw.upgrade()
    raw.send(frame(0x8, (1000).to_bytes(2, "big") + b"\xff\xfe"))
    assert await raw.close_code() == 1007


@pytest.mark.parametrize(
    "payload",
    [b"", (4000).to_bytes(2, "big") + b"bye", *(c.to_bytes(2, "big") for c in (1001, 1011, 3000, 4999))],
)
async def test_client_close_is_answered_and_the_channel_is_gone(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw, payload: bytes
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    raw.send(frame(0x8, payload))
    opcode, echoed = await raw.frame()
    assert opcode == 0x8 and echoed == payload  # its close, echoed
    assert await raw.eof()
    assert (await put(client, master, channel)).status_code == 404


async def test_server_waits_for_the_clients_close_then_drops_tcp(
    client: httpx.AsyncClient, raw: Raw
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    assert (await put(client, master, channel)).status_code == 200
    await raw.frame()
    assert await raw.close_code() == 1000
    raw.send(frame(0x1, b"late data is ignored"))
    raw.send(frame(0x8, (1000).to_bytes(2, "big")))
    assert await raw.eof()


async def test_client_that_never_answers_the_close_is_dropped(
    client: httpx.AsyncClient, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_socket, "CLOSE_TIMEOUT_S", 0.2)
    master = await register(client)
    channel = await raw.upgrade()
    assert (await put(client, master, channel)).status_code == 200
    await raw.frame()
    assert await raw.close_code() == 1000
    assert await raw.eof()  # no close from us: the server gave up waiting


async def test_abrupt_disconnect_unregisters_the_channel(
    server: RunningServer, client: httpx.AsyncClient, raw: Raw
) -> None:
    master = await register(client)
    channel = await raw.upgrade()
    raw.writer.transport.abort()
    for _ in range(200):  # wait on the server's own gauge, not a sleep of a guessed length
        if server.services.metrics.open_channels == 0:
            break
        await asyncio.sleep(0.01)
    assert server.services.metrics.open_channels == 0
    assert (await put(client, master, channel)).status_code == 404


async def test_shutdown_closes_open_channels_with_1012(server: RunningServer) -> None:
    ws = await connect(server.ws_url, open_timeout=WAIT_S)
    await asyncio.wait_for(ws.recv(), WAIT_S)
    server.request_stop()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), WAIT_S)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012


# -- the PUT fast path ---------------------------------------------------------------------------------


async def test_fast_path_keeps_request_ids_metrics_and_the_body_limit(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    r = await client.put(f"/v1/messages/{uuid.uuid4()}", json=channel_put_body(), auth=master.auth)
    assert r.status_code == 404
    assert r.headers["x-request-id"]
    big = b"{" + b" " * (server.config.max_body_bytes + 1) + b"}"
    r = await client.put(
        f"/v1/messages/{uuid.uuid4()}", content=big, auth=master.auth,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 413
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/messages/{destination}",status="404"' in metrics
    # Refused from Content-Length before any route ran, as through the router.
    assert 'method="PUT",route="(no route)",status="413"' in metrics


async def test_fast_path_leaves_other_message_routes_to_the_router(
    client: httpx.AsyncClient,
) -> None:
    master = await register(client)
    r = await client.put("/v1/messages/a/b", json=channel_put_body(), auth=master.auth)
    assert r.status_code == 404 and r.json()["error"] == "no such endpoint"
    r = await client.put("/v1/messages/", json=channel_put_body(), auth=master.auth)
    assert r.status_code == 405


# -- behind a proxy ---------------------------------------------------------------------------------


async def test_rate_limit_counts_the_forwarded_address_behind_a_trusted_proxy(
    server_factory: Callable[..., RunningServer],
) -> None:
    from textsecure_provision.server.config import RateLimits, Rule

    server = server_factory(
        forwarded_allow_ips="127.0.0.1",
        rate_limits=RateLimits().with_rule("channel_create_address", Rule(1, 3600)),
    )
    statuses = []
    for client_address in ("203.0.113.1", "203.0.113.2", "203.0.113.1"):
        conn = await Raw.open(server)
        try:
            status, headers = await conn.request(*UPGRADE, f"X-Forwarded-For: {client_address}")
            statuses.append(status)
            if status == 429:
                assert int(headers["retry-after"]) >= 1
                assert (await conn.body(headers))["code"] == 429
        finally:
            conn.close()
    assert statuses == [101, 101, 429]


# -- the first-request head (ChannelHttpFactory) ------------------------------------------------


async def test_upgrade_sent_a_byte_at_a_time_still_opens_a_channel(raw: Raw) -> None:
    request = "\r\n".join(["GET /v1/temp_websocket HTTP/1.1", "Host: test", *UPGRADE])
    for byte in (request + "\r\n\r\n").encode():
        raw.send(bytes([byte]))
        await raw.writer.drain()
    head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert head.startswith(b"HTTP/1.1 101 ")
    opcode, payload = await raw.frame()
    assert opcode == 0x1 and "uuid" in json.loads(payload)


async def test_channel_upgrade_after_a_request_on_a_keep_alive_connection(raw: Raw) -> None:
    # The first request is plain HTTP, so uvicorn owns the connection; the adapter
    # (uvicorn_adapter.py) gives the upgrade back to channel_socket.py.
    status, headers = await raw.request(method="GET", path="/health")
    assert status == 200
    await raw.body(headers)
    assert str(uuid.UUID(await raw.upgrade()))


@pytest.mark.parametrize("path", ["/v1/temp_websocketx", "/v1/temp_websocket/", "/v1/temp_websock"])
async def test_near_miss_paths_go_to_the_router(raw: Raw, path: str) -> None:
    status, headers = await raw.request("Connection: keep-alive", path=path)
    assert status == 404
    assert (await raw.body(headers))["code"] == 404
    # The connection is uvicorn's now and stays usable.
    status, headers = await raw.request(path="/health")
    assert status == 200


async def test_upgrade_with_more_connection_tokens_opens_a_channel(raw: Raw) -> None:
    status, _ = await raw.request(
        "Upgrade: WebSocket", "Connection: keep-alive, Upgrade", f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    )  # fmt: skip
    assert status == 101


# -- the hook for code bound to a channel's life (Services.channel_ended) -------------------------


async def test_channel_ended_hook_says_how_each_channel_ended(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    from textsecure_provision.server.channel_socket import ChannelEnd

    ended: list[tuple[str, ChannelEnd]] = []
    server.services.channel_ended.append(lambda channel, how: ended.append((channel, how)))
    master = await register(client)

    delivered = await Raw.open(server)
    first = await delivered.upgrade()
    assert (await put(client, master, first)).status_code == 200
    spoke = await Raw.open(server)
    second = await spoke.upgrade()
    spoke.send(frame(0x1, b"hello"))
    gone = await Raw.open(server)
    third = await gone.upgrade()
    gone.writer.transport.abort()
    expected = {
        (first, ChannelEnd.DELIVERED),
        (second, ChannelEnd.CLIENT_SPOKE),
        (third, ChannelEnd.LOST),
    }
    for _ in range(500):  # the server's own record, not a guessed sleep
        if set(ended) >= expected:
            break
        await asyncio.sleep(0.01)
    assert set(ended) == expected and len(ended) == 3  # each channel ends exactly once
    delivered.close()
    spoke.close()
