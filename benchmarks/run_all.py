"""Run every benchmark (B1-B6, plus the session layer for information) and print each figure
next to its target with MET or MISSED.

Each benchmark runs alone, in its own process and in turn (never two at once),
with its JSON output parsed here; its own human-readable lines are shown as it
runs. The machine (CPUs, model, Python and library versions) and the kernel's
CPU pressure before and after are printed too: these machines are shared, and a
figure is only meaningful next to them. Exit status 0 when every target is met.

Run: python benchmarks/run_all.py [--only B3,B4] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import cpu_pressure  # noqa: E402

Parsed = tuple[str, str, bool | None]  # figure, target, met (None: no target)


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    parse: Callable[[dict[str, Any]], Parsed]


def _b1(r: dict[str, Any]) -> Parsed:
    return (
        f"{r['ratio']:.2f}x ({r['ours_ms']:.1f} vs {r['click_ms']:.1f} ms, median of {r['runs']})",
        f"≤ {r['target']}x",
        r["ok"],
    )


def _b2(r: dict[str, Any]) -> Parsed:
    return (
        f"median {r['median_s']:.3f} s, p90 {r['p90_s']:.3f} s ({r['runs']} runs)",
        f"median ≤ {r['target_median_s']} s",
        r["median_s"] <= r["target_median_s"],
    )


def _b3(r: dict[str, Any]) -> Parsed:
    import bench_rendezvous

    parts = []
    for level in r["levels"]:
        o = level["ours"]
        text = f"c={level['concurrency']}: {o['rate_per_s']:.0f}/s p50 {o['p50_ms']:.1f} " + (
            f"p99 {o['p99_ms']:.1f} ms"
        )
        if "peer" in level:
            p = level["peer"]
            text += f" vs peer {p['rate_per_s']:.0f}/s p99 {p['p99_ms']:.1f} ms = {level['ratio']}x"
        parts.append(text)
    ok, _ = bench_rendezvous.verdict(r)
    return (
        "; ".join(parts),
        f"≥ {bench_rendezvous.TARGET_RATIO:g}x peer at c=50, p99 ≤ "
        f"{bench_rendezvous.TARGET_P99_MS:g} ms",
        ok,
    )


def _b4(r: dict[str, Any]) -> Parsed:
    o = r["ours"]
    text = f"{o['kib_per_channel']:.2f} KiB per channel ({o['channels']} channels)"
    if "peer" in r:
        text += f"; peer {r['peer']['kib_per_client']:.2f} KiB per idle client"
    return text, "≤ 10 KiB", r["ok"]


def _b5(r: dict[str, Any]) -> Parsed:
    return (
        f"{r['ratio']:.2f}x ({r['ours_us']:.0f} vs {r['floor_us']:.0f} µs)",
        f"≤ {r['target']}x",
        r["ok"],
    )


def _b6(r: dict[str, Any]) -> Parsed:
    return (
        f"median {r['median_ms']:.1f} ms, decoded {r['decoded']}/{r['runs']}",
        f"≤ {r['target_ms']:g} ms, all decoded",
        r["ok"],
    )


def _session(r: dict[str, Any]) -> Parsed:
    return r["text"], "(no target)", None


BENCHES = [
    Bench(
        "B1",
        "provision --help vs import click",
        "bench_startup.py",
        ("--json",),
        ("--json", "--runs", "11"),
        _b1,
    ),
    Bench(
        "B2",
        "full link incl. acknowledgement",
        "bench_link.py",
        ("--json",),
        ("--json", "--runs", "5", "--warmup", "1"),
        _b2,
    ),
    Bench(
        "B3",
        "channel rendezvous vs magic-wormhole mailbox",
        "bench_rendezvous.py",
        ("--json",),
        ("--json", "--seconds", "3"),
        _b3,
    ),
    Bench(
        "B4",
        "memory per idle channel",
        "bench_idle.py",
        ("--json", "--peer", "5000"),
        ("--json", "--channels", "5000"),
        _b4,
    ),
    Bench(
        "B5",
        "DeviceInit seal+open vs primitive floor",
        "bench_envelope.py",
        ("--json",),
        ("--json", "--rounds", "7"),
        _b5,
    ),
    Bench("B6", "QR photo decode", "bench_qr.py", ("--json",), ("--json", "--runs", "20"), _b6),
    Bench("S", "session layer (information)", "bench_session.py", (), ("--n", "200"), _session),
]


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for dist in (
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "websockets",
        "cryptography",
        "zxing-cpp",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "versions": ", ".join(versions),
    }


def run_one(bench: Bench, quick: bool) -> tuple[dict[str, Any] | None, str, float]:
    args = bench.quick_args if quick else bench.args
    cmd = [sys.executable, str(HERE / bench.script), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    for line in lines:
        if not line.startswith("{"):
            print(f"    {line}", flush=True)
    if bench.key == "S":
        return (
            ({"text": "; ".join(x.strip() for x in lines)} if proc.returncode == 0 else None),
            proc.stderr,
            elapsed,
        )
    for line in reversed(lines):
        if line.startswith("{"):
            return json.loads(line), proc.stderr, elapsed
    return None, proc.stderr, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated keys, e.g. B3,B4")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    args = parser.parse_args()
    wanted = {k.strip().upper() for k in args.only.split(",")} if args.only else None
    info = machine()
    print(
        f"machine: {info['cpus']} CPUs, {info['cpu_model']}; {info['python']}; "
        f"Linux {info['kernel']}"
    )
    print(f"versions: {info['versions']}")
    print(f"CPU pressure before: {cpu_pressure()}")
    rows: list[tuple[str, str, str, str, str]] = []
    results: dict[str, Any] = {"machine": info, "quick": args.quick, "results": {}}
    all_ok = True
    for bench in BENCHES:
        if wanted is not None and bench.key not in wanted:
            continue
        print(
            f"\n== {bench.key} {bench.title}: python benchmarks/{bench.script} "
            f"{' '.join(bench.quick_args if args.quick else bench.args)}",
            flush=True,
        )
        result, stderr, elapsed = run_one(bench, args.quick)
        if result is None:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            print(f"    FAILED to run ({elapsed:.0f} s):\n{tail}")
            rows.append((bench.key, bench.title, "did not run", "", "MISSED"))
            all_ok = False
            continue
        figure, target, met = bench.parse(result)
        verdict = "" if met is None else ("MET" if met else "MISSED")
        all_ok = all_ok and met is not False
        rows.append((bench.key, bench.title, figure, target, verdict))
        results["results"][bench.key] = result
        print(f"    [{elapsed:.0f} s] {verdict}")
    print(f"\nCPU pressure after: {cpu_pressure()}")
    print("\nsummary:")
    for key, title, figure, target, verdict in rows:
        print(f"{key:<3} {title}\n      {figure}\n      target {target or '-'}  {verdict}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\n{'every target MET' if all_ok else 'some targets MISSED'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
