"""Rendezvous rate with several nodes: one node vs two nodes sharing PostgreSQL + Redis.

One rendezvous is B3's (bench_rendezvous.py, PROTOCOL.md §4.1): websocket open
→ {"uuid"} → authenticated PUT /v1/messages/{uuid} → {"message"} → close 1000.
Setups, each a set of real ``provision server`` processes on 127.0.0.1
(rate limits and access log off):

* ``sqlite``     one node, SQLite + in-process fan-out (the default server);
* ``pg1``        one node, ``--db postgresql://… --redis redis://…``;
* ``pg2-cross``  two such nodes; every rendezvous opens its channel on one node
                 and PUTs through the other (alternating), so every frame
                 crosses Redis pub/sub: the worst case behind a load balancer;
* ``pg2-local``  two nodes, channel and PUT on the same node (alternating
                 nodes): what sticky routing of the PUT would give.

Needs PostgreSQL and Redis (defaults: postgresql://postgres@127.0.0.1:5432/test
and redis://127.0.0.1:6379/0; a fresh schema and key prefix, removed at the end).
Everything (nodes, PostgreSQL, Redis, this generator) shares this machine's
cores, so the figures say what the software costs, not what N machines give:
the CPU columns (node CPU per rendezvous, Redis CPU per rendezvous) are the
inputs of the scaling estimate in docs/operations.md.

Run: python benchmarks/bench_multinode.py [--setups sqlite,pg1,pg2-cross,pg2-local]
     [--concurrency 10,50] [--seconds 6] [--count 30000] [--urls URL_A,URL_B] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from loadgen import (
    HttpClient,
    WsClient,
    cpu_seconds,
    rendezvous_once,
    start_process,
    stop_process,
)

CODE = "135790"
NUMBER = "+15550009998"
PASSWORD = base64.b64encode(os.urandom(18)).decode()
BODY_B64 = base64.b64encode(os.urandom(225)).decode()  # 300 characters, ~ a real DeviceInit
PATH = "/v1/temp_websocket"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SETUPS = ("sqlite", "pg1", "pg2-cross", "pg2-local")


class Node:
    def __init__(self, proc: Any, url: str) -> None:
        from urllib.parse import urlsplit

        self.proc = proc  # None: a node this script did not start
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("loopback only")
        token = base64.b64encode(f"{NUMBER}:{PASSWORD}".encode())
        self.put_suffix = (
            f" HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Basic ".encode()
            + token
            + b"\r\nContent-Type: application/json"
        )


def start_node(workdir: Path, name: str, backend: list[str]) -> Node:
    port_file = workdir / f"{name}.url"  # a fresh name: an old file would give a dead URL
    args = [sys.executable, "-m", "textsecure_provision", "server", "--host", "127.0.0.1",
            "--port", "0", "--port-file", str(port_file), *backend,
            "--test-registration-code", CODE, "--no-rate-limits", "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}

    def ready() -> str | None:
        text = port_file.read_text() if port_file.exists() else ""
        return text.strip() if text.endswith("\n") else None

    proc, url = start_process(args, ready, workdir / f"{name}.log", env=env)
    return Node(proc, url)


async def register(node: Node) -> None:
    await loadgen.register(node.host, node.port, NUMBER, PASSWORD, CODE)


BODY = json.dumps(
    {
        "messages": [
            {"type": 0, "destinationDeviceId": 1, "destinationRegistrationId": 0,
             "body": BODY_B64}
        ]
    }
).encode()  # fmt: skip
EXPECTED = {"message": BODY_B64}


async def rendezvous(holder: Node, via: Node, http: HttpClient) -> None:
    """The channel on ``holder``, the PUT through ``via`` (the same node, or another)."""
    ws = await WsClient.connect(holder.host, holder.port, PATH)
    await rendezvous_once(
        ws, http, lambda channel: b"PUT /v1/messages/" + channel + via.put_suffix, BODY, EXPECTED
    )


def _node_cpu(nodes: list[Node]) -> float:
    """CPU seconds of the nodes this script started (NaN for --urls: not our processes)."""
    if any(n.proc is None for n in nodes):
        return float("nan")
    return sum(cpu_seconds(n.proc.pid) for n in nodes)


async def redis_cpu_s() -> float:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        info = await redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    finally:
        await redis.aclose()


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, to show how saturated it was."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


async def run_level(nodes: list[Node], cross: bool, concurrency: int, count: int,
                    seconds: float) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    remaining = count
    turn = itertools.count()

    async def worker() -> None:
        nonlocal remaining
        https = [await HttpClient.connect(n.host, n.port) for n in nodes]
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                i = next(turn) % len(nodes)
                holder = nodes[i]
                j = (i + 1) % len(nodes) if cross else i
                started = time.perf_counter()
                try:
                    await rendezvous(holder, nodes[j], https[j])
                except Exception as exc:  # counted and shown, never hidden
                    errors.append(f"{type(exc).__name__}: {exc}")
                    https[j].close()
                    https[j] = await HttpClient.connect(nodes[j].host, nodes[j].port)
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            for http in https:
                http.close()

    node_cpu0 = _node_cpu(nodes)
    redis0 = await redis_cpu_s()
    busy0, total0 = system_busy()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    node_cpu = _node_cpu(nodes) - node_cpu0
    redis_cpu = await redis_cpu_s() - redis0
    busy1, total1 = system_busy()
    done = max(1, len(latencies))
    lat = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "rate_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "node_cpu_us": round(node_cpu / done * 1e6, 1),
        "redis_cpu_us": round(redis_cpu / done * 1e6, 1),
        "machine_busy": round((busy1 - busy0) / max(1.0, total1 - total0), 2),
    }


async def drop(schema: str, prefix: str) -> None:
    import asyncpg

    con = await asyncpg.connect(POSTGRES_URL)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()
    await drop_redis(prefix)


async def drop_redis(prefix: str) -> None:
    """Remove every key under ``prefix`` (a run's own)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def measure_setup(setup: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    schema, prefix = f"bench_{tag}", f"bench-{tag}:"
    if setup == "sqlite":
        backends = [["--db", f"sqlite:///{workdir / (tag + '.sqlite3')}"]]
    else:
        shared = ["--db", f"{POSTGRES_URL}?schema={schema}", "--redis", REDIS_URL,
                  "--redis-prefix", prefix]  # fmt: skip
        backends = [shared] * (1 if setup == "pg1" else 2)
    nodes: list[Node] = []
    try:
        for i, backend in enumerate(backends):
            nodes.append(start_node(workdir, f"{setup}-{tag}-{i}", backend))
        await register(nodes[0])  # one account; every node sees it (shared storage)
        cross = setup == "pg2-cross"
        await run_level(nodes, cross, 10, 300, 10)  # warm-up, not reported
        levels = [
            await run_level(nodes, cross, c, args.count, args.seconds) for c in args.concurrency
        ]
        return {"setup": setup, "nodes": len(nodes), "levels": levels}
    finally:
        for node in nodes:
            stop_process(node.proc)
        if setup != "sqlite":
            await drop(schema, prefix)


async def measure_running(args: argparse.Namespace) -> dict[str, Any]:
    """Nodes already running (--urls A,B): channel on one, PUT through the next, in turn.
    They must accept the fixed registration code 135790 and have rate limits off."""
    nodes = [Node(None, url) for url in args.urls]
    await register(nodes[0])
    await run_level(nodes, len(nodes) > 1, 10, 300, 10)  # warm-up, not reported
    levels = [
        await run_level(nodes, len(nodes) > 1, c, args.count, args.seconds)
        for c in args.concurrency
    ]
    return {"setup": "urls", "nodes": len(nodes), "levels": levels}


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.urls:
        return [await measure_running(args)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-multinode-"))
    try:
        return [await measure_setup(setup, args, workdir) for setup in args.setups]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default=",".join(SETUPS), type=lambda s: s.split(","))
    parser.add_argument(
        "--concurrency", default="10,50", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--count", type=int, default=30000, help="rendezvous per level (bound)")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per level")
    parser.add_argument(
        "--urls",
        type=lambda s: s.split(","),
        help="measure running nodes instead (loopback only; channel on one, PUT on the next)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    unknown = set(args.setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups {sorted(unknown)}; known: {', '.join(SETUPS)}")
    try:
        import uvloop

        results = uvloop.run(measure(args))
    except ImportError:
        results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'setup':<10} {'nodes':>5} {'c':>4} {'rdv/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'node µs':>8} {'redis µs':>8} {'busy':>5} errors")  # fmt: skip
        for r in results:
            for lv in r["levels"]:
                print(
                    f"{r['setup']:<10} {r['nodes']:>5} {lv['concurrency']:>4} "
                    f"{lv['rate_per_s']:>8.1f} {lv['p50_ms']:>7.2f} {lv['p99_ms']:>7.2f} "
                    f"{lv['node_cpu_us']:>8.1f} {lv['redis_cpu_us']:>8.1f} "
                    f"{lv['machine_busy']:>5.2f} {lv['errors']}"
                )
    return results


if __name__ == "__main__":
    main()
