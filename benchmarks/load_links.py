"""Load: many concurrent links through one server, bounded in time (issue 8).

One ``link`` is everything the protocol does for a new device, with the real core and raw
API calls (no CLI subprocesses, so hundreds run at once on two cores):

    secondary: open the temp websocket, read {"uuid"}, make its ephemeral key
    master:    GET /v1/devices/provisioning_code, seal the DeviceInit, PUT /v1/messages/{uuid}
    secondary: receive {"message"}, open + trust-check it (SecondaryLink), confirm the number,
               PUT /v1/devices/{code}, PUT /v1/keys (signed prekey + --prekeys one-time keys),
               PUT /v1/messages/{number} (a 200-byte type-5 message to the master)
    master:    GET /v1/messages/, DELETE each (acknowledge), DELETE /v1/devices/{id}

Each of ``--links`` workers repeats that until ``--seconds`` have passed, registering a
fresh master (with its own keys) every ``--links-per-master`` links so that the per-number
limits, which stay at their defaults, are never reached; the per-address limits are off
(every worker is on 127.0.0.1). Every ``--abandon-every``-th link also leaves behind a channel
nobody uses and a provisioning code nobody redeems: the server must expire and purge them.

Measured: links per second, link latency p50/p99, every refusal (429: intended, counted
apart) and every other failure (an error); the server's RSS sampled each second, with the
least-squares slope over the second half of the run; after the run, once the channel TTL
and the code TTL have passed and housekeeping has run, the open channels (/metrics) and the
row count of every table (the server's SQLite file, read-only).

The server is its own process (so its RSS is its own), started by this script with the same
``create_app`` + ``ProvisionServer`` as ``provision server``, but with a short channel TTL,
code TTL and housekeeping interval (these are not CLI options) so that cleanup is visible
within the run.

Run:  python benchmarks/load_links.py                         # 500 links x 60 s
      python benchmarks/load_links.py --links 50 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.messages import IdentityKeyPayload
from textsecure_provision.protocol.prekeys import (
    build_keys_upload,
    generate_prekeys,
    generate_signed_prekey,
)
from textsecure_provision.protocol.provisioning import SecondaryLink, seal_device_init

TEST_CODE = "135791"
PER_ADDRESS = (
    "sms_code_address",
    "registration_guess_address",
    "code_guess_address",
    "channel_create_address",
    "auth_failure_address",
)
TABLES = (
    "accounts",
    "devices",
    "signed_prekeys",
    "one_time_prekeys",
    "last_resort_keys",
    "messages",
    "registration_codes",
    "provisioning_codes",
)

SERVER_MAIN = """
import json, sys
from textsecure_provision.server.app import create_app
from textsecure_provision.server.config import RateLimits, ServerConfig, SocketBudgets
from textsecure_provision.server.runner import ProvisionServer, uvicorn_config
opts = json.loads(sys.argv[1])
limits = RateLimits()
for name in opts.pop("limits_off"):
    limits = limits.with_rule(name, None)
# Every simulated client shares 127.0.0.1: no per-address socket cap.
sockets = SocketBudgets(max_sockets_per_address=None)
config = ServerConfig(rate_limits=limits, sockets=sockets, **opts.pop("config"))
app = create_app(config)
ProvisionServer(uvicorn_config(app, config), config, port_file=opts["port_file"]).run()
"""


class Refused(Exception):
    """A 429: an intended refusal, counted apart from errors."""


@dataclass
class Stats:
    links: int = 0
    latencies: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    masters: int = 0
    abandoned_channels: int = 0
    abandoned_codes: int = 0


@dataclass
class Master:
    number: str
    password: str
    identity: KeyPair
    registration_id: int
    keys: dict[str, Any] = field(default_factory=dict)  # its PUT /v1/keys body, reused
    links: int = 0

    @property
    def auth(self) -> tuple[str, str]:
        return (self.number, self.password)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_number() -> str:
    return "+1666" + "".join(secrets.choice("0123456789") for _ in range(8))


def keys_upload(identity: KeyPair, prekeys: int) -> dict[str, Any]:
    body = build_keys_upload(
        identity.public,
        generate_signed_prekey(identity, 1),
        generate_prekeys(1, prekeys),
        generate_prekeys(0xFFFFFF, 1)[0],
    )
    return msgspec.to_builtins(body)  # type: ignore[no-any-return]


def check(r: httpx.Response, what: str) -> httpx.Response:
    if r.status_code == 429:
        raise Refused(what)
    if r.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {r.status_code} {r.text[:100]}")
    return r


class Load:
    def __init__(
        self, url: str, *, prekeys: int, links_per_master: int, abandon_every: int, reuse_keys: bool
    ) -> None:
        self.reuse_keys = reuse_keys
        self.url = url
        self.ws_url = url.replace("http://", "ws://", 1) + "/v1/temp_websocket"
        self.prekeys = prekeys
        self.links_per_master = links_per_master
        self.abandon_every = abandon_every
        self.stats = Stats()
        self.idle: set[asyncio.Task[None]] = set()

    async def call(
        self, http: httpx.AsyncClient, method: str, path: str, what: str, **kw: Any
    ) -> httpx.Response:
        """One request; a transport failure is an error named after the step."""
        try:
            r = await http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise RuntimeError(f"{what}: {type(exc).__name__}") from exc
        return check(r, what)

    async def register(self, http: httpx.AsyncClient) -> Master:
        master = Master(
            new_number(), b64(os.urandom(18)), KeyPair.generate(), secrets.randbelow(16000) + 1
        )
        attrs = {"registrationId": master.registration_id, "fetchesMessages": True}
        path = f"/v1/accounts/code/{TEST_CODE}"
        await self.call(http, "PUT", path, "register", json=attrs, auth=master.auth)
        master.keys = keys_upload(master.identity, self.prekeys)
        await self.call(http, "PUT", "/v1/keys", "master keys", json=master.keys, auth=master.auth)
        self.stats.masters += 1
        return master

    async def link(self, http: httpx.AsyncClient, master: Master) -> None:
        try:
            ws = await websockets.connect(self.ws_url, max_size=2**20, open_timeout=30)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise RuntimeError(f"channel open: {type(exc).__name__}") from exc
        async with ws:
            channel = json.loads(await ws.recv())["uuid"]
            secondary = SecondaryLink.start([self.url])
            path = "/v1/devices/provisioning_code"
            r = await self.call(http, "GET", path, "code", auth=master.auth)
            code = r.json()["verificationCode"]
            payload = IdentityKeyPayload(master.identity, master.number, self.url, False, int(code))
            sealed = seal_device_init(payload, secondary.ephemeral.public)
            message = {"type": 0, "destinationDeviceId": 1, "destinationRegistrationId": 0,
                       "body": b64(sealed.device_init), "timestamp": 1}  # fmt: skip
            await self.call(
                http, "PUT", f"/v1/messages/{channel}", "relay",
                json={"messages": [message]}, auth=master.auth,
            )  # fmt: skip
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        opened = secondary.receive(base64.b64decode(frame["message"]))
        secondary.confirm_number(master.number)
        password = b64(os.urandom(18))
        attrs = {"registrationId": secrets.randbelow(16000) + 1, "fetchesMessages": True}
        r = await self.call(
            http, "PUT", f"/v1/devices/{opened.payload.provisioning_code}", "link",
            json=attrs, auth=(master.number, password),
        )  # fmt: skip
        device_id = r.json()["deviceId"]
        auth = (f"{master.number}.{device_id}", password)
        # The same account, so the master's upload body is valid for it too: the server does
        # the same work (signature check, inserts), this process skips ~100 key generations.
        keys = master.keys
        if not self.reuse_keys:
            keys = keys_upload(opened.payload.identity_key_pair, self.prekeys)
        await self.call(http, "PUT", "/v1/keys", "keys", json=keys, auth=auth)
        announce = {"type": 5, "destinationDeviceId": 1,
                    "destinationRegistrationId": master.registration_id,
                    "body": b64(os.urandom(200)), "timestamp": 1}  # fmt: skip
        await self.call(
            http, "PUT", f"/v1/messages/{master.number}", "announce",
            json={"messages": [announce]}, auth=auth,
        )  # fmt: skip
        r = await self.call(http, "GET", "/v1/messages/", "fetch", auth=master.auth)
        fetched = r.json()["messages"]
        if not fetched:
            raise RuntimeError("the announcement was not delivered")
        for m in fetched:
            await self.call(http, "DELETE", f"/v1/messages/{m['guid']}", "ack", auth=master.auth)
        await self.call(http, "DELETE", f"/v1/devices/{device_id}", "unlink", auth=master.auth)

    async def abandon(self, http: httpx.AsyncClient, master: Master) -> None:
        """A channel nobody answers (kept open until the server expires it) and a code
        nobody redeems (purged by housekeeping)."""
        ws = await websockets.connect(self.ws_url, open_timeout=30)
        await ws.recv()
        self.stats.abandoned_channels += 1

        async def wait_for_expiry() -> None:
            try:
                await ws.wait_closed()
            finally:
                await ws.close()

        task = asyncio.get_running_loop().create_task(wait_for_expiry())
        self.idle.add(task)
        task.add_done_callback(self.idle.discard)
        path = "/v1/devices/provisioning_code"
        await self.call(http, "GET", path, "abandoned code", auth=master.auth)
        master.links += 1  # it spends the same per-number budget as a link
        self.stats.abandoned_codes += 1

    async def worker(self, http: httpx.AsyncClient, deadline: float, k: int) -> None:
        master: Master | None = None
        n = 0
        tried = False
        # At least one attempt each, whatever the clock says: on a loaded machine a worker can
        # first run after the deadline, and "every worker linked" is what the test checks.
        while not tried or time.monotonic() < deadline:
            tried = True
            started = time.monotonic()
            try:
                if master is None or master.links >= self.links_per_master:
                    master = await self.register(http)
                master.links += 1
                await self.link(http, master)
                n += 1
                if self.abandon_every and n % self.abandon_every == k % self.abandon_every:
                    await self.abandon(http, master)
            except Refused as exc:
                self.stats.refusals[str(exc)] += 1
                master = None
                continue
            except Exception as exc:
                self.stats.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                master = None
                continue
            self.stats.links += 1
            self.stats.latencies.append(time.monotonic() - started)


async def run_workers(url: str, links: int, seconds: float, **kw: Any) -> Stats:
    load = Load(url, **kw)
    ready, go = 0, asyncio.Event()
    deadline = 0.0

    async def one(k: int) -> None:
        nonlocal ready, deadline
        # A client (one keep-alive connection) per worker: a single shared pool of hundreds
        # of connections makes httpcore scan them all on every request (quadratic CPU here).
        # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout:
        # with equal timeouts a request can race the server's close (a ReadError).
        limits = httpx.Limits(keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
            # The clock starts once every client exists (each costs an SSL context: seconds
            # for hundreds on a busy machine), so that all of them load the server from t=0.
            ready += 1
            if ready == links:
                deadline = time.monotonic() + seconds
                go.set()
            await go.wait()
            await load.worker(http, deadline, k)

    await asyncio.gather(*(one(k) for k in range(links)))
    if load.idle:  # the abandoned channels: the server closes each at its TTL
        await asyncio.wait(load.idle, timeout=120)
    return load.stats


# -- the server process ------------------------------------------------------------------------


class ServerProc:
    def __init__(
        self, workdir: Path, *, channel_ttl: float, code_ttl: float, housekeeping: float
    ) -> None:
        self.workdir = workdir
        self.db = workdir / "relay.sqlite3"
        port_file = workdir / "url"
        opts = {
            "port_file": str(port_file),
            "limits_off": list(PER_ADDRESS),
            "config": {
                "host": "127.0.0.1",
                "port": 0,
                "db_url": f"sqlite:///{self.db}",
                "test_registration_code": TEST_CODE,
                "channel_ttl_s": channel_ttl,
                "provisioning_code_ttl_s": code_ttl,
                "housekeeping_interval_s": housekeeping,
                "access_log": False,
                "log_level": "warning",
            },
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
        self.log = (workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, json.dumps(opts)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().endswith("\n")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + (workdir / "server.log").read_text())
            time.sleep(0.02)
        self.url = port_file.read_text().strip()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counts(self) -> dict[str, int]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            con.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def slope_kib_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time (KiB per minute)."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    ys = [float(y) for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    cov = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    return 0.0 if var == 0 else 60 * cov / var


def route_latencies_ms(url: str) -> dict[str, float]:
    """Mean server-side duration per route (from /metrics), 200 answers only."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    pattern = re.compile(
        r'provision_request_duration_seconds_(sum|count)\{method="([^"]*)",route="([^"]*)",'
        r'status="200"\} (\S+)'
    )
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        m = pattern.fullmatch(line)
        if m:
            kind, method, route, value = m.groups()
            (sums if kind == "sum" else counts)[f"{method} {route}"] = float(value)
    return {k: round(1000 * sums[k] / counts[k], 1) for k in sums if counts.get(k)}


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


@dataclass
class Report:
    links_concurrent: int
    seconds: float
    links_completed: int
    links_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    refusals: dict[str, int]
    errors: dict[str, int]
    masters_registered: int
    abandoned_channels: int
    abandoned_codes: int
    rss_start_kib: int
    rss_max_kib: int
    rss_end_kib: int
    rss_slope_second_half_kib_per_min: float
    rss_samples: list[tuple[float, int]]
    open_channels_after: float
    channels_expired: float
    tables_after: dict[str, int]
    prekeys_per_device: int
    cpu_client_s: float
    cpu_server_s: float
    server_mean_ms_by_route: dict[str, float]


def run_load(
    links: int = 500,
    seconds: float = 60.0,
    *,
    prekeys: int = 100,
    links_per_master: int = 5,
    abandon_every: int = 5,
    channel_ttl: float = 5.0,
    code_ttl: float = 10.0,
    housekeeping: float = 2.0,
    reuse_keys: bool = True,
    workdir: Path | None = None,
) -> Report:
    # tmpfs when there is one (as bench_rendezvous.py): the server's SQLite file then costs no
    # disk flushes, so the figures are the server's, not this machine's disk's.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="load-links-", dir=base))
    srv = ServerProc(workdir, channel_ttl=channel_ttl, code_ttl=code_ttl, housekeeping=housekeeping)
    samples: list[tuple[float, int]] = []
    try:
        t0 = time.monotonic()
        cpu0, server_cpu0 = time.process_time(), srv.cpu_s()
        stop = threading.Event()

        def sample() -> None:  # a thread: the generator's busy event loop must not delay it
            while not stop.is_set():
                samples.append((round(time.monotonic() - t0, 2), srv.rss_kib()))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def main() -> Stats:
            try:
                return await run_workers(
                    srv.url, links, seconds,
                    prekeys=prekeys, links_per_master=links_per_master, abandon_every=abandon_every,
                    reuse_keys=reuse_keys,
                )  # fmt: skip
            finally:
                stop.set()
                sampler.join()

        stats = asyncio.run(main())
        elapsed = time.monotonic() - t0
        cpu_client, cpu_server = time.process_time() - cpu0, srv.cpu_s() - server_cpu0
        # The last abandoned code was issued just now: wait until it has expired and been
        # purged (and every channel closed), or give up after a generous deadline and report
        # what is left.
        def clean() -> bool:
            counts = srv.counts()
            return (
                counts["provisioning_codes"] == 0
                and counts["registration_codes"] == 0
                and metric(srv.url, "provision_open_channels") == 0
            )

        settle = time.monotonic() + code_ttl + 4 * housekeeping + 30
        while not clean() and time.monotonic() < settle:
            time.sleep(housekeeping / 5)  # polling another process's database and /metrics
        samples.append((round(time.monotonic() - t0, 2), srv.rss_kib()))
        open_channels = metric(srv.url, "provision_open_channels")
        expired = metric(srv.url, "provision_channels_expired_total")
        server_ms = route_latencies_ms(srv.url)
        tables = srv.counts()
    finally:
        srv.stop()
    run_samples = [s for s in samples if s[0] <= seconds]
    second_half = [s for s in run_samples if s[0] >= seconds / 2]
    lat = sorted(stats.latencies) or [0.0]
    return Report(
        links_concurrent=links,
        seconds=round(elapsed, 1),
        links_completed=stats.links,
        links_per_second=round(stats.links / seconds, 1),
        latency_p50_ms=round(1000 * lat[len(lat) // 2], 1),
        latency_p99_ms=round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        refusals=dict(stats.refusals),
        errors=dict(stats.errors),
        masters_registered=stats.masters,
        abandoned_channels=stats.abandoned_channels,
        abandoned_codes=stats.abandoned_codes,
        rss_start_kib=run_samples[0][1] if run_samples else 0,
        rss_max_kib=max(y for _, y in samples),
        rss_end_kib=samples[-1][1],
        rss_slope_second_half_kib_per_min=round(slope_kib_per_min(second_half), 1),
        rss_samples=samples,
        open_channels_after=open_channels,
        channels_expired=expired,
        tables_after=tables,
        prekeys_per_device=prekeys,
        cpu_client_s=round(cpu_client, 1),
        cpu_server_s=round(cpu_server, 1),
        server_mean_ms_by_route=server_ms,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", type=int, default=500, help="concurrent links (workers)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--prekeys", type=int, default=100, help="one-time prekeys per upload")
    ap.add_argument("--links-per-master", type=int, default=5)
    ap.add_argument("--abandon-every", type=int, default=5)
    ap.add_argument("--channel-ttl", type=float, default=5.0)
    ap.add_argument("--code-ttl", type=float, default=10.0)
    ap.add_argument(
        "--fresh-keys",
        action="store_true",
        help="generate new prekeys for every link (costs this process ~7 ms per link)",
    )
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args()
    report = run_load(
        args.links, args.seconds,
        prekeys=args.prekeys, links_per_master=args.links_per_master,
        abandon_every=args.abandon_every, channel_ttl=args.channel_ttl, code_ttl=args.code_ttl,
        reuse_keys=not args.fresh_keys,
    )  # fmt: skip
    if args.json:
        print(json.dumps(asdict(report)))
        return
    doc = asdict(report)
    samples = doc.pop("rss_samples")
    for key, value in doc.items():
        print(f"{key:36} {value}")
    print("rss samples (s, KiB):", " ".join(f"{t:g}:{y}" for t, y in samples))


if __name__ == "__main__":
    main()
