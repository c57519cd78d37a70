"""B3: channel rendezvous throughput and latency, side by side with magic-wormhole-mailbox-server.

Ours, one rendezvous (PROTOCOL.md §4.1), timed from before the connect until
the server has closed the TCP connection:

    websocket open → {"uuid"} frame → authenticated PUT /v1/messages/{uuid}
    → {"message"} frame → close 1000 (answered) → TCP closed

The peer (magic-wormhole-mailbox-server 0.8.0, installed into
benchmarks/.peer-venv on first use, SQLite in memory): its equivalent
rendezvous, two websockets that bind, allocate/claim a nameplate, open the
mailbox, add ~300 bytes, receive them, release and close (peer.py says how).
Both carry a 300-character body.

Both servers are separate processes started here, on 127.0.0.1 only; this
process is the load generator (loadgen.py: raw asyncio websocket and
keep-alive HTTP/1.1 clients, the same for both). Each level runs --rounds
interleaved rounds (ours, peer, peer, ours, ...), each side bounded by --count
and --seconds in all, so that both meet the same background load. By default the servers are pinned
to CPU 0 and the generator to CPU 1 (--no-pin to let the scheduler choose).
The target: ≥ 10× the peer's rate at concurrency 50 with our p99 ≤ 50 ms.

Run: python benchmarks/bench_rendezvous.py [--concurrency 1,10,50] [--seconds 6]
     [--rounds 3] [--count 30000] [--no-peer] [--no-pin] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer
from loadgen import (
    HttpClient,
    Sample,
    WsClient,
    cpu_pressure,
    level_arguments,
    pin,
    register,
    rendezvous_once,
    run_round,
    start_process,
    stop_process,
)

TARGET_RATIO = 10.0
TARGET_P99_MS = 50.0
CODE = "135790"
NUMBER = "+15550009999"
PASSWORD = base64.b64encode(os.urandom(18)).decode()
BODY_B64 = base64.b64encode(os.urandom(225)).decode()  # 300 characters, ~ a real DeviceInit
PATH = "/v1/temp_websocket"


def data_dir() -> Path:
    """A tmpfs folder when there is one, so that our SQLite file costs no disk I/O either."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="bench-rdv-", dir=shm if shm.is_dir() else None))


def start_ours(workdir: Path, extra: tuple[str, ...] = ()) -> tuple[Any, str]:
    port_file = workdir / "url"
    args = [
        sys.executable,
        "-m",
        "textsecure_provision",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--db",
        f"sqlite:///{workdir / 'bench.sqlite3'}",
        "--test-registration-code",
        CODE,
        "--no-rate-limits",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}

    def ready() -> str | None:
        text = port_file.read_text() if port_file.exists() else ""
        return text.strip() if text.endswith("\n") else None

    return start_process(args, ready, workdir / "server.log", env=env)


class Ours:
    """Our rendezvous against one server; each worker holds one keep-alive HTTP connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        token = base64.b64encode(f"{NUMBER}:{PASSWORD}".encode())
        self.head_prefix = b"PUT /v1/messages/"
        self.head_suffix = (
            b" HTTP/1.1\r\nHost: "
            + f"{host}:{port}".encode()
            + b"\r\nAuthorization: Basic "
            + token
            + b"\r\nContent-Type: application/json"
        )
        self.body = json.dumps(
            {
                "messages": [
                    {
                        "type": 0,
                        "destinationDeviceId": 1,
                        "destinationRegistrationId": 0,
                        "body": BODY_B64,
                    }
                ]
            }
        ).encode()
        self.expected = {"message": BODY_B64}

    async def register(self) -> None:
        await register(self.host, self.port, NUMBER, PASSWORD, CODE)

    async def make_state(self) -> HttpClient:
        return await HttpClient.connect(self.host, self.port)

    @staticmethod
    async def close_state(http: HttpClient) -> None:
        http.close()

    async def once(self, http: HttpClient) -> None:
        ws = await WsClient.connect(self.host, self.port, PATH)
        await rendezvous_once(ws, http, self._put_head, self.body, self.expected)

    def _put_head(self, channel: bytes) -> bytes:
        return self.head_prefix + channel + self.head_suffix


async def _nothing() -> None:
    return None


async def _close_nothing(_: object) -> None:
    return None


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    return host, parts.port or 80


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = data_dir()
    procs = []
    result: dict[str, Any] = {"levels": [], "pinned": False, "pressure_before": cpu_pressure()}
    try:
        ours_proc, url = start_ours(workdir)
        procs.append(ours_proc)
        ours = Ours(*_host_port(url))
        async with asyncio.timeout(30):
            await ours.register()
        peer_proc = None
        if not args.no_peer:
            result["peer_version"] = peer.ensure_installed()
            peer_proc, peer_url = peer.start(workdir)
            procs.append(peer_proc)
            peer_host, peer_port = _host_port(peer_url)
        if not args.no_pin:
            result["pinned"] = all(pin(p.pid, 0) for p in procs) and pin(0, 1)

        async def ours_round(sample: Sample, count: int, seconds: float) -> None:
            await run_round(
                sample,
                ours.once,
                ours.make_state,
                ours.close_state,
                count,
                seconds,
                ours_proc.pid,
            )

        async def peer_round(sample: Sample, count: int, seconds: float) -> None:
            assert peer_proc is not None
            await run_round(
                sample,
                lambda _: peer.rendezvous(peer_host, peer_port),
                _nothing,
                _close_nothing,
                count,
                seconds,
                peer_proc.pid,
            )

        await ours_round(Sample(10), 300, 10)  # warm-up, not reported
        if peer_proc is not None:
            await peer_round(Sample(10), 100, 10)
        for c in args.concurrency:
            # Interleaved rounds (ours, peer, peer, ours, ...): both sides meet the same
            # background load on a shared machine, so the ratio holds even when it varies.
            mine, theirs = Sample(c), Sample(c)
            per_round = args.seconds / args.rounds
            for r in range(args.rounds):
                sides = [(ours_round, mine), (peer_round, theirs)]
                if peer_proc is None:
                    sides = sides[:1]
                for run, sample in sides if r % 2 == 0 else sides[::-1]:
                    await run(sample, args.count // args.rounds, per_round)
            level: dict[str, Any] = {"concurrency": c, "ours": mine.summary()}
            if peer_proc is not None:
                level["peer"] = theirs.summary()
                peer_rate = level["peer"]["rate_per_s"]
                level["ratio"] = (
                    round(level["ours"]["rate_per_s"] / peer_rate, 2) if peer_rate else None
                )
            result["levels"].append(level)
    finally:
        for proc in procs:
            stop_process(proc)
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["pressure_after"] = cpu_pressure()
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    top = max(result["levels"], key=lambda lv: lv["concurrency"])
    ours = top["ours"]
    ratio = top.get("ratio")
    ok = (
        ratio is not None
        and ratio >= TARGET_RATIO
        and ours["p99_ms"] <= TARGET_P99_MS
        and ours["errors"] == 0
    )
    ratio_text = f"{ratio:.1f}x the peer" if ratio is not None else "no peer run"
    return ok, (
        f"B3 rendezvous at c={top['concurrency']}: {ours['rate_per_s']:.0f}/s = {ratio_text} "
        f"(target ≥ {TARGET_RATIO:g}x), p99 {ours['p99_ms']:.1f} ms (target ≤ "
        f"{TARGET_P99_MS:g} ms)  {'MET' if ok else 'MISSED'}"
    )


def report(result: dict[str, Any]) -> None:
    print(
        f"B3 servers {'pinned to CPU 0, generator to CPU 1' if result['pinned'] else 'unpinned'};"
        f" peer: {result.get('peer_version', 'not run')}"
    )
    print(
        f"{'c':>3}  {'ours/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>7}  "
        f"{'peer/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>7}  {'ratio':>6}"
    )
    for level in result["levels"]:
        o, p = level["ours"], level.get("peer")
        line = (
            f"{level['concurrency']:>3}  {o['rate_per_s']:>8.0f} {o['p50_ms']:>7.2f} "
            f"{o['p99_ms']:>7.2f} {o['server_cpu_us']:>7.0f}  "
        )
        if p:
            line += (
                f"{p['rate_per_s']:>7.0f} {p['p50_ms']:>7.2f} {p['p99_ms']:>7.2f} "
                f"{p['server_cpu_us']:>7.0f}  {level['ratio']:>5.1f}x"
            )
        print(line)
        for side in ("ours", "peer"):
            r = level.get(side)
            if r and r["errors"]:
                print(f"     {side}: {r['errors']} errors, e.g. {r['first_errors']}")
    print(
        "     (cpu µs: the server's CPU time per rendezvous; CPU pressure "
        f"before: {result['pressure_before']}; after: {result['pressure_after']})"
    )
    top = result["levels"][-1]
    if "peer" in top and top["ours"]["server_cpu_us"]:
        print(
            f"     server CPU per rendezvous at c={top['concurrency']}: peer "
            f"{top['peer']['server_cpu_us'] / top['ours']['server_cpu_us']:.1f}x ours (on an idle "
            "machine the rate ratio tends to this; waits for a CPU: ours "
            f"{top['ours']['server_cpu_wait']:.0%} server / {top['ours']['generator_cpu_wait']:.0%}"
            f" generator, peer {top['peer']['server_cpu_wait']:.0%} / "
            f"{top['peer']['generator_cpu_wait']:.0%})"
        )
    print(verdict(result)[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    level_arguments(parser, "1,10,50", 3, "side")
    parser.add_argument("--no-peer", action="store_true", help="measure only ours")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(measure(args))
    except ImportError:
        result = asyncio.run(measure(args))
    report(result)
    result["ok"], result["summary"] = verdict(result)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
