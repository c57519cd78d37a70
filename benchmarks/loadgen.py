"""The load generator's clients: a minimal websocket client and a keep-alive HTTP/1.1 client.

Both are plain ``asyncio.Protocol`` code (no ``websockets``, no ``httpx``) so
that the generator spends as little CPU per rendezvous as possible: on a
2-core machine the generator and the server share the CPUs, and a heavy
client would be measured instead of the server. They are strict enough for
the benchmark (RFC 6455 masking, the accept key, the close handshake) and
nothing more: no extensions, no fragmentation, no TLS. The same client drives
our server and the peer (magic-wormhole-mailbox-server), so neither is favoured.

Also here: starting a server process, its CPU time and RSS (Linux /proc), CPU
pinning, and the latency summary used by every load benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import statistics
import struct
import subprocess
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
RENDEZVOUS_TIMEOUT_S = 10.0  # one bound per rendezvous, instead of one per await


class WsClosed(Exception):
    """The connection closed; ``code`` is the server's close code (None: no close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final client frame (RFC 6455 §5.2-5.3). The masking key comes from
    ``random``, not the OS: it only has to vary, and a system call per frame would be
    generator CPU that the measurement does not need."""
    key = random.randbytes(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


class WsClient(asyncio.Protocol):
    """A websocket client connection: ``await WsClient.connect(...)``, ``recv()``, ``close()``."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake_done = False
        self.handshake: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.frames: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_sent = False

    @classmethod
    async def connect(cls, host: str, port: int, path: str, source: str | None = None) -> WsClient:
        """Open and upgrade (no timeout here: ``run_round`` bounds each whole rendezvous);
        ``source``: the local address to connect from (another 127.0.0.x)."""
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16))
        _, proto = await loop.create_connection(
            lambda: cls(key), host, port, local_addr=(source, 0) if source else None
        )
        assert proto.transport is not None
        proto.transport.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )  # fmt: skip
        status = await proto.handshake
        if status != 101:
            proto.transport.close()
            raise ConnectionError(f"handshake answered {status}")
        return proto

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshake_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            status = int(head[0].split()[1])
            if status == 101:
                expected = base64.b64encode(hashlib.sha1(self.key + _GUID).digest()).decode()
                accept = next(
                    (
                        v.strip()
                        for n, _, v in (h.partition(":") for h in head[1:])
                        if n.strip().lower() == "sec-websocket-accept"
                    ),
                    None,
                )
                if accept != expected:
                    self.handshake.set_exception(ConnectionError("bad Sec-WebSocket-Accept"))
                    return
            self.handshake_done = True
            self.handshake.set_result(status)
        self._parse()

    def _parse(self) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                pos = 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            del buf[: pos + n]
            opcode = b0 & 0x0F
            if opcode == OP_PING:
                self._write(client_frame(OP_PONG, payload))
                continue
            if opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                if not self.close_sent:  # answer the server's close (RFC 6455 §5.5.1)
                    self.close_sent = True
                    self._write(client_frame(OP_CLOSE, payload[:2]))
            self.frames.append((opcode, payload))
        self._wake()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- use ---------------------------------------------------------------------------------
    async def recv(self) -> str:
        """The next text frame; ``WsClosed`` once a close frame or the end of the stream."""
        while True:
            while self.frames:
                opcode, payload = self.frames.popleft()
                if opcode == OP_TEXT:
                    return payload.decode()
                if opcode == OP_CLOSE:
                    raise WsClosed(self.close_code)
            if self.lost.done():
                raise WsClosed(self.close_code)
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    def send_text(self, text: str) -> None:
        self._write(client_frame(OP_TEXT, text.encode()))

    async def wait_closed(self) -> None:
        """Wait until the server closes the TCP connection (it closes first, RFC 6455 §7.1.1)."""
        try:
            await asyncio.shield(self.lost)
        finally:
            if self.transport is not None:
                self.transport.close()

    async def close(self, code: int = 1000) -> None:
        """Client-initiated close handshake, then wait for the server to drop TCP."""
        if not self.close_sent and not self.lost.done():
            self.close_sent = True
            self._write(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        await self.wait_closed()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HttpClient(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; ``request()`` is sequential (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: asyncio.Future[tuple[int, bytes]] | None = None
        self.head: tuple[int, int] | None = None  # status, content length

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0) -> HttpClient:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(loop.create_connection(cls, host, port), timeout)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            del self.buffer[: end + 4]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.head = (int(lines[0].split()[1]), length)
        status, length = self.head
        if len(self.buffer) >= length:
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
            self.head = None
            if self.pending is not None and not self.pending.done():
                self.pending.set_result((status, body))

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send ``head`` (request line and headers, no blank line) with ``body``."""
        if self.transport is None:
            raise ConnectionError("not connected")
        self.pending = asyncio.get_running_loop().create_future()
        self.transport.write(
            head + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        return await self.pending

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- processes ---------------------------------------------------------------------------------


def start_process(
    args: list[str],
    ready: Callable[[], str | None],
    log_path: Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server process and wait until ``ready()`` returns its URL."""
    proc = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{args[0]} exited:\n" + log_path.read_text(errors="replace"))
        url = ready()
        if url:
            return proc, url
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{' '.join(args[:3])} did not start in {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def pin(pid: int, cpu: int) -> bool:
    """Pin a process (0: this one) to one CPU, when the machine has at least two."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(pid, {cpu})
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_delay_s(pid: int) -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (schedstat): on a
    shared machine, the time other work took from it."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_pressure() -> str:
    """The kernel's CPU pressure (how often runnable tasks waited for a CPU): other work on a
    shared machine shows here, and explains a noisy figure."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"
    return line.split(" ", 1)[1]


# -- measuring a level ----------------------------------------------------------------------------


@dataclass
class Sample:
    """Rendezvous measured at one concurrency, possibly over several interleaved rounds."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    server_cpu: float = 0.0
    generator_cpu: float = 0.0
    server_wait: float = 0.0
    generator_wait: float = 0.0
    rounds: int = 0

    def summary(self) -> dict[str, Any]:
        lat_ms = sorted(x * 1000 for x in self.latencies)
        n = len(lat_ms)

        def pct(p: float) -> float:
            return lat_ms[min(n - 1, int(p * n))] if lat_ms else float("nan")

        return {
            "concurrency": self.concurrency,
            "rounds": self.rounds,
            "completed": n,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "seconds": round(self.elapsed, 3),
            "rate_per_s": round(n / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(pct(0.50), 2),
            "p99_ms": round(pct(0.99), 2),
            "mean_ms": round(statistics.fmean(lat_ms), 2) if lat_ms else float("nan"),
            # CPU seconds per completed rendezvous (µs), for each side: what a rate costs.
            "server_cpu_us": round(self.server_cpu / max(1, n) * 1e6, 1),
            "generator_cpu_us": round(self.generator_cpu / max(1, n) * 1e6, 1),
            "server_cpu_load": round(self.server_cpu / self.elapsed, 2) if self.elapsed else 0.0,
            # Share of the time each side was runnable but waited for a CPU (other processes).
            "server_cpu_wait": round(self.server_wait / self.elapsed, 2) if self.elapsed else 0.0,
            "generator_cpu_wait": (
                round(self.generator_wait / self.elapsed, 2) if self.elapsed else 0.0
            ),
        }


async def run_round(
    sample: Sample,
    one: Callable[[Any], Any],
    make_state: Callable[[], Any],
    close_state: Callable[[Any], Any],
    count: int,
    seconds: float,
    server_pid: int | None,
) -> None:
    """Run ``one(state)`` (one timed rendezvous) from ``sample.concurrency`` workers, at most
    ``count`` in all and for at most ``seconds``, adding to ``sample``; each worker has its own
    ``make_state()``."""
    deadline = time.perf_counter() + seconds
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        state = await make_state()
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(RENDEZVOUS_TIMEOUT_S):
                        await one(state)
                except Exception as exc:  # counted and shown, never hidden
                    sample.errors.append(f"{type(exc).__name__}: {exc}")
                    await close_state(state)
                    state = await make_state()
                    continue
                sample.latencies.append(time.perf_counter() - started)
        finally:
            await close_state(state)

    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    wait0 = run_delay_s(server_pid) if server_pid else 0.0
    own0, own_wait0 = time.process_time(), run_delay_s(os.getpid())
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sample.concurrency)))
    sample.elapsed += time.perf_counter() - started
    sample.generator_cpu += time.process_time() - own0
    sample.generator_wait += run_delay_s(os.getpid()) - own_wait0
    if server_pid:
        sample.server_cpu += cpu_seconds(server_pid) - cpu0
        sample.server_wait += run_delay_s(server_pid) - wait0
    sample.rounds += 1


async def run_level(
    one: Callable[[Any], Any],
    make_state: Callable[[], Any],
    close_state: Callable[[Any], Any],
    concurrency: int,
    count: int,
    seconds: float,
    server_pid: int | None,
) -> dict[str, Any]:
    """One round at one concurrency, summarised (see ``run_round``)."""
    sample = Sample(concurrency)
    await run_round(sample, one, make_state, close_state, count, seconds, server_pid)
    return sample.summary()


# -- one rendezvous, and a benchmark's command line -----------------------------------------------


async def rendezvous_once(
    ws: WsClient, http: HttpClient, put_head: Callable[[bytes], bytes], body: bytes, expected: Any
) -> None:
    """One §4.1 rendezvous on our server: read the channel's ``{"uuid"}`` frame from ``ws``, PUT
    ``body`` to it over ``http`` (``put_head(uuid)`` is the request's head), then the message
    frame must equal ``expected`` and be the last before a 1000 close. ``ws`` is aborted on
    any failure."""
    try:
        channel = json.loads(await ws.recv())["uuid"]
        status, data = await http.request(put_head(channel.encode()), body)
        if status != 200:
            raise RuntimeError(f"PUT answered {status}: {data[:200]!r}")
        if json.loads(await ws.recv()) != expected:
            raise RuntimeError("wrong message frame")
        try:
            await ws.recv()
            raise RuntimeError("a second frame")
        except WsClosed as closed:
            if closed.code != 1000:
                raise RuntimeError(f"closed with {closed.code}") from None
        await ws.wait_closed()
    except BaseException:
        ws.abort()
        raise


async def register(host: str, port: int, number: str, password: str, code: str) -> None:
    """Register ``number`` (device 1, ``password``) on our server with the registration
    ``code`` (the server runs with a fixed dev code)."""
    http = await HttpClient.connect(host, port)
    try:
        head = f"Host: {host}:{port}".encode()
        status, data = await http.request(
            b"GET /v1/accounts/sms/code/" + number.encode() + b" HTTP/1.1\r\n" + head
        )
        assert status == 200, data
        token = base64.b64encode(f"{number}:{password}".encode())
        status, data = await http.request(
            f"PUT /v1/accounts/code/{code} HTTP/1.1\r\n".encode()
            + head
            + b"\r\nAuthorization: Basic "
            + token
            + b"\r\nContent-Type: application/json",
            json.dumps({"registrationId": 1, "fetchesMessages": True}).encode(),
        )
        assert status == 200, data
    finally:
        http.close()


def level_arguments(
    parser: argparse.ArgumentParser, concurrency: str, rounds: int, per: str
) -> None:
    """The options every level-by-level load benchmark takes (``per``: "side", "setup"...)."""
    parser.add_argument(
        "--concurrency", default=concurrency, type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--count", type=int, default=30000, help="rendezvous per level (bound)")
    parser.add_argument("--seconds", type=float, default=6.0, help=f"time per level and {per}")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds per level")


def run_measured(
    measure: Coroutine[Any, Any, dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
    verdict: Callable[[dict[str, Any]], tuple[bool, str]],
    as_json: bool,
) -> dict[str, Any]:
    """Run ``measure`` on uvloop, print its report, and add the verdict (``ok``, ``summary``)."""
    import uvloop

    result = uvloop.run(measure)
    report(result)
    result["ok"], result["summary"] = verdict(result)
    if as_json:
        print(json.dumps(result))
    return result
