"""Run every benchmark (B1-B10, plus the session layer for information) and print each figure
next to its target with MET or MISSED.

Each benchmark runs alone, in its own process and in turn (never two at once),
with its JSON output parsed here; its own human-readable lines are shown as it
runs. The machine (CPUs, model, Python and library versions) and the kernel's
CPU pressure before and after are printed too: these machines are shared, and a
figure is only meaningful next to them. Exit status 0 when every target is met.

Every result kept by ``--json`` carries ``ok`` (True/False; None for a figure
with no target, or a benchmark that is not available here, e.g. B8 without
PostgreSQL and Redis, B10 without the short-code path) and ``summary`` (one
line: the figure, its target, the verdict).

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


def _b7(r: dict[str, Any]) -> Parsed:
    import bench_floor

    top = max(r["levels"], key=lambda lv: lv["concurrency"])
    return (
        f"c={top['concurrency']}: server CPU per rendezvous ours {top['ours']['server_cpu_us']:.0f}"
        f" µs vs floor {top['floor']['server_cpu_us']:.0f} µs = {top['cpu_ratio']}x",
        f"≤ {bench_floor.TARGET_RATIO:g}x the floor",
        r["ok"],
    )


def _b8(r: dict[str, Any]) -> Parsed:
    import bench_scaleout

    if r.get("skipped"):
        return r["summary"], "-", None
    top = max(r["levels"], key=lambda lv: lv["concurrency"])
    rt = r["round_trips"]
    return (
        f"c={top['concurrency']}: pg1 {top['pg1_ratio']}x, cross {top['cross_ratio']}x the SQLite "
        f"node ({top['sqlite']['rate_per_s']:.0f}/s); per rendezvous pg1 "
        f"{rt['pg1']['redis_per_rdv']:g} Redis + {rt['pg1']['postgres_tx_per_rdv']:g} PostgreSQL, "
        f"cross {rt['cross']['redis_per_rdv']:g} + {rt['cross']['postgres_tx_per_rdv']:g}",
        f"pg1 ≥ {bench_scaleout.TARGET_PG1}x, cross ≥ {bench_scaleout.TARGET_CROSS}x",
        r["ok"],
    )


def _b9(r: dict[str, Any]) -> Parsed:
    import bench_attack

    a, q = r["attack"], r["quiet"]
    return (
        f"link median {a['link_median_s']} s under attack vs {q['link_median_s']} s quiet = "
        f"{r['link_ratio']}x ({len(a['link_failures'])} failed); probe p99 {a['probe']['p99_ms']}"
        f" vs {q['probe']['p99_ms']} ms",
        f"≤ {bench_attack.TARGET_RATIO:g}x the quiet link",
        r["ok"],
    )


def _b10(r: dict[str, Any]) -> Parsed:
    if r.get("skipped"):
        return r["summary"], "-", None
    return (
        f"by code median {r['code_median_s']:.3f} s vs by link {r['link_median_s']:.3f} s "
        f"({r['extra_median_s'] * 1000:+.0f} ms; pairwise "
        f"{r['extra_pairwise_median_s'] * 1000:+.0f} ms, {r['runs']} runs each)",
        "(no target: the price of typing a code)",
        None,
    )


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
    Bench(
        "B7",
        "server CPU per rendezvous vs the bare-uvloop floor",
        "bench_floor.py",
        ("--json",),
        ("--json", "--seconds", "3", "--concurrency", "50"),
        _b7,
    ),
    Bench(
        "B8",
        "PostgreSQL + Redis nodes vs one SQLite node",
        "bench_scaleout.py",
        ("--json",),
        ("--json", "--seconds", "3", "--count-rdv", "50"),
        _b8,
    ),
    Bench(
        "B9",
        "a normal link while one address attacks",
        "bench_attack.py",
        ("--json",),
        ("--json", "--links", "2", "--idle", "2000", "--probe-seconds", "3"),
        _b9,
    ),
    Bench(
        "B10",
        "link by short code vs by QR/link",
        "bench_code_link.py",
        ("--json",),
        ("--json", "--runs", "3", "--warmup", "1"),
        _b10,
    ),
    Bench("S", "session layer (information)", "bench_session.py", (), ("--n", "200"), _session),
]


def unavailable(bench: Bench) -> str | None:
    """Why a benchmark cannot run here (None: it can)."""
    if bench.key == "B10":
        if not (HERE / bench.script).exists():
            return "B10 not available: no short-code link here (benchmarks/bench_code_link.py)"
        probe = subprocess.run(
            [sys.executable, "-m", "textsecure_provision", "master", "scan", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "--code" not in probe.stdout:
            return "B10 not available: `provision master scan` has no --code (short-code link)"
    if bench.key == "B8":
        import socket
        from urllib.parse import urlsplit

        for name, default in (
            ("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            ("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ):
            parts = urlsplit(os.environ.get(name, default))
            try:
                socket.create_connection((parts.hostname, parts.port), timeout=2).close()
            except OSError:
                return f"B8 not available: nothing answers at {parts.hostname}:{parts.port}"
    return None


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
        why_not = unavailable(bench)
        if why_not is not None:
            print(f"    {why_not}")
            rows.append((bench.key, bench.title, why_not, "", "NOT AVAILABLE"))
            results["results"][bench.key] = {"ok": None, "skipped": True, "summary": why_not}
            continue
        result, stderr, elapsed = run_one(bench, args.quick)
        if result is None:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            print(f"    FAILED to run ({elapsed:.0f} s):\n{tail}")
            rows.append((bench.key, bench.title, "did not run", "", "MISSED"))
            all_ok = False
            continue
        try:
            figure, target, met = bench.parse(result)
        except (KeyError, TypeError, ValueError) as exc:  # a benchmark changed its output
            figure, target, met = f"unreadable result ({type(exc).__name__}: {exc})", "", False
        verdict = "" if met is None else ("MET" if met else "MISSED")
        result["ok"] = met
        result.setdefault("summary", f"{bench.key} {figure}; target {target}  {verdict}".rstrip())
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
