"""B9: a normal link and normal rendezvous while one address attacks (loopback only).

One ``provision server`` (SQLite, its default limits and defences, access log
off) and, in turn:

1. quiet: ``--links`` full links (bench_link.one_link: two CLI processes,
   acknowledgement included) and a paced rendezvous probe (B3's rendezvous,
   ``--probe-rate`` per second for ``--probe-seconds``, channels opened from
   127.0.0.11-14 so that no per-address budget is what is measured);
2. under attack: the same, while an attacker process bound to 127.0.0.2 holds
   ``--idle`` idle sockets (half connect and say nothing, half send a partial
   request head and stall) and floods pings on ``--flooders`` channel
   websockets, as fast as TCP lets it, reconnecting whatever the server closes.

Figures: the normal link's median under attack against its quiet median
(target ≤ 2×), the probe's p50/p99 in both phases, and what the attack got:
idle sockets the server still held at the end, pings sent and pongs received
per second, connections the server closed. Nothing of the server is assumed:
the benchmark runs against whatever defences it has and reports what they did.

Run: python benchmarks/bench_attack.py [--links 5] [--idle 10000] [--flooders 20]
     [--probe-rate 20] [--probe-seconds 6] [--json]
(the attacker role: bench_attack.py --attacker HOST PORT IDLE FLOODERS)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_link
from bench_idle import raise_nofile
from loadgen import (
    OP_PING,
    OP_PONG,
    HttpClient,
    WsClient,
    WsClosed,
    client_frame,
    cpu_pressure,
    cpu_seconds,
)

TARGET_RATIO = 2.0
ATTACKER = "127.0.0.2"
PROBE_SOURCES = ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14")
PATH = "/v1/temp_websocket"
ATTACK_SETTLE_S = 20.0  # the attacker's sockets are opened before the timed part starts
BODY_B64 = base64.b64encode(os.urandom(225)).decode()


# -- the attacker (its own process: its CPU is not the generator's) ------------------------------


class _Idle(asyncio.Protocol):
    open = 0
    closed_by_server = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Idle.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        _Idle.open -= 1
        _Idle.closed_by_server += 1


async def _idle_holder(host: str, port: int, target: int, stats: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stall = b"GET /v1/temp_websocket HTTP/1.1\r\nHost: x\r\n"  # and never the blank line
    n = 0
    while True:
        missing = target - _Idle.open
        batch = []
        for _ in range(min(missing, 200)):
            batch.append(
                asyncio.wait_for(
                    loop.create_connection(_Idle, host, port, local_addr=(ATTACKER, 0)), 5
                )
            )
        for done in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(done, BaseException):
                stats["idle_refused"] += 1
            else:
                n += 1
                transport = done[0]
                if n % 2 and not transport.is_closing():  # the server may have shut it
                    with contextlib.suppress(RuntimeError, OSError):
                        transport.write(stall)
        await asyncio.sleep(0.05 if missing > 200 else 1.0)  # pacing the refill


async def _flooder(host: str, port: int, stats: dict[str, int]) -> None:
    ping = client_frame(OP_PING, b"12345678")
    while True:
        try:
            ws = await asyncio.wait_for(WsClient.connect(host, port, PATH, ATTACKER), 10)
            await asyncio.wait_for(ws.recv(), 10)  # the uuid frame
        except (OSError, TimeoutError, WsClosed, ConnectionError):
            stats["flood_refused"] += 1
            await asyncio.sleep(0.2)
            continue
        transport = ws.transport
        assert transport is not None
        while not ws.lost.done():
            if transport.get_write_buffer_size() < 64 * 1024:
                transport.write(ping * 64)
                stats["pings"] += 64
            while ws.frames:
                opcode, _ = ws.frames.popleft()
                if opcode == OP_PONG:
                    stats["pongs"] += 1
            await asyncio.sleep(0.001)  # let the reader run; TCP back-pressure bounds it
        stats["flood_closed"] += 1


async def attacker(host: str, port: int, idle: int, flooders: int) -> None:
    raise_nofile()
    stats = {"pings": 0, "pongs": 0, "flood_closed": 0, "flood_refused": 0, "idle_refused": 0}
    tasks = [asyncio.create_task(_flooder(host, port, stats)) for _ in range(flooders)]
    tasks.append(asyncio.create_task(_idle_holder(host, port, idle, stats)))
    while True:
        await asyncio.sleep(1.0)
        report = {"idle_open": _Idle.open, "idle_closed": _Idle.closed_by_server, **stats}
        print(json.dumps(report), flush=True)


# -- the normal side -----------------------------------------------------------------------


class Probe:
    """B3's rendezvous, paced, for a few registered masters (each under its send budget)."""

    def __init__(self, host: str, port: int, masters: list[tuple[str, str]]) -> None:
        self.host, self.port = host, port
        self.masters = masters
        self.body = json.dumps(
            {"messages": [{"type": 0, "destinationDeviceId": 1, "destinationRegistrationId": 0,
                           "body": BODY_B64}]}
        ).encode()  # fmt: skip

    async def once(self, http: HttpClient, i: int) -> None:
        ws = await WsClient.connect(self.host, self.port, PATH, PROBE_SOURCES[i % 4])
        try:
            channel = json.loads(await ws.recv())["uuid"]
            number, password = self.masters[i % len(self.masters)]
            token = base64.b64encode(f"{number}:{password}".encode())
            status, data = await http.request(
                b"PUT /v1/messages/" + channel.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Basic " + token + b"\r\nContent-Type: application/json",
                self.body,
            )
            if status != 200:
                raise RuntimeError(f"PUT answered {status}: {data[:120]!r}")
            await ws.recv()
            with contextlib.suppress(WsClosed):
                await ws.recv()
            await ws.wait_closed()
        except BaseException:
            ws.abort()
            raise

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        errors: list[str] = []
        workers = 2
        period = workers / rate
        deadline = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def worker() -> None:
            http = await HttpClient.connect(self.host, self.port)
            try:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        async with asyncio.timeout(10):
                            await self.once(http, next(counter))
                        latencies.append(time.perf_counter() - started)
                    except Exception as exc:  # counted and shown
                        errors.append(f"{type(exc).__name__}: {exc}")
                        http.close()
                        http = await HttpClient.connect(self.host, self.port)
                    await asyncio.sleep(max(0.0, period - (time.perf_counter() - started)))
            finally:
                http.close()

        await asyncio.gather(*(worker() for _ in range(workers)))
        lat = sorted(x * 1000 for x in latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

        return {"completed": len(lat), "errors": len(errors), "first_errors": errors[:3],
                "p50_ms": pct(0.5), "p99_ms": pct(0.99)}  # fmt: skip


async def register_master(host: str, port: int, number: str, password: str) -> None:
    http = await HttpClient.connect(host, port)
    try:
        status, data = await http.request(
            f"GET /v1/accounts/sms/code/{number} HTTP/1.1\r\nHost: x".encode()
        )
        assert status == 200, data
        token = base64.b64encode(f"{number}:{password}".encode())
        status, data = await http.request(
            f"PUT /v1/accounts/code/{bench_link.CODE} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Authorization: Basic " + token + b"\r\nContent-Type: application/json",
            json.dumps({"registrationId": 1, "fetchesMessages": True}).encode(),
        )  # fmt: skip
        assert status == 200, data
    finally:
        http.close()


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """bench_link's server, but with the server's own default limits and defences."""
    port_file = workdir / "server.url"
    cmd = bench_link.provision(
        "server", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
        "--db", f"sqlite:///{workdir / 'server.db'}", "--test-registration-code",
        bench_link.CODE, "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = port_file.read_text() if port_file.exists() else ""
        if text.endswith("\n"):
            return proc, text.strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)  # polling another process's file
    proc.kill()
    raise SystemExit("the server did not start:\n" + (workdir / "server.log").read_text())


async def phase(
    url: str, workdir: Path, probe: Probe, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    links: list[float] = []
    failures: list[str] = []
    for i in range(args.links):
        try:
            links.append(
                await loop.run_in_executor(
                    None, bench_link.one_link, url, workdir, f"{tag}{i}", False
                )
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, SystemExit) as exc:
            detail = getattr(exc, "stderr", None) or ""
            failures.append(f"{exc}: {detail!s}"[:300])  # counted and shown, never hidden
    probed = await probe.run(args.probe_rate, args.probe_seconds)
    return {
        "link_median_s": round(statistics.median(links), 3) if links else None,
        "links_s": [round(x, 3) for x in links],
        "link_failures": failures,
        "probe": probed,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import urlsplit

    raise_nofile()  # the server inherits it: 10,000 sockets need more than 1,024 descriptors
    workdir = Path(tempfile.mkdtemp(prefix="bench-attack-", dir="/dev/shm"))
    result: dict[str, Any] = {"pressure_before": cpu_pressure(), "idle": args.idle,
                              "flooders": args.flooders}  # fmt: skip
    server, url = start_server(workdir)
    attack = None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        masters = [
            (f"+1555777{i:04d}", base64.b64encode(os.urandom(18)).decode()) for i in range(4)
        ]
        for number, password in masters:
            await register_master(host, port, number, password)
        probe = Probe(host, port, masters)
        await asyncio.get_running_loop().run_in_executor(
            None,
            bench_link.one_link,
            url,
            workdir,
            "warm",
            False,  # type: ignore[arg-type]
        )
        result["quiet"] = await phase(url, workdir, probe, args, "q")
        attack = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attacker", host, str(port), str(args.idle),
            str(args.flooders), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        reports: list[dict[str, Any]] = []

        async def read_reports() -> None:
            assert attack is not None and attack.stdout is not None
            while line := await attack.stdout.readline():
                reports.append(json.loads(line))

        reader = asyncio.create_task(read_reports())
        settle_deadline = time.monotonic() + ATTACK_SETTLE_S
        while time.monotonic() < settle_deadline:  # until the attacker holds what it can
            await asyncio.sleep(0.5)  # waiting on another process's reports
            if reports and reports[-1]["idle_open"] >= args.idle and reports[-1]["pings"] > 0:
                break
        result["attack_at_start"] = reports[-1] if reports else None
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        p0 = reports[-1] if reports else {"pings": 0, "pongs": 0}
        result["attack"] = await phase(url, workdir, probe, args, "a")
        elapsed = time.monotonic() - t0
        p1 = reports[-1] if reports else {"pings": 0, "pongs": 0}
        result["server_cpu_load_under_attack"] = round(
            (cpu_seconds(server.pid) - cpu0) / elapsed, 2
        )
        result["attack_at_end"] = p1
        result["pings_per_s"] = round((p1["pings"] - p0["pings"]) / elapsed)
        result["pongs_per_s"] = round((p1["pongs"] - p0["pongs"]) / elapsed)
        reader.cancel()
    finally:
        if attack is not None and attack.returncode is None:
            attack.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(attack.wait(), 10)
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    result["pressure_after"] = cpu_pressure()
    quiet, loud = result["quiet"]["link_median_s"], result["attack"]["link_median_s"]
    result["link_ratio"] = round(loud / quiet, 2) if quiet and loud else None
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    ratio = result["link_ratio"]
    errors = result["quiet"]["probe"]["errors"] + result["attack"]["probe"]["errors"]
    failed = len(result["quiet"]["link_failures"]) + len(result["attack"]["link_failures"])
    ok = ratio is not None and ratio <= TARGET_RATIO and errors == 0 and failed == 0
    end = result.get("attack_at_end") or {}
    return ok, (
        f"B9 link under attack: median {result['attack']['link_median_s']} s vs quiet "
        f"{result['quiet']['link_median_s']} s = {ratio}x (target ≤ {TARGET_RATIO:g}x), "
        f"{failed} links failed; "
        f"probe p99 {result['attack']['probe']['p99_ms']} ms vs "
        f"{result['quiet']['probe']['p99_ms']} ms; attacker held "
        f"{end.get('idle_open', '?')}/{result['idle']} idle sockets, "
        f"{result.get('pings_per_s', '?')} pings/s, {result.get('pongs_per_s', '?')} pongs/s"
        f"  {'MET' if ok else 'MISSED'}"
    )


def main() -> dict[str, Any] | None:
    if len(sys.argv) > 1 and sys.argv[1] == "--attacker":
        host, port, idle, flooders = (
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            int(sys.argv[5]),
        )
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("loopback only")
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(attacker(host, port, idle, flooders))
        return None
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=5)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--flooders", type=int, default=20)
    parser.add_argument("--probe-rate", type=float, default=20.0)
    parser.add_argument("--probe-seconds", type=float, default=6.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(measure(args))
    for name in ("quiet", "attack"):
        r = result[name]
        print(
            f"B9 {name}: links {r['links_s']} (median {r['link_median_s']} s, failed "
            f"{len(r['link_failures'])} {r['link_failures'][:1]}); probe "
            f"{r['probe']['completed']} rendezvous, p50 {r['probe']['p50_ms']} ms, p99 "
            f"{r['probe']['p99_ms']} ms, errors {r['probe']['errors']} {r['probe']['first_errors']}"
        )
    print(f"B9 attacker at start {result['attack_at_start']}; at end {result['attack_at_end']}; "
          f"server CPU load under attack {result['server_cpu_load_under_attack']}")  # fmt: skip
    print(
        f"     (CPU pressure before: {result['pressure_before']}; "
        f"after: {result['pressure_after']})"
    )
    result["ok"], result["summary"] = verdict(result)
    print(result["summary"])
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    out = main()
    sys.exit(0 if out is None or out["ok"] else 1)
