"""Hostile clients at the socket level (issue 12, items 1, 2, 3, 6, 11, 12), against a real
``provision server`` process on loopback.

Each attack runs while a normal rendezvous loop runs from 127.0.0.1 (websocket open → uuid
→ authenticated PUT → message frame → close 1000), and each test asserts that every one of
those rendezvous finished within ``RENDEZVOUS_BUDGET_S``. Attackers come from other
loopback addresses (127.0.0.x). Everything is bounded: at most a few hundred sockets, a
few MB and a few seconds per test.

The server runs with the default budgets except a 1 s head deadline (so that slow heads
are cut off quickly here) and, for the write-backpressure test, control frames unlimited
(so that the flood exercises backpressure rather than the control-frame budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from integration.helpers import Device, b64, register
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .support import ServerProcess, make_server_process

pytestmark = pytest.mark.timeout(90)

RENDEZVOUS_BUDGET_S = 5.0
HEAD_TIMEOUT_S = 2.0
WAIT_S = 10.0
STALL_S = 2.0  # a ping flood's write that makes no progress this long: the server stopped reading
FLOOD_DEADLINE_S = 30.0
KEY = "MDEyMzQ1Njc4OWFiY2RlZg=="  # base64 of 16 bytes
UPGRADE_HEAD = (
    "GET /v1/temp_websocket HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


# -- servers and a normal client --------------------------------------------------------------


def _server(tmp: Path, *args: str) -> Iterator[ServerProcess]:
    # Normal traffic opens a channel every ~0.1 s: more than the default 120/min allows.
    proc = make_server_process(tmp, "--head-timeout", str(HEAD_TIMEOUT_S), "--log-level",
                               "warning", "--rate-limit", "channel_create_address=6000/60",
                               *args)  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def unlimited_pings_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(tmp_path_factory.mktemp("hostile-pings"), "--control-frames", "off")


@dataclass
class Normal:
    """A loop of normal rendezvous from 127.0.0.1 while an attack runs."""

    url: str
    master: Device
    times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def once(self, client: httpx.AsyncClient) -> float:
        start = time.monotonic()
        ws_url = self.url.replace("http://", "ws://") + "/v1/temp_websocket"
        async with connect(ws_url, open_timeout=RENDEZVOUS_BUDGET_S) as ws:
            channel = json.loads(await asyncio.wait_for(ws.recv(), RENDEZVOUS_BUDGET_S))["uuid"]
            body = {"messages": [{"type": 0, "destinationDeviceId": 1, "body": b64(b"init")}]}
            r = await client.put(f"/v1/messages/{channel}", json=body, auth=self.master.auth)
            assert r.status_code == 200, r.text
            frame = json.loads(await asyncio.wait_for(ws.recv(), RENDEZVOUS_BUDGET_S))
            assert frame == {"message": b64(b"init")}
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), RENDEZVOUS_BUDGET_S)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        return time.monotonic() - start

    async def loop(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=RENDEZVOUS_BUDGET_S) as client:
            while not stop.is_set():
                try:
                    self.times.append(await self.once(client))
                except Exception as exc:
                    self.errors.append(repr(exc))
                    return
                await asyncio.sleep(0.05)

    def check(self) -> None:
        assert not self.errors, self.errors
        assert self.times, "no rendezvous completed during the attack"
        assert max(self.times) < RENDEZVOUS_BUDGET_S, self.times


@contextlib.asynccontextmanager
async def normal_traffic(server: ServerProcess) -> AsyncIterator[Normal]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as client:
        master = await register(client)
    normal = Normal(server.url, master)
    stop = asyncio.Event()
    task = asyncio.create_task(normal.loop(stop))
    try:
        yield normal
        # At least one rendezvous after the attack has had its effect.
        count = len(normal.times)
        deadline = time.monotonic() + RENDEZVOUS_BUDGET_S * 2
        while len(normal.times) <= count and not normal.errors and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, RENDEZVOUS_BUDGET_S * 2)
    normal.check()


# -- raw attackers ------------------------------------------------------------------------------


async def raw_connect(server: ServerProcess, source: str, *, rcvbuf: int | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    url = httpx.URL(server.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def masked(opcode: int, payload: bytes = b"") -> bytes:
    key = os.urandom(4)
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + data


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), WAIT_S)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(n), WAIT_S)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the server has closed the connection (EOF or reset) within ``within`` s."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


async def open_raw_channel(server: ServerProcess, source: str, **kw: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    reader, writer = await raw_connect(server, source, **kw)
    writer.write(UPGRADE_HEAD)
    status, _ = await read_head(reader)
    assert status == 101
    opcode, payload = await read_frame(reader)
    assert opcode == 0x1 and "uuid" in json.loads(payload)
    return reader, writer


# -- 1: a ping flood that never reads the pongs ---------------------------------------------------


def server_rx_queue(server_port: int, client: tuple[str, int]) -> int | None:
    """Bytes the kernel holds for the server's end of one connection that the server has
    not read yet (``/proc/net/tcp``), or None if there is no such socket."""
    remote = f"{socket.inet_aton(client[0])[::-1].hex().upper()}:{client[1]:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server_port:04X}") and fields[2] == remote:
            return int(fields[4].split(":")[1], 16)
    return None


async def test_ping_flood_without_reading_is_held_by_backpressure(
    unlimited_pings_server: ServerProcess,
) -> None:
    """The server stops reading a socket whose pongs are not drained, and drops it past
    the write bound: the flood waits in the kernel or is cut off, it never piles up in the
    server's memory (today: 149 MB sent took RSS 50 → 257 MB)."""
    server = unlimited_pings_server
    port = httpx.URL(server.url).port
    assert port is not None
    ping = masked(0x9, b"p" * 125)
    budget = 40 * 1024 * 1024
    async with normal_traffic(server):
        _, writer = await open_raw_channel(server, "127.0.0.2", rcvbuf=4096)
        client = writer.get_extra_info("sockname")
        before = server.rss_kib()
        sent, dropped, stalled = 0, False, False
        burst = ping * 512  # 67 KB per write
        # The flood ends when a write makes no progress for STALL_S (the kernel's buffers are
        # full: the server has stopped reading), not at a fixed time: on a loaded machine a
        # fixed window can end while the server is still catching up, and it then reads on.
        deadline = time.monotonic() + FLOOD_DEADLINE_S
        try:
            while sent < budget and time.monotonic() < deadline:
                writer.write(burst)
                await asyncio.wait_for(writer.drain(), STALL_S)
                sent += len(burst)
        except TimeoutError:
            stalled = True  # the kernel's buffers are full: nobody reads
        except ConnectionError:
            dropped = True  # past the write bound (what one read of pings provoked)
        assert stalled or dropped or sent >= budget, f"no stall in {FLOOD_DEADLINE_S} s ({sent} B)"
        # The flood has stopped: a server that still reads drains its receive queue now.
        # This one either paused reading (the queue stays exactly as it is) or dropped
        # the socket.
        queued = server_rx_queue(port, client)
        samples = []
        end = time.monotonic() + 2.0
        while queued is not None and time.monotonic() < end:
            samples.append(server_rx_queue(port, client))
            await asyncio.sleep(0.1)
        grown_mib = (server.rss_kib() - before) / 1024
        writer.transport.abort()
    if queued is None or dropped:
        assert sent < budget, "the server took the whole flood before dropping it"
    else:
        assert queued, f"the server read all {sent} bytes of the flood"
        assert set(samples) == {queued}, f"the server kept reading: {queued} then {samples}"
    assert grown_mib < 8, f"RSS grew {grown_mib:.1f} MiB under the flood ({sent} bytes sent)"


# -- 2: many idle sockets from one address; a slowloris head ---------------------------------------


async def test_idle_sockets_from_one_address_are_capped_and_timed_out(
    server: ServerProcess,
) -> None:
    """Over 256 open sockets from one address the rest get 503 at once; the ones held get
    408 at the head deadline; a normal client (another address) is served throughout."""
    cap = 256
    async with normal_traffic(server):
        start = time.monotonic()
        conns = await asyncio.gather(*(raw_connect(server, "127.0.0.3") for _ in range(cap + 20)))
        statuses = [status for status, _ in await asyncio.gather(*(read_head(r) for r, _ in conns))]
        assert statuses.count(503) == 20, statuses  # over the cap: at once
        assert statuses.count(408) == cap, statuses  # held, then cut at the head deadline
        assert time.monotonic() - start < HEAD_TIMEOUT_S + 3
        for _, writer in conns:
            writer.close()


async def test_slowloris_upgrade_is_cut_off_at_the_head_deadline(server: ServerProcess) -> None:
    """An upgrade request at one byte every 0.2 s (today: held 62 s and never closed)."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.4")
        start = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in UPGRADE_HEAD[:-4]:
                if reader.at_eof() or time.monotonic() - start > HEAD_TIMEOUT_S + 3:
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.2)
                    break  # an answer came: the deadline passed
        elapsed = time.monotonic() - start
        assert elapsed < HEAD_TIMEOUT_S + 2
        assert await closed_by_server(reader, 2.0)
        writer.close()


# -- 3: a ping flood that reads the pongs ----------------------------------------------------------


async def test_control_frame_flood_is_closed_1008(server: ServerProcess) -> None:
    """Past the per-socket control-frame budget (10 at once, 1/s) the socket is closed with
    1008 (today: never, and one such connection slowed every other client 10-20x)."""
    async with normal_traffic(server):
        reader, writer = await open_raw_channel(server, "127.0.0.5")
        writer.write(masked(0x9, b"x") * 2000)
        pongs = 0
        while True:
            opcode, payload = await read_frame(reader)
            if opcode != 0xA:
                break
            pongs += 1
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1008
        assert pongs <= 10
        assert await closed_by_server(reader, 2.0)
        writer.close()


# -- 6: huge and unfinished headers -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/v1/temp_websocket", "/v1/accounts/whatever"])
async def test_huge_header_is_431_on_every_path(server: ServerProcess, path: str) -> None:
    """A 2 MB header gets 431 (today: accepted on every path but the channel)."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.6")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nX-Big: ".encode())
        sent, answer = 0, None
        with contextlib.suppress(ConnectionError):
            while sent < 2_000_000 and answer is None:
                writer.write(b"a" * 65536)
                await writer.drain()
                sent += 65536
                with contextlib.suppress(TimeoutError):  # answered yet?
                    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.01)
            if answer is None:
                writer.write(b"\r\n\r\n")
        if answer is None:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        assert b"content-type: application/json" in answer
        assert sent < 1_000_000, "the server read far past the limit before answering"
        assert await closed_by_server(reader, 2.0)
        writer.close()


async def test_huge_header_on_a_keep_alive_request_is_431(server: ServerProcess) -> None:
    """The second request of a connection (uvicorn's parser) is held to the same limit."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.6")
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers = await read_head(reader)
        assert status == 200
        await reader.readexactly(int(headers["content-length"]))
        big = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        with contextlib.suppress(ConnectionError):
            writer.write(big)
            await writer.drain()
        status, _ = await read_head(reader)
        assert status == 431
        assert await closed_by_server(reader, 2.0)
        writer.close()


@pytest.mark.parametrize("keep_alive", [False, True], ids=["first", "keep-alive"])
async def test_unfinished_head_is_closed_408(server: ServerProcess, keep_alive: bool) -> None:
    """An unfinished head is dropped at the deadline (today: held forever)."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.7")
        if keep_alive:
            writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers = await read_head(reader)
            assert status == 200
            await reader.readexactly(int(headers["content-length"]))
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 8000)
        start = time.monotonic()
        status, _ = await read_head(reader)
        assert status == 408
        assert time.monotonic() - start < HEAD_TIMEOUT_S + 2
        assert await closed_by_server(reader, 2.0)
        writer.close()


async def test_a_later_head_on_a_keep_alive_connection_gets_its_own_deadline(
    server: ServerProcess,
) -> None:
    """The connection's one head timer was armed by the first request; a second head that
    starts half a deadline later is cut a whole deadline after it starts, not before."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.7")
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers = await read_head(reader)
        assert status == 200
        await reader.readexactly(int(headers["content-length"]))
        await asyncio.sleep(HEAD_TIMEOUT_S / 2)  # the gap between requests is the test
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: a")
        start = time.monotonic()
        status, _ = await read_head(reader)
        assert status == 408
        assert HEAD_TIMEOUT_S - 0.2 <= time.monotonic() - start < HEAD_TIMEOUT_S + 2
        assert await closed_by_server(reader, 2.0)
        writer.close()


# -- 11: pipelining --------------------------------------------------------------------------------


async def test_pipelined_request_then_upgrade_keeps_the_streams_apart(
    server: ServerProcess,
) -> None:
    """``GET /health`` and an upgrade in one write: the /health reply comes whole, before the
    101 (today: after it, inside the websocket stream)."""
    async with normal_traffic(server):
        for _ in range(5):
            reader, writer = await raw_connect(server, "127.0.0.8")
            writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n" + UPGRADE_HEAD)
            status, headers = await read_head(reader)
            assert status == 200
            body = await reader.readexactly(int(headers["content-length"]))
            assert json.loads(body)
            status, _ = await read_head(reader)
            assert status == 101
            opcode, payload = await read_frame(reader)
            assert opcode == 0x1 and "uuid" in json.loads(payload)
            writer.write(masked(0x8, (1000).to_bytes(2, "big")))
            opcode, payload = await read_frame(reader)
            assert opcode == 0x8
            assert await closed_by_server(reader, 2.0)
            writer.close()
    assert "Traceback" not in server.log()


async def test_bytes_after_the_upgrade_are_frames_not_requests(server: ServerProcess) -> None:
    """A request pipelined after the upgrade is not answered as HTTP: as frames it is broken
    framing (1002), and nothing of an HTTP reply appears in the websocket stream."""
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.8")
        writer.write(UPGRADE_HEAD + b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        status, _ = await read_head(reader)
        assert status == 101
        opcode, _ = await read_frame(reader)
        assert opcode == 0x1
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1002
        rest = b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            rest = await asyncio.wait_for(reader.read(), 2.0)
        assert b"HTTP/1.1" not in rest
        writer.close()


# -- 12: a lenient handshake ---------------------------------------------------------------------

_BASE = ["Host: test", "Upgrade: websocket", "Connection: Upgrade",
         f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"]  # fmt: skip


def _head(lines: list[str], version: str = "HTTP/1.1", eol: str = "\r\n") -> bytes:
    return (eol.join([f"GET /v1/temp_websocket {version}", *lines]) + eol + eol).encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        _head([line if not line.startswith("Upgrade") else "Upgrade: notwebsocketatall"
               for line in _BASE]),
        _head([line if not line.startswith("Connection") else "Connection: notupgradeX"
               for line in _BASE]),
        _head(_BASE, version="HTTP/1.0"),
        _head(_BASE[1:]),
        _head([*_BASE, "X-Nul: a\x00b"]),
        _head(_BASE, eol="\n"),
    ],
    ids=["upgrade-value", "connection-value", "http-1.0", "no-host", "nul-in-value", "bare-lf"],
)  # fmt: skip
async def test_lenient_handshakes_are_400(server: ServerProcess, request_bytes: bytes) -> None:
    async with normal_traffic(server):
        reader, writer = await raw_connect(server, "127.0.0.9")
        writer.write(request_bytes)
        status, headers = await read_head(reader)
        assert status == 400
        assert json.loads(await reader.readexactly(int(headers["content-length"])))["code"] == 400
        assert await closed_by_server(reader, 2.0)
        writer.close()
