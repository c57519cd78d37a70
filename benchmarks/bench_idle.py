"""B4: server memory per idle temp channel (target ≤ 10 KiB each).

Starts `provision server` (separate process, rate limits off, channel TTL 900 s
so that nothing expires during the run), warms it up with 500 channels opened
and closed, reads its RSS (VmRSS in /proc/PID/status), then opens N channels
and holds them (each has received its uuid frame), waits until the server's
own gauge (`provision_open_channels` on /metrics) says N, and reads the RSS
again: (after - before) / N is the figure. RSS is what the process holds in
RAM: Python objects, the event loop's handles and the allocator's slack; the
kernel's socket buffers are not in it (they are the same for any server).

The channels are held by separate generator processes of at most 10,000
sockets each. File limits: every process raises its soft RLIMIT_NOFILE to the
hard limit. The hard limit cannot be raised without CAP_SYS_RESOURCE; where it
is below N + 200 (it is 20,000 on the reference machine), N is lowered to fit
and the output says so.

--peer M also measures magic-wormhole-mailbox-server 0.8.0 (benchmarks/peer.py)
with M idle clients, each a sender waiting for its partner: bound, nameplate
allocated and claimed, mailbox open.

Run: python benchmarks/bench_idle.py [--channels 20000] [--peer 0] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer
from bench_rendezvous import data_dir, start_ours
from loadgen import HttpClient, WsClient, rss_kib, stop_process

TARGET_KIB = 10.0
PER_HOLDER = 10_000
OPEN_PARALLEL = 100
FD_MARGIN = 200
OPEN_TIMEOUT_S = 60.0


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by child processes); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


# -- a holder process: opens channels, keeps them until told to stop ------------------------------


async def _open_ours(host: str, port: int) -> WsClient:
    async with asyncio.timeout(OPEN_TIMEOUT_S):
        ws = await WsClient.connect(host, port, "/v1/temp_websocket")
        json.loads(await ws.recv())  # the uuid frame: the channel is open
    return ws


async def _open_peer(host: str, port: int) -> WsClient:
    async with asyncio.timeout(OPEN_TIMEOUT_S):
        ws = await WsClient.connect(host, port, "/v1")
        side = os.urandom(5).hex()
        await peer._expect(ws, "welcome")
        peer._send(ws, {"type": "bind", "appid": peer.APPID, "side": side}, {"type": "allocate"})
        nameplate = (await peer._expect(ws, "allocated"))["nameplate"]
        peer._send(ws, {"type": "claim", "nameplate": nameplate})
        mailbox = (await peer._expect(ws, "claimed"))["mailbox"]
        peer._send(ws, {"type": "open", "mailbox": mailbox})
    return ws


async def hold(kind: str, host: str, port: int, count: int) -> None:
    opener = _open_ours if kind == "ours" else _open_peer
    sockets: list[WsClient] = []
    sem = asyncio.Semaphore(OPEN_PARALLEL)

    async def one() -> None:
        async with sem:
            sockets.append(await opener(host, port))

    await asyncio.gather(*(one() for _ in range(count)))
    print(f"ready {len(sockets)}", flush=True)
    # Hold until the parent writes a line (or goes away), bounded by 10 minutes.
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 600)
    for ws in sockets:
        ws.abort()


# -- the measurement --------------------------------------------------------------------------


def start_holders(kind: str, host: str, port: int, total: int) -> list[subprocess.Popen[str]]:
    holders = []
    left = total
    while left > 0:
        n = min(PER_HOLDER, left)
        left -= n
        holders.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--hold",
                    kind,
                    "--url",
                    f"{host}:{port}",
                    "--channels",
                    str(n),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return holders


def wait_holders(holders: list[subprocess.Popen[str]]) -> int:
    opened = 0
    for h in holders:
        assert h.stdout is not None
        line = h.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"a holder failed (exit {h.wait()})")
        opened += int(line.split()[1])
    return opened


def release_holders(holders: list[subprocess.Popen[str]]) -> None:
    for h in holders:
        if h.stdin is not None:
            try:
                h.stdin.write("done\n")
                h.stdin.flush()
            except BrokenPipeError:
                pass
    for h in holders:
        try:
            h.wait(60)
        except subprocess.TimeoutExpired:
            h.kill()


async def open_channels_gauge(host: str, port: int) -> int:
    http = await HttpClient.connect(host, port)
    try:
        async with asyncio.timeout(10):
            status, body = await http.request(
                b"GET /metrics HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
            )
    finally:
        http.close()
    for line in body.decode().splitlines():
        if line.startswith("provision_open_channels "):
            return int(float(line.split()[1]))
    raise RuntimeError(f"no open-channels gauge (status {status})")


async def wait_for_gauge(host: str, port: int, want: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = await open_channels_gauge(host, port)
        if value == want or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)  # polling the server's own gauge, bounded by the deadline


def measure_ours(n: int) -> dict[str, Any]:
    workdir = data_dir()
    # All the channels come from 127.0.0.1: the per-address socket cap (256) is lifted.
    proc, url = start_ours(workdir, ("--channel-ttl", "900", "--max-sockets-per-address", "off"))
    host, port = url.removeprefix("http://").split(":")
    try:
        warm = start_holders("ours", host, int(port), 500)
        wait_holders(warm)
        release_holders(warm)
        asyncio.run(wait_for_gauge(host, int(port), 0))
        before = rss_kib(proc.pid)
        holders = start_holders("ours", host, int(port), n)
        opened = wait_holders(holders)
        gauge = asyncio.run(wait_for_gauge(host, int(port), opened))
        after = rss_kib(proc.pid)
        release_holders(holders)
    finally:
        stop_process(proc)
    return {
        "channels": opened,
        "server_gauge": gauge,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_channel": round((after - before) / opened, 2),
    }


def measure_peer(n: int) -> dict[str, Any]:
    version = peer.ensure_installed()
    workdir = data_dir()
    proc, url = peer.start(workdir)
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    try:
        warm = start_holders("peer", host, int(port), 200)
        wait_holders(warm)
        release_holders(warm)
        time.sleep(1.0)  # the peer has no gauge to wait on; let it drop the warm-up clients
        before = rss_kib(proc.pid)
        holders = start_holders("peer", host, int(port), n)
        opened = wait_holders(holders)
        after = rss_kib(proc.pid)
        release_holders(holders)
    finally:
        stop_process(proc)
    return {
        "peer": version,
        "clients": opened,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_client": round((after - before) / opened, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=20_000)
    parser.add_argument("--peer", type=int, default=0, help="also measure the peer with M clients")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    parser.add_argument("--hold", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limit = raise_nofile()
    if args.hold:
        host, port = args.url.split(":")
        asyncio.run(hold(args.hold, host, int(port), args.channels))
        return {}
    n = min(args.channels, limit - FD_MARGIN)
    result: dict[str, Any] = {"requested": args.channels, "nofile_limit": limit}
    result["ours"] = measure_ours(n)
    if args.peer:
        result["peer"] = measure_peer(min(args.peer, limit - FD_MARGIN))
    ours = result["ours"]
    ok = ours["kib_per_channel"] <= TARGET_KIB and ours["server_gauge"] == ours["channels"]
    note = (
        f" (asked {args.channels}; the file limit is {limit} and cannot be raised here)"
        if n < args.channels
        else ""
    )
    result["ok"] = ok
    result["summary"] = (
        f"B4 idle channels: {ours['kib_per_channel']:.2f} KiB per channel over "
        f"{ours['channels']} channels{note} [RSS {ours['rss_before_kib']} → "
        f"{ours['rss_after_kib']} KiB]; target ≤ {TARGET_KIB:g} KiB  {'MET' if ok else 'MISSED'}"
    )
    if "peer" in result:
        p = result["peer"]
        print(
            f"B4 peer ({p['peer']}): {p['kib_per_client']:.2f} KiB per idle client over "
            f"{p['clients']} clients [RSS {p['rss_before_kib']} → {p['rss_after_kib']} KiB]"
        )
    print(result["summary"])
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome.get("ok", True) else 1)
