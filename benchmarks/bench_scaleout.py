"""B8: does the PostgreSQL + Redis mode pay? Rates against one SQLite node, same run.

Three ``provision server`` processes on 127.0.0.1 (rate limits, access log off):
S, one node on SQLite (tmpfs) with the in-process fan-out; A and B, two nodes
sharing a PostgreSQL database of their own (created here, dropped at the end)
and Redis (a key prefix of their own). The rendezvous is B3's (PROTOCOL.md
§4.1), from the same generator (``bench_multinode.rendezvous``):

* ``sqlite``  channel and PUT on S;
* ``pg1``     channel and PUT on A: one PostgreSQL + Redis node;
* ``cross``   channel on A and PUT through B, or the other way round, in turn:
              every delivery crosses Redis (the worst case behind a balancer).

Rounds are interleaved (sqlite, pg1, cross, cross, pg1, sqlite, …) so that the
three meet the same background load. Targets: pg1 ≥ 0.5× sqlite's rate, cross
≥ 0.4×. Before the timed rounds, ``--count-rdv`` untimed rendezvous of each
kind are counted on the wire: Redis commands from Redis ``MONITOR`` (those
naming this run's key prefix), PostgreSQL transactions from
``pg_stat_database`` for the run's own database (a single statement outside a
transaction counts as one).

Needs PostgreSQL and Redis: ``BENCH_POSTGRES_URL`` (a server where the user
may create databases; default postgresql://postgres@127.0.0.1:5432/postgres)
and ``BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0).

Run: python benchmarks/bench_scaleout.py [--concurrency 50] [--seconds 6] [--rounds 2]
     [--count-rdv 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_multinode as mn
from loadgen import (
    HttpClient,
    Sample,
    cpu_pressure,
    cpu_seconds,
    level_arguments,
    run_measured,
    stop_process,
)

TARGET_PG1 = 0.5
TARGET_CROSS = 0.4
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KINDS = ("sqlite", "pg1", "cross")


def _db_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))


class Setup:
    def __init__(self, nodes: list[mn.Node], cross: bool) -> None:
        self.nodes, self.cross = nodes, cross
        self.turn = itertools.count()

    async def make_state(self) -> list[HttpClient]:
        return [await HttpClient.connect(n.host, n.port) for n in self.nodes]

    @staticmethod
    async def close_state(https: list[HttpClient]) -> None:
        for http in https:
            http.close()

    async def once(self, https: list[HttpClient]) -> None:
        i = next(self.turn) % len(self.nodes)
        j = (i + 1) % len(self.nodes) if self.cross else i
        await mn.rendezvous(self.nodes[i], self.nodes[j], https[j])

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes]


async def run_round(setup: Setup, sample: Sample, count: int, seconds: float) -> None:
    """loadgen.run_round, with the CPU of every node of the setup."""
    deadline = time.perf_counter() + seconds
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        state = await setup.make_state()
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(10):
                        await setup.once(state)
                except Exception as exc:  # counted and shown, never hidden
                    sample.errors.append(f"{type(exc).__name__}: {exc}")
                    await setup.close_state(state)
                    state = await setup.make_state()
                    continue
                sample.latencies.append(time.perf_counter() - started)
        finally:
            await setup.close_state(state)

    cpu0 = sum(cpu_seconds(p) for p in setup.pids())
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sample.concurrency)))
    sample.elapsed += time.perf_counter() - started
    sample.server_cpu += sum(cpu_seconds(p) for p in setup.pids()) - cpu0
    sample.rounds += 1


class RedisMonitor:
    """Counts the commands Redis executes that name ``prefix`` (MONITOR, raw RESP)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        parts = urlsplit(REDIS_URL)
        reader, self._writer = await asyncio.open_connection(
            parts.hostname or "127.0.0.1", parts.port or 6379
        )
        self._writer.write(b"MONITOR\r\n")
        assert (await reader.readline()).startswith(b"+OK")
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            if self.prefix in line and b'"' in line:
                self.counts[line.split(b'"', 2)[1].decode().upper()] += 1

    async def stop(self) -> Counter[str]:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task
        return self.counts


async def pg_transactions(dbname: str) -> int:
    """Committed + rolled back transactions of one database, once the counters settle
    (backends report their statistics at most once a second)."""
    import asyncpg

    con = await asyncpg.connect(ADMIN_URL)
    try:
        previous = -1
        for _ in range(40):
            await con.execute("SELECT pg_stat_clear_snapshot()")
            value = await con.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                dbname,
            )
            if value == previous:
                return int(value)
            previous = int(value)
            await asyncio.sleep(0.6)  # the stats collector's own period: nothing to wait on
        return previous
    finally:
        await con.close()


async def count_round_trips(setup: Setup, n: int, prefix: str, dbname: str) -> dict[str, Any]:
    monitor = RedisMonitor(prefix)
    await monitor.start()
    tx0 = await pg_transactions(dbname)
    sample = Sample(1)
    await run_round(setup, sample, n, 60)
    tx1 = await pg_transactions(dbname)
    counts = await monitor.stop()
    done = max(1, len(sample.latencies))
    # Our own pg_stat reads run in another database; the nodes' housekeeping may add one.
    return {
        "rendezvous": len(sample.latencies),
        "redis_per_rdv": round(sum(counts.values()) / done, 2),
        "redis_commands": {k: round(v / done, 2) for k, v in sorted(counts.items())},
        "postgres_tx_per_rdv": round((tx1 - tx0) / done, 2),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    tag = uuid.uuid4().hex[:8]
    dbname, prefix = f"bench_scaleout_{tag}", f"bench-{tag}:"
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-", dir="/dev/shm"))
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    nodes: list[mn.Node] = []
    result: dict[str, Any] = {"pressure_before": cpu_pressure(), "levels": []}
    try:
        sqlite = mn.start_node(workdir, "s", ["--db", f"sqlite:///{workdir / 's.sqlite3'}"])
        nodes.append(sqlite)
        shared = ["--db", _db_url(dbname), "--redis", REDIS_URL, "--redis-prefix", prefix]
        a = mn.start_node(workdir, "a", shared)
        nodes.append(a)
        b = mn.start_node(workdir, "b", shared)
        nodes.append(b)
        await mn.register(sqlite)
        await mn.register(a)  # one account for A and B (shared storage)
        setups = {
            "sqlite": Setup([sqlite], False),
            "pg1": Setup([a], False),
            "cross": Setup([a, b], True),
        }
        for setup in setups.values():  # warm-up, not reported
            await run_round(setup, Sample(10), 300, 10)
        result["round_trips"] = {
            kind: await count_round_trips(setups[kind], args.count_rdv, prefix, dbname)
            for kind in ("pg1", "cross")
        }
        for c in args.concurrency:
            samples = {kind: Sample(c) for kind in KINDS}
            per_round = args.seconds / args.rounds
            for r in range(args.rounds):
                for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                    await run_round(setups[kind], samples[kind], args.count, per_round)
            level: dict[str, Any] = {"concurrency": c}
            for kind in KINDS:
                level[kind] = samples[kind].summary()
            base = level["sqlite"]["rate_per_s"] or float("nan")
            level["pg1_ratio"] = round(level["pg1"]["rate_per_s"] / base, 2)
            level["cross_ratio"] = round(level["cross"]["rate_per_s"] / base, 2)
            result["levels"].append(level)
    finally:
        for node in nodes:
            stop_process(node.proc)
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
        await mn.drop_redis(prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    result["pressure_after"] = cpu_pressure()
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    top = max(result["levels"], key=lambda lv: lv["concurrency"])
    errors = sum(top[k]["errors"] for k in KINDS)
    ok = top["pg1_ratio"] >= TARGET_PG1 and top["cross_ratio"] >= TARGET_CROSS and errors == 0
    rt = result["round_trips"]
    return ok, (
        f"B8 at c={top['concurrency']}: sqlite {top['sqlite']['rate_per_s']:.0f}/s, pg1 "
        f"{top['pg1']['rate_per_s']:.0f}/s = {top['pg1_ratio']}x (target ≥ {TARGET_PG1}x), "
        f"cross {top['cross']['rate_per_s']:.0f}/s = {top['cross_ratio']}x (target ≥ "
        f"{TARGET_CROSS}x); per rendezvous pg1 {rt['pg1']['redis_per_rdv']:g} Redis + "
        f"{rt['pg1']['postgres_tx_per_rdv']:g} PostgreSQL, cross {rt['cross']['redis_per_rdv']:g}"
        f" + {rt['cross']['postgres_tx_per_rdv']:g}  {'MET' if ok else 'MISSED'}"
    )


def report(result: dict[str, Any]) -> None:
    for kind, rt in result["round_trips"].items():
        print(
            f"B8 {kind}: per rendezvous {rt['redis_per_rdv']} Redis commands "
            f"{rt['redis_commands']}, {rt['postgres_tx_per_rdv']} PostgreSQL transactions "
            f"(counted over {rt['rendezvous']})"
        )
    print(f"{'c':>3}  {'setup':<7} {'rdv/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'node cpu µs':>11}")
    for lv in result["levels"]:
        for kind in KINDS:
            r = lv[kind]
            print(
                f"{lv['concurrency']:>3}  {kind:<7} {r['rate_per_s']:>7.0f} {r['p50_ms']:>7.2f} "
                f"{r['p99_ms']:>7.2f} {r['server_cpu_us']:>11.0f}"
                + (f"  errors {r['errors']}: {r['first_errors']}" if r["errors"] else "")
            )
    print(
        f"     (node cpu: all the setup's nodes; CPU pressure before: "
        f"{result['pressure_before']}; after: {result['pressure_after']})"
    )
    print(verdict(result)[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    level_arguments(parser, concurrency="50", rounds=2, per="setup")
    parser.add_argument("--count-rdv", type=int, default=200, help="rendezvous counted on the wire")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    return run_measured(measure(args), report, verdict, args.json)


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
