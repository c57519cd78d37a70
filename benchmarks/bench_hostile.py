"""Figures for docs/security.md §10: the relay under hostile sockets (issue 12).

Against a real ``provision server`` process on 127.0.0.1 (default budgets), attackers on
other loopback addresses, a normal client on 127.0.0.1:

* ``flood-unread``: one channel socket sends pings (125-byte payloads) for ``--seconds``
  and never reads the pongs: the server's RSS before and after, and the bytes it took;
* ``idle``: ``--idle`` sockets opened from 127.0.0.2 that send nothing, while normal
  rendezvous run: how many were held, refused, and the rendezvous count and times;
* ``flood-read``: ``--flooders`` sockets that flood pings and read the pongs (each
  reconnects when closed) for ``--seconds``, while normal rendezvous run: their times,
  against the same rendezvous with no flood.

A rendezvous: websocket open → uuid → authenticated PUT → message frame → close 1000.
Run: python benchmarks/bench_hostile.py [--seconds 5] [--idle 10000] [--flooders 4] [--json]
(PYTHONPATH picks the code under test, so the same script measures an older tree.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import HttpClient, WsClient, WsClosed, start_process, stop_process

CODE = "135790"
NUMBER = "+15550008888"
PASSWORD = base64.b64encode(os.urandom(18)).decode()
KEY = base64.b64encode(b"0123456789abcdef").decode()
UPGRADE = (
    "GET /v1/temp_websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
    f"\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def start_server(workdir: Path, extra: tuple[str, ...]) -> tuple[Any, str]:
    port_file = workdir / "url"
    args = [
        sys.executable, "-m", "textsecure_provision", "server", "--host", "127.0.0.1",
        "--port", "0", "--port-file", str(port_file), "--db",
        f"sqlite:///{workdir / 'relay.sqlite3'}", "--test-registration-code", CODE,
        "--no-access-log", "--log-level", "warning",
        "--rate-limit", "channel_create_address=100000/60", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}

    def ready() -> str | None:
        text = port_file.read_text() if port_file.exists() else ""
        return text.strip() if text.endswith("\n") else None

    return start_process(args, ready, workdir / "server.log", env=env)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ping(payload: bytes) -> bytes:
    key = os.urandom(4)
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + key + data


async def connect_from(host: str, port: int, source: str, rcvbuf: int | None = None) -> Any:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


class Normal:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.auth = b"Basic " + base64.b64encode(f"{NUMBER}:{PASSWORD}".encode())
        body = {"messages": [{"type": 0, "destinationDeviceId": 1, "body": "aW5pdA=="}]}
        self.body = json.dumps(body).encode()

    async def register(self) -> None:
        http = await HttpClient.connect(self.host, self.port)
        host = b"Host: x"
        status, _ = await http.request(b"GET /v1/accounts/sms/code/" + NUMBER.encode()
                                       + b" HTTP/1.1\r\n" + host)  # fmt: skip
        assert status == 200
        status, data = await http.request(
            b"PUT /v1/accounts/code/" + CODE.encode() + b" HTTP/1.1\r\n" + host
            + b"\r\nAuthorization: " + self.auth + b"\r\nContent-Type: application/json",
            json.dumps({"registrationId": 1, "fetchesMessages": True}).encode(),
        )  # fmt: skip
        assert status == 200, data
        http.close()

    async def once(self) -> float:
        start = time.monotonic()
        http = await HttpClient.connect(self.host, self.port)
        ws = await WsClient.connect(self.host, self.port, "/v1/temp_websocket")
        try:
            channel = json.loads(await ws.recv())["uuid"]
            status, _ = await http.request(
                b"PUT /v1/messages/" + channel.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: " + self.auth + b"\r\nContent-Type: application/json",
                self.body,
            )  # fmt: skip
            assert status == 200
            await ws.recv()
            with contextlib.suppress(WsClosed):
                await ws.recv()
            await ws.wait_closed()
        finally:
            ws.abort()
            http.close()
        return time.monotonic() - start

    async def run(self, seconds: float) -> dict[str, Any]:
        times: list[float] = []
        failures = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                times.append(await asyncio.wait_for(self.once(), 30))
            except Exception:
                failures += 1
            await asyncio.sleep(0.05)
        return summary(times, failures)


def summary(times: list[float], failures: int) -> dict[str, Any]:
    ms = sorted(t * 1000 for t in times)
    return {
        "rendezvous": len(ms),
        "failed": failures,
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
    }


async def flood_unread(host: str, port: int, pid: int, seconds: float) -> dict[str, Any]:
    reader, writer = await connect_from(host, port, "127.0.0.3", rcvbuf=4096)
    writer.write(UPGRADE)
    await reader.readuntil(b"\r\n\r\n")
    before = rss_kib(pid)
    burst = ping(b"p" * 125) * 512
    sent = 0
    closed = False
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            writer.write(burst)
            await asyncio.wait_for(writer.drain(), max(0.01, end - time.monotonic()))
            sent += len(burst)
    except TimeoutError:
        pass
    except ConnectionError:
        closed = True
    after = rss_kib(pid)
    writer.transport.abort()
    return {"sent_mb": round(sent / 1e6, 1), "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1), "closed_by_server": closed}  # fmt: skip


async def idle(host: str, port: int, n: int, normal: Normal, seconds: float) -> dict[str, Any]:
    async def one() -> Any:
        try:
            return await connect_from(host, port, "127.0.0.2")
        except OSError:
            return None

    conns = [c for c in await asyncio.gather(*(one() for _ in range(n))) if c is not None]
    served = await normal.run(seconds)
    answers: dict[str, int] = {}
    for reader, writer in conns:
        try:
            data = await asyncio.wait_for(reader.read(64), 0.001)
            answer = data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"
        except TimeoutError:
            answer = "still open"
        except ConnectionError:
            answer = "reset"
        answers[answer] = answers.get(answer, 0) + 1
        writer.transport.abort()
    return {"opened": len(conns), "answers": answers, "normal": served}


async def flooder(host: str, port: int, source: str, stop: asyncio.Event, stats: dict[str, int]
                  ) -> None:  # fmt: skip
    burst = ping(b"x") * 4096
    while not stop.is_set():
        try:
            reader, writer = await connect_from(host, port, source)
            writer.write(UPGRADE)
            await reader.readuntil(b"\r\n\r\n")
            stats["connections"] += 1
            while not stop.is_set():
                writer.write(burst)
                await writer.drain()
                data = await reader.read(1 << 16)
                if not data:
                    break
                stats["bytes_back"] += len(data)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        with contextlib.suppress(Exception):
            writer.transport.abort()
        await asyncio.sleep(0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    proc, url = start_server(workdir, tuple(args.server_arg))
    host, port = url.split("//")[1].split(":")
    port_n = int(port)
    result: dict[str, Any] = {}
    try:
        normal = Normal(host, port_n)
        await normal.register()
        result["baseline"] = await normal.run(args.seconds)
        result["flood_unread"] = await flood_unread(host, port_n, proc.pid, args.seconds)
        # The flooders run in their own process, so that they compete with the normal
        # client for the server only, not for this process's event loop.
        flood = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--flood", f"{host}:{port_n}",
            "--flooders", str(args.flooders), "--seconds", str(args.seconds + 2),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # let the flood start
        served = await normal.run(args.seconds)
        out, _ = await flood.communicate()
        result["flood_read"] = {"normal": served, **json.loads(out)}
        result["idle"] = await idle(host, port_n, args.idle, normal, args.seconds)
        result["rss_end_mib"] = round(rss_kib(proc.pid) / 1024, 1)
    finally:
        stop_process(proc)
    return result


async def flood_only(target: str, flooders: int, seconds: float) -> dict[str, int]:
    host, port = target.split(":")
    stop = asyncio.Event()
    stats = {"connections": 0, "bytes_back": 0}
    tasks = [asyncio.create_task(flooder(host, int(port), f"127.0.0.{10 + i}", stop, stats))
             for i in range(flooders)]  # fmt: skip
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    return stats


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `provision server` argument (repeatable)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flood", metavar="HOST:PORT", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.flood:
        print(json.dumps(asyncio.run(flood_only(opts.flood, opts.flooders, opts.seconds))))
        sys.exit(0)
    out = asyncio.run(main(opts))
    print(json.dumps(out, indent=None if opts.json else 2))
