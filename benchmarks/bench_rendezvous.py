"""B3 (own half): channel rendezvous throughput and latency against `provision server`.

One rendezvous = websocket open → {"uuid"} frame → authenticated
PUT /v1/messages/{uuid} → {"message"} frame → close 1000 seen by the client
(PROTOCOL.md §4.1), timed from before the connect to after the close.

The server is a separate process (`provision server`, rate limits and access
log off, SQLite in a temp folder); this process is the load generator. Every
loop is bounded in count and in time, and everything stays on 127.0.0.1. The
generator's PUT is a minimal keep-alive HTTP/1.1 client on asyncio streams (one
connection per worker), so that httpx's own cost does not hide the server's.
With --pin, the server runs on CPU 0 and the generator on CPU 1.

`--idle N` also opens N channels and holds them, and reports the server's RSS
growth per channel (the B4 figure; target ≤ 10 KiB).

Run: python benchmarks/bench_rendezvous.py [--concurrency 1,10,50] [--count 2000]
     [--seconds 20] [--pin] [--idle 0] [--url URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CODE = "135790"
NUMBER = "+15550009999"
PASSWORD = base64.b64encode(os.urandom(18)).decode()
DEVICE_INIT_B64 = base64.b64encode(os.urandom(180)).decode()  # ~ a real DeviceInit
TARGET_P99_MS = 50.0


# -- a tiny keep-alive HTTP/1.1 client (one per worker) ----------------------------------------


class Http:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", auth: tuple[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        headers = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers.append(f"Authorization: Basic {token}")
        if body or method in ("PUT", "POST"):
            headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(Exception):
                await self.writer.wait_closed()


# -- the server process --------------------------------------------------------------------------


def start_server(workdir: Path, pin: bool) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "url"
    args = [
        sys.executable, "-m", "textsecure_provision", "server",
        "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
        "--db", f"sqlite:///{workdir / 'bench.sqlite3'}",
        "--test-registration-code", CODE, "--no-rate-limits", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    proc = subprocess.Popen(args, env=env, stderr=(workdir / "server.log").open("wb"))
    if pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(proc.pid, {0})
        os.sched_setaffinity(0, {1})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited:\n" + (workdir / "server.log").read_text())
        if port_file.exists() and port_file.read_text().endswith("\n"):
            return proc, port_file.read_text().strip()
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start in 30 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see which side is saturated."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the measurement -------------------------------------------------------------------------------


async def register(host: str, port: int) -> None:
    http = Http(host, port)
    status, _ = await http.request("GET", f"/v1/accounts/sms/code/{NUMBER}")
    assert status == 200, status
    body = json.dumps({"registrationId": 1, "fetchesMessages": True}).encode()
    status, data = await http.request("PUT", f"/v1/accounts/code/{CODE}", body, (NUMBER, PASSWORD))
    assert status == 200, data
    await http.close()


async def rendezvous(ws_url: str, http: Http) -> float:
    started = time.perf_counter()
    async with connect(ws_url, compression=None, ping_interval=None, open_timeout=10) as ws:
        channel = json.loads(await ws.recv())["uuid"]
        body = json.dumps({"messages": [{"type": 0, "destinationDeviceId": 1,
                                         "destinationRegistrationId": 0,
                                         "body": DEVICE_INIT_B64}]}).encode()  # fmt: skip
        status, data = await http.request(
            "PUT", f"/v1/messages/{channel}", body, (NUMBER, PASSWORD)
        )
        if status != 200:
            raise RuntimeError(f"PUT answered {status}: {data[:200]!r}")
        frame = json.loads(await ws.recv())
        if frame != {"message": DEVICE_INIT_B64}:
            raise RuntimeError("wrong frame")
        try:
            await ws.recv()
            raise RuntimeError("a second frame")
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1000:
                raise RuntimeError(f"closed with {exc.rcvd}") from None
    return time.perf_counter() - started


async def run_level(
    ws_url: str,
    host: str,
    port: int,
    concurrency: int,
    count: int,
    seconds: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    remaining = count

    async def worker() -> None:
        nonlocal remaining, errors
        http = Http(host, port)
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                try:
                    latencies.append(await rendezvous(ws_url, http))
                except Exception as exc:  # counted and shown, never hidden
                    errors += 1
                    if errors <= 3:
                        print(f"  error: {type(exc).__name__}: {exc}", file=sys.stderr)
                    await http.close()
                    http = Http(host, port)
        finally:
            await http.close()

    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    own0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    server_cpu = (cpu_seconds(server_pid) - cpu0) / elapsed if server_pid else float("nan")
    generator_cpu = (time.process_time() - own0) / elapsed
    lat_ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return lat_ms[min(len(lat_ms) - 1, int(p * len(lat_ms)))] if lat_ms else float("nan")

    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rate_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "mean_ms": round(statistics.fmean(lat_ms), 2) if lat_ms else float("nan"),
        "server_cpu": round(server_cpu, 2),  # CPU seconds per second: 1.0 = one core busy
        "generator_cpu": round(generator_cpu, 2),
    }


async def hold_idle(ws_url: str, pid: int, n: int) -> dict[str, Any]:
    """Open n channels, keep them, and report the server's RSS growth per channel."""
    before = rss_kib(pid)
    sockets = []
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            ws = await connect(ws_url, compression=None, ping_interval=None, open_timeout=30)
            await ws.recv()
            sockets.append(ws)

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(1.0)  # let the server settle before reading RSS (a measurement pause)
    after = rss_kib(pid)
    for ws in sockets:
        await ws.close()
    return {
        "idle_channels": n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_channel": round((after - before) / n, 2),
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    from urllib.parse import urlsplit

    proc = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-rdv-"))
    url = args.url
    if url is None:
        proc, url = start_server(workdir, args.pin)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    ws_url = f"ws://{host}:{port}/v1/temp_websocket"
    results: list[dict[str, Any]] = []
    try:
        await register(host, port)
        await run_level(ws_url, host, port, 10, 200, 10)  # warm-up, not reported
        pid = proc.pid if proc is not None else None
        for c in args.concurrency:
            results.append(await run_level(ws_url, host, port, c, args.count, args.seconds, pid))
        if args.idle and proc is not None:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = min(hard, args.idle * 2 + 1000)
            if soft < want:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            results.append(await hold_idle(ws_url, proc.pid, args.idle))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency", default="1,10,50", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--count", type=int, default=2000, help="rendezvous per level (bound)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per level (bound)")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, generator on CPU 1")
    parser.add_argument("--idle", type=int, default=0, help="also hold N idle channels (B4)")
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    try:
        import uvloop

        results = uvloop.run(main(args))
    except ImportError:
        results = asyncio.run(main(args))
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "concurrency" in r:
            print(
                f"c={r['concurrency']:>3}: {r['rate_per_s']:>8.1f} rendezvous/s  "
                f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms (target ≤ {TARGET_P99_MS:g})  "
                f"[{r['completed']} in {r['seconds']} s, {r['errors']} errors; CPU: server "
                f"{r['server_cpu']:.2f}, generator {r['generator_cpu']:.2f}]"
            )
        else:
            print(
                f"idle: {r['kib_per_channel']:.2f} KiB per channel (target ≤ 10) "
                f"[{r['idle_channels']} channels, "
                f"RSS {r['rss_before_kib']} → {r['rss_after_kib']} KiB]"
            )


if __name__ == "__main__":
    cli()
