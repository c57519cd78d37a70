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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_link  # the sibling module, found through the path above
from bench_link import start_server


def one_link(server: str, workdir: Path, n: int, by_code: bool) -> float:
    """One timed link, by short code or by link text (bench_link.one_link does the work)."""
    return bench_link.one_link(server, workdir, n, False, by_code=by_code)


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
