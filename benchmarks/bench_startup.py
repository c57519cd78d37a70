"""B1: `provision --help` wall time vs `python -c 'import click'` (target ≤ 1.15×).

Both run with the same interpreter as fresh processes, interleaved, median of
N runs each. `provision` is run as the installed console script when it sits
next to this interpreter, else as `python -m textsecure_provision`.

First the package is byte-compiled (`compileall`, into its `__pycache__`
folders, which git ignores), as pip does for any installed package: click
comes with its .pyc files, while an editable install under
PYTHONDONTWRITEBYTECODE=1 (set on the reference machine) would otherwise
compile every imported module from source on every run, which is not what a
user's `provision --help` costs.

Run: python benchmarks/bench_startup.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 1.15


def provision_command() -> list[str]:
    script = Path(sys.executable).with_name("provision")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("provision")
    return [found, "--help"] if found else [sys.executable, "-m", "textsecure_provision", "--help"]


def wall(cmd: list[str], cpu: list[float] | None = None) -> float:
    """Wall time of one run; its CPU time (user + system, from the kernel's accounting of
    children) is appended to ``cpu``: the less noisy figure on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        )  # fmt: skip
    return elapsed


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    ns = parser.parse_args()
    import textsecure_provision

    package = Path(textsecure_provision.__file__).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ours_cmd = provision_command()
    click_cmd = [sys.executable, "-c", "import click"]
    for cmd in (ours_cmd, click_cmd):
        wall(cmd)  # warm the page cache
    ours, base, ours_cpu, base_cpu = [], [], [], []
    for _ in range(ns.runs):
        base.append(wall(click_cmd, base_cpu))
        ours.append(wall(ours_cmd, ours_cpu))
    ratio = statistics.median(ours) / statistics.median(base)
    cpu_ratio = statistics.median(ours_cpu) / max(1e-9, statistics.median(base_cpu))
    print(
        f"B1 `{' '.join(Path(c).name for c in ours_cmd)}`: "
        f"median {statistics.median(ours) * 1e3:.1f} ms;"
        f" `python -c 'import click'`: {statistics.median(base) * 1e3:.1f} ms"
    )
    summary = (
        f"B1 ratio (median of {ns.runs}): {ratio:.2f}x  target ≤ {TARGET}x  "
        f"{'MET' if ratio <= TARGET else 'MISSED'} (CPU time {cpu_ratio:.2f}x: "
        f"{statistics.median(ours_cpu) * 1e3:.0f} vs {statistics.median(base_cpu) * 1e3:.0f} ms)"
    )
    print(summary)
    if ns.json:
        print(json.dumps({
            "ratio": round(ratio, 3), "target": TARGET, "ok": ratio <= TARGET, "runs": ns.runs,
            "summary": summary, "cpu_ratio": round(cpu_ratio, 3),
            "ours_ms": round(statistics.median(ours) * 1e3, 1),
            "click_ms": round(statistics.median(base) * 1e3, 1),
        }))  # fmt: skip
    return ratio


if __name__ == "__main__":
    main()
