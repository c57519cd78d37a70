"""B2: one full link on loopback, acknowledgement included (target: median ≤ 0.35 s).

One run = a fresh secondary data folder; `provision secondary listen --json
--expect-number N` started in the background and given time to show its link
(untimed); then the clock starts, `provision master scan --link L --yes
--json` is started, and the clock stops when both processes have exited 0.
The master exits only after the secondary's NEW_DEVICE_REGISTERED arrived
(§1 step 7), so the figure covers: the master's process start, provisioning
code, DeviceInit, the secondary's registration, 100 prekeys and their upload,
the store commit, the key bundles, the session and its type-5 message, and
the master's decryption, commit and acknowledgement.

First the package the processes import is byte-compiled (`compileall`, into
its `__pycache__` folders, which git ignores), as pip does for any installed
package and as B1 does: under PYTHONDONTWRITEBYTECODE=1 (set on the reference
machine) a tree without them compiles every module it imports from source in
both processes on every run, ~70 ms of the master's CPU, which is not what a
user's link costs.

The server (`provision server`, SQLite in a temp folder, rate limits and
access log off) is started once and warmed up with untimed runs. Each run
registers its own master first (untimed), so every run links device 2 of a
fresh account.

Run: python benchmarks/bench_link.py [--runs 10] [--warmup 2] [--qr] [--json]
     (--qr: the secondary writes a PNG and the master decodes it, as a camera would)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CODE = "424242"
TARGET_MEDIAN_S = 0.35
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 60.0


def provision(*args: str) -> list[str]:
    return [sys.executable, "-m", "textsecure_provision", *args]


def env_for(home: Path, server: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env.update(PROVISION_HOME=str(home), PROVISION_SERVER=server, NO_COLOR="1")
    return env


def compile_package() -> None:
    # In a child, so that it is the package the benchmark's processes import (the working
    # folder comes first on their path, then PYTHONPATH, then the installed one).
    code = (
        "import compileall, os, textsecure_provision as p; "
        "compileall.compile_dir(os.path.dirname(p.__file__), quiet=1)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "server.url"
    proc = subprocess.Popen(
        provision(
            "server", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
            "--db", f"sqlite:///{workdir / 'server.db'}", "--test-registration-code", CODE,
            "--no-rate-limits", "--no-access-log", "--log-level", "warning",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")},
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = port_file.read_text() if port_file.exists() else ""
        if text.endswith("\n"):
            return proc, text.strip()
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.02)  # polling another process's file


def one_link(server: str, workdir: Path, n: int, use_qr: bool, *, by_code: bool = False) -> float:
    """One timed link (see the module's docstring); ``by_code`` types the short code instead
    (B10, bench_code_link.py)."""
    number = "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))
    master_home, secondary_home = workdir / f"m{n}", workdir / f"s{n}"
    subprocess.run(
        provision("register", "--number", number, "--code", CODE),
        env=env_for(master_home, server), check=True, capture_output=True,
    )  # fmt: skip
    qr = workdir / f"q{n}.png"
    listen_args = ["secondary", "listen", "--json", "--expect-number", number]
    if use_qr:
        listen_args += ["--qr-out", str(qr)]
    secondary = subprocess.Popen(
        provision(*listen_args),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(secondary_home, server), text=True,
    )  # fmt: skip
    assert secondary.stdout is not None
    opened: dict[str, Any] = json.loads(secondary.stdout.readline())
    assert opened["event"] == "channel_opened", opened
    if by_code:
        source = ["--code", opened["code"]]
    else:
        source = ["scan", "--qr", str(qr)] if use_qr else ["scan", "--link", opened["link"]]
    started = time.perf_counter()
    master = subprocess.Popen(
        provision("master", *source, "--yes", "--json"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(master_home, server), text=True,
    )  # fmt: skip
    master_out, _ = master.communicate(timeout=RUN_TIMEOUT_S)
    secondary_rest, _ = secondary.communicate(timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if master.returncode != 0 or secondary.returncode != 0:
        raise SystemExit(f"run {n} failed: master {master.returncode}, secondary "
                         f"{secondary.returncode}\n{master_out}\n{secondary_rest}")  # fmt: skip
    events = [json.loads(line)["event"] for line in master_out.splitlines() if line.strip()]
    assert events[-1] == "acknowledged", events
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--qr", action="store_true", help="go through a PNG and the scanner")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        workdir = Path(tmp)
        server, url = start_server(workdir)
        try:
            for i in range(args.warmup):
                one_link(url, workdir, -1 - i, args.qr)
            times = [one_link(url, workdir, i, args.qr) for i in range(args.runs)]
        finally:
            server.terminate()
            server.wait(timeout=10)
    result = {
        "runs": args.runs,
        "qr": args.qr,
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(percentile(times, 0.9), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "target_median_s": TARGET_MEDIAN_S,
    }
    result["ok"] = result["median_s"] <= TARGET_MEDIAN_S
    result["summary"] = (
        f"B2 full link incl. acknowledgement: median {result['median_s']:.3f} s, p90 "
        f"{result['p90_s']:.3f} s ({args.runs} runs); target median ≤ {TARGET_MEDIAN_S} s  "
        f"{'MET' if result['ok'] else 'MISSED'}"
    )
    if args.json:
        print(json.dumps(result))
    else:
        how = f"{args.runs} runs, via QR PNG" if args.qr else f"{args.runs} runs"
        print(
            f"full link incl. acknowledgement ({how}): "
            f"median {result['median_s']:.3f} s, p90 {result['p90_s']:.3f} s "
            f"(min {result['min_s']:.3f}, max {result['max_s']:.3f}); "
            f"target median ≤ {TARGET_MEDIAN_S} s: "
            f"{'met' if result['median_s'] <= TARGET_MEDIAN_S else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
