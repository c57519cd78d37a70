"""B1: `provision --help` wall time vs `python -c 'import click'` (target ≤ 1.15×).

Both run with the same interpreter as fresh processes, interleaved, median of
N runs each. `provision` is run as the installed console script when it sits
next to this interpreter, else as `python -m textsecure_provision`.

Run: python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
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


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    ns = parser.parse_args()
    ours_cmd = provision_command()
    click_cmd = [sys.executable, "-c", "import click"]
    for cmd in (ours_cmd, click_cmd):
        wall(cmd)  # warm the page cache
    ours, base = [], []
    for _ in range(ns.runs):
        base.append(wall(click_cmd))
        ours.append(wall(ours_cmd))
    ratio = statistics.median(ours) / statistics.median(base)
    print(
        f"B1 `{' '.join(Path(c).name for c in ours_cmd)}`: "
        f"median {statistics.median(ours) * 1e3:.1f} ms;"
        f" `python -c 'import click'`: {statistics.median(base) * 1e3:.1f} ms"
    )
    print(
        f"B1 ratio (median of {ns.runs}): {ratio:.2f}x  target ≤ {TARGET}x  "
        f"{'MET' if ratio <= TARGET else 'MISSED'}"
    )
    return ratio


if __name__ == "__main__":
    main()
