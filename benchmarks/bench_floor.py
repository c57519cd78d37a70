"""B7: our server's CPU per rendezvous against the floor's (floor.py: raw asyncio on uvloop).

The same rendezvous (PROTOCOL.md §4.1, B3's: websocket open → uuid frame →
authenticated PUT /v1/messages/{uuid} with a 300-character body → message
frame → close 1000 answered → TCP closed), from the same generator
(``bench_rendezvous.Ours`` over ``loadgen.py``), against two processes on
127.0.0.1: our ``provision server`` (SQLite on tmpfs, rate limits and access
log off) and ``floor.py``, which does the same bytes with no framework and no
storage. Rounds are interleaved (ours, floor, floor, ours, …) so that both meet
the same background load; the servers are pinned to CPU 0 and the generator to
CPU 1 (``--no-pin`` to let the scheduler choose).

The figure is server CPU time (user + system, /proc) per completed rendezvous;
the target: ours ≤ 2× the floor's at concurrency 50.

Run: python benchmarks/bench_floor.py [--concurrency 10,50] [--seconds 6] [--rounds 4]
     [--count 30000] [--no-pin] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_rendezvous as rdv
from loadgen import (
    Sample,
    cpu_pressure,
    level_arguments,
    pin,
    run_round,
    start_process,
    stop_process,
)

HERE = Path(__file__).resolve().parent

TARGET_RATIO = 2.0


def start_floor(workdir: Path) -> tuple[Any, str]:
    port_file = workdir / "floor.url"
    args = [
        sys.executable,
        str(HERE / "floor.py"),
        "--port-file",
        str(port_file),
        "--number",
        rdv.NUMBER,
        "--password",
        rdv.PASSWORD,
    ]

    def ready() -> str | None:
        text = port_file.read_text() if port_file.exists() else ""
        return text.strip() if text.endswith("\n") else None

    return start_process(args, ready, workdir / "floor.log")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = rdv.data_dir()
    procs = []
    result: dict[str, Any] = {"levels": [], "pinned": False, "pressure_before": cpu_pressure()}
    try:
        ours_proc, url = rdv.start_ours(workdir)
        procs.append(ours_proc)
        floor_proc, floor_url = start_floor(workdir)
        procs.append(floor_proc)
        ours = rdv.Ours(*rdv._host_port(url))
        floor = rdv.Ours(*rdv._host_port(floor_url))
        async with asyncio.timeout(30):
            await ours.register()
        if not args.no_pin:
            result["pinned"] = all(pin(p.pid, 0) for p in procs) and pin(0, 1)

        def side(target: rdv.Ours, pid: int) -> Any:
            async def one_round(sample: Sample, count: int, seconds: float) -> None:
                await run_round(
                    sample, target.once, target.make_state, target.close_state, count, seconds, pid
                )

            return one_round

        ours_round, floor_round = side(ours, ours_proc.pid), side(floor, floor_proc.pid)
        await ours_round(Sample(10), 300, 10)  # warm-up, not reported
        await floor_round(Sample(10), 300, 10)
        for c in args.concurrency:
            mine, theirs = Sample(c), Sample(c)
            per_round = args.seconds / args.rounds
            for r in range(args.rounds):
                sides = [(ours_round, mine), (floor_round, theirs)]
                for run, sample in sides if r % 2 == 0 else sides[::-1]:
                    await run(sample, args.count // args.rounds, per_round)
            o, f = mine.summary(), theirs.summary()
            result["levels"].append(
                {
                    "concurrency": c,
                    "ours": o,
                    "floor": f,
                    "cpu_ratio": (
                        round(o["server_cpu_us"] / f["server_cpu_us"], 2)
                        if f["server_cpu_us"]
                        else None
                    ),
                }
            )
    finally:
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    result["pressure_after"] = cpu_pressure()
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    top = max(result["levels"], key=lambda lv: lv["concurrency"])
    o, f, ratio = top["ours"], top["floor"], top["cpu_ratio"]
    ok = ratio is not None and ratio <= TARGET_RATIO and o["errors"] == 0 and f["errors"] == 0
    return ok, (
        f"B7 server CPU per rendezvous at c={top['concurrency']}: ours {o['server_cpu_us']:.0f} µs"
        f" vs floor {f['server_cpu_us']:.0f} µs = {ratio}x (target ≤ {TARGET_RATIO:g}x); rate "
        f"{o['rate_per_s']:.0f}/s vs {f['rate_per_s']:.0f}/s  {'MET' if ok else 'MISSED'}"
    )


def report(result: dict[str, Any]) -> None:
    print(f"B7 servers {'pinned to CPU 0, generator to CPU 1' if result['pinned'] else 'unpinned'}")
    print(
        f"{'c':>3}  {'ours/s':>8} {'p99 ms':>7} {'cpu µs':>7}  {'floor/s':>8} {'p99 ms':>7} "
        f"{'cpu µs':>7}  {'cpu ratio':>9}"
    )
    for lv in result["levels"]:
        o, f = lv["ours"], lv["floor"]
        print(
            f"{lv['concurrency']:>3}  {o['rate_per_s']:>8.0f} {o['p99_ms']:>7.2f} "
            f"{o['server_cpu_us']:>7.0f}  {f['rate_per_s']:>8.0f} {f['p99_ms']:>7.2f} "
            f"{f['server_cpu_us']:>7.0f}  {lv['cpu_ratio']:>8}x"
        )
        for name, r in (("ours", o), ("floor", f)):
            if r["errors"]:
                print(f"     {name}: {r['errors']} errors, e.g. {r['first_errors']}")
    print(
        f"     (CPU pressure before: {result['pressure_before']}; after: "
        f"{result['pressure_after']})"
    )
    print(verdict(result)[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    level_arguments(parser, "10,50", 4, "side")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    os.environ.pop("BENCH_KEEP_LOGS", None)
    import uvloop

    result = uvloop.run(measure(args))
    report(result)
    result["ok"], result["summary"] = verdict(result)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
