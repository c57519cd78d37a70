"""Regenerate textsecure_provision/proto/*_pb2.py from protos/*.proto.

Usage: python tools/gen_protos.py [--out DIR]

Needs grpcio-tools (a dev dependency only). The output is committed; the test
tests/unit/test_protos_fresh.py regenerates into a temporary folder and fails
when the committed files differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "textsecure_provision" / "proto"


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(out_dir.glob("*_pb2.py*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    ns = parser.parse_args()
    for path in generate(ns.out):
        print(path.relative_to(ns.out.parent) if ns.out == OUT_DIR else path)


if __name__ == "__main__":
    sys.exit(main())
