"""B10 (draft for h16): the extra wall time of a link by short code over a link by QR/link text.

One run of each kind, as in B2 (bench_link.py): a fresh secondary listens
(`--json --expect-number N`, untimed until it shows its link and code); the
clock starts as the master starts and stops when both processes exited 0.
The QR-kind run uses `master scan --link L` (B2); the code-kind run
`master --code C`, which adds: the claim, the SPAKE2 exchange with key
confirmation both ways (pure-Python SPAKE2 on each side), and the sealed
channel/key message, before the same DeviceInit path. Runs alternate between
the kinds so that machine noise hits both alike; the figure is the difference
of the medians (and the median of per-pair differences).

Run: python benchmarks/bench_code_link.py [--runs 10] [--warmup 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_link import (  # the sibling module, found through the path above
    CODE,
    RUN_TIMEOUT_S,
    env_for,
    provision,
    start_server,
)


def one_link(server: str, workdir: Path, n: int, by_code: bool) -> float:
    """One timed link; ``by_code`` types the short code instead of passing the link."""
    import secrets

    number = "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))
    master_home, secondary_home = workdir / f"m{n}", workdir / f"s{n}"
    subprocess.run(
        provision("register", "--number", number, "--code", CODE),
        env=env_for(master_home, server), check=True, capture_output=True,
    )  # fmt: skip
    secondary = subprocess.Popen(
        provision("secondary", "listen", "--json", "--expect-number", number),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(secondary_home, server), text=True,
    )  # fmt: skip
    assert secondary.stdout is not None
    opened: dict[str, Any] = json.loads(secondary.stdout.readline())
    assert opened["event"] == "channel_opened", opened
    source = ["--code", opened["code"]] if by_code else ["scan", "--link", opened["link"]]
    started = time.perf_counter()
    master = subprocess.Popen(
        provision("master", *source, "--yes", "--json"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env_for(master_home, server), text=True,
    )  # fmt: skip
    master_out, _ = master.communicate(timeout=RUN_TIMEOUT_S)
    rest, _ = secondary.communicate(timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if master.returncode != 0 or secondary.returncode != 0:
        raise SystemExit(f"run {n} failed: master {master.returncode}, secondary "
                         f"{secondary.returncode}\n{master_out}\n{rest}")  # fmt: skip
    return elapsed


def one_code_link(server: str, workdir: Path, n: int) -> float:
    """B10's unit: one link by short code (the counterpart of bench_link.one_link)."""
    return one_link(server, workdir, n, by_code=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        workdir = Path(tmp)
        server, url = start_server(workdir)
        try:
            for i in range(args.warmup):
                one_link(url, workdir, -2 * i - 1, by_code=False)
                one_link(url, workdir, -2 * i - 2, by_code=True)
            qr, code = [], []
            for i in range(args.runs):
                qr.append(one_link(url, workdir, 2 * i, by_code=False))
                code.append(one_link(url, workdir, 2 * i + 1, by_code=True))
        finally:
            server.terminate()
            server.wait(timeout=10)
    result = {
        "runs": args.runs,
        "link_median_s": round(statistics.median(qr), 3),
        "code_median_s": round(statistics.median(code), 3),
        "extra_median_s": round(statistics.median(code) - statistics.median(qr), 3),
        "extra_pairwise_median_s": round(
            statistics.median([c - q for c, q in zip(code, qr, strict=True)]), 3
        ),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"link by text: median {result['link_median_s']:.3f} s; by short code: median "
            f"{result['code_median_s']:.3f} s; extra {result['extra_median_s'] * 1000:.0f} ms "
            f"(pairwise median {result['extra_pairwise_median_s'] * 1000:.0f} ms, "
            f"{args.runs} runs each)"
        )


if __name__ == "__main__":
    main()
