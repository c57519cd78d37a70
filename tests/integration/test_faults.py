"""Redis stopped and PostgreSQL restarted under two running nodes.

Each test runs private services (services.py: a redis-server and a throwaway
PostgreSQL cluster on free ports) so it can stop and start them without
touching the shared ones. While a service is down the nodes answer clear 503s
(``{"error", "code": 503}``) to requests that need it and nothing else fails;
once it is back they recover by themselves (no node restart), and every message
that was answered 200 is still there.

Node A keeps the default rate limits, so during a Redis outage every
authenticated request on A is refused (the limiter fails closed); node B runs
without limits, so sends still store through it and only what needs Redis
itself (long-polls, channels) is refused there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from textsecure_provision.server.config import RateLimits, ServerConfig

from .conftest import RunningServer, start_server
from .helpers import TEST_CODE, Device, b64, register
from .services import PrivatePostgres, PrivateRedis, require_services
from .test_channels import channel_body

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WAIT_S = 15.0
_schemas = itertools.count(1)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    require_services()  # same skip/fail rule as the other multi-node tests
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@dataclass
class Cluster:
    a: RunningServer  # default rate limits
    b: RunningServer  # rate limits off
    ca: httpx.AsyncClient
    cb: httpx.AsyncClient
    statuses: list[int] = field(default_factory=list)  # every answer of the background load

    def record(self, r: httpx.Response) -> httpx.Response:
        self.statuses.append(r.status_code)
        if r.status_code >= 500:
            assert r.status_code == 503, r.text  # the only 5xx allowed
            assert r.json()["code"] == 503 and r.json()["error"], r.text
        return r


@pytest.fixture
async def cluster(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis
) -> AsyncIterator[Cluster]:
    fields = {
        "port": 0,
        "db_url": f"{private_postgres.url}?schema=faults_{next(_schemas)}",
        "redis_url": private_redis.url,
        "redis_prefix": "faults:",
        "test_registration_code": TEST_CODE,
        "log_level": "warning",  # the outages log loudly, on purpose
    }
    a = start_server(ServerConfig(**fields))  # type: ignore[arg-type]
    b = start_server(ServerConfig(rate_limits=RateLimits.off(), **fields))  # type: ignore[arg-type]
    try:
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=WAIT_S) as ca,
            httpx.AsyncClient(base_url=b.url, timeout=WAIT_S) as cb,
        ):
            yield Cluster(a, b, ca, cb)
    finally:
        a.request_stop()
        b.request_stop()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a condition (polling the servers' own answers), or fail after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def health(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    r = await client.get("/health")
    assert r.status_code in (200, 503), r.text
    deps = r.json()["dependencies"]
    return r.status_code, {name: dep["status"] for name, dep in deps.items()}


async def all_down(c: Cluster, dependency: str) -> bool:
    for client in (c.ca, c.cb):
        status, deps = await health(client)
        if status != 503 or deps[dependency] != "down":
            return False
    return True


async def all_healthy(c: Cluster) -> bool:
    return all([(await health(client))[0] == 200 for client in (c.ca, c.cb)])


def _message(to: Device, body: bytes) -> dict[str, object]:
    return {
        "messages": [
            {
                "type": 1,
                "destinationDeviceId": to.device_id,
                "destinationRegistrationId": to.registration_id,
                "body": b64(body),
                "timestamp": 1,
            }
        ]
    }


@dataclass
class Load:
    accepted: set[bytes] = field(default_factory=set)  # bodies answered 200: must be stored
    statuses: list[int] = field(default_factory=list)

    def count(self, status: int) -> Callable[[int], Awaitable[bool]]:
        async def at_least(n: int) -> bool:
            return self.statuses.count(status) >= n

        return at_least


@contextlib.asynccontextmanager
async def load(c: Cluster, sender: Device, to: Device) -> AsyncIterator[Load]:
    """Send numbered messages through both nodes in turn until the block ends."""
    result = Load()
    stop = asyncio.Event()

    async def run() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            body = f"load {i}".encode()
            client = c.ca if i % 2 else c.cb
            r = c.record(
                await client.put(
                    f"/v1/messages/{to.number}", json=_message(to, body), auth=sender.auth
                )
            )
            result.statuses.append(r.status_code)
            if r.status_code == 200:
                result.accepted.add(body)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)  # pacing, ~50 sends a second

    task = asyncio.create_task(run())
    try:
        yield result
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def drain(client: httpx.AsyncClient, device: Device) -> list[bytes]:
    """Every stored message for the device, acknowledged as read."""
    bodies: list[bytes] = []
    while True:
        r = await client.get("/v1/messages/", auth=device.auth)
        assert r.status_code == 200, r.text
        doc = r.json()
        for m in doc["messages"]:
            bodies.append(base64.b64decode(m["body"]))
            assert (
                await client.delete(f"/v1/messages/{m['guid']}", auth=device.auth)
            ).status_code == 200
        if not doc["more"]:
            return bodies


async def assert_channel_relays_across_nodes(c: Cluster, sender: Device) -> None:
    ws = await connect(c.a.ws_url, open_timeout=WAIT_S)
    channel = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["uuid"]
    r = c.record(
        await c.cb.put(f"/v1/messages/{channel}", json=channel_body(b"after"), auth=sender.auth)
    )
    assert r.status_code == 200, r.text
    frame = await asyncio.wait_for(ws.recv(), WAIT_S)
    assert b64(b"after") in str(frame)
    await ws.close()


async def test_redis_stops_and_returns_while_both_nodes_run(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    c = cluster
    alice = await register(c.ca)
    bob = await register(c.ca)
    r = c.record(
        await c.cb.put(f"/v1/messages/{bob.number}", json=_message(bob, b"before"), auth=alice.auth)
    )
    assert r.status_code == 200
    # A long-poll parked on A before the outage (a fresh device, so it has nothing waiting).
    carol = await register(c.ca)
    parked = asyncio.create_task(c.ca.get("/v1/messages/", params={"wait": "45"}, auth=carol.auth))

    async def poll_parked() -> bool:
        return c.a.parked_long_polls() >= 1

    await until(poll_parked, "the long-poll parks on A")

    async with load(c, alice, bob) as traffic:
        await until(lambda: traffic.count(200)(4), "the load runs")
        private_redis.stop()
        await until(lambda: all_down(c, "fanout"), "both nodes report the fan-out down")
        _, deps = await health(c.ca)
        assert deps == {"storage": "ok", "fanout": "down", "ratelimiter": "down"}
        # Under load through both nodes: A refuses (its limiter needs Redis), B stores.
        refused, stored_during = traffic.count(503), traffic.count(200)
        base_503, base_200 = traffic.statuses.count(503), traffic.statuses.count(200)
        await until(lambda: refused(base_503 + 3), "sends through A get 503")
        await until(lambda: stored_during(base_200 + 3), "sends through B still store")

        # What needs Redis is refused, clearly.
        r = c.record(await c.ca.get("/v1/devices/", auth=alice.auth))  # A: limiter → 503
        assert r.status_code == 503
        assert r.json() == {"error": r.json()["error"], "code": 503}
        assert "Redis" in r.json()["error"]
        r = c.record(await c.cb.get("/v1/messages/", params={"wait": "5"}, auth=carol.auth))
        assert r.status_code == 503  # a long-poll cannot be woken without Redis
        for node in (c.a, c.b):
            with pytest.raises(InvalidStatus) as refused_ws:
                await connect(node.ws_url, open_timeout=WAIT_S)
            assert refused_ws.value.response.status_code == 503
        # B (no limits) stores for carol: the message is in PostgreSQL, its wake-up lost...
        r = c.record(
            await c.cb.put(
                f"/v1/messages/{carol.number}", json=_message(carol, b"during"), auth=alice.auth
            )
        )
        assert r.status_code == 200
        assert not parked.done()

        private_redis.start()
        await until(lambda: all_healthy(c), "both nodes recover by themselves")
        # ...and the reconnect wakes every long-poll to re-read: carol's gets it.
        r = await asyncio.wait_for(parked, WAIT_S)
        assert r.status_code == 200
        assert [base64.b64decode(m["body"]) for m in r.json()["messages"]] == [b"during"]

        # Everything works again across nodes, without restarting either.
        await assert_channel_relays_across_nodes(c, alice)
        after = traffic.statuses.count(200)
        await until(lambda: traffic.count(200)(after + 4), "sends succeed through both nodes")

    assert set(c.statuses) <= {200, 503}, sorted(set(c.statuses))
    stored = set(await drain(c.cb, bob))
    assert b"before" in stored
    assert traffic.accepted <= stored, "a message answered 200 was lost"


async def test_postgres_restarts_while_both_nodes_run(
    cluster: Cluster, private_postgres: PrivatePostgres
) -> None:
    c = cluster
    alice = await register(c.ca)
    bob = await register(c.cb)
    r = c.record(
        await c.ca.put(f"/v1/messages/{bob.number}", json=_message(bob, b"before"), auth=alice.auth)
    )
    assert r.status_code == 200
    try:
        async with load(c, alice, bob) as traffic:
            await until(lambda: traffic.count(200)(4), "the load runs")
            private_postgres.stop()
            await until(lambda: all_down(c, "storage"), "both nodes report the storage down")
            _, deps = await health(c.cb)
            assert deps == {"storage": "down", "fanout": "ok", "ratelimiter": "ok"}
            base_503 = traffic.statuses.count(503)
            await until(lambda: traffic.count(503)(base_503 + 4), "sends get 503 on both nodes")
            for client in (c.ca, c.cb):
                r = c.record(await client.get("/v1/messages/", auth=bob.auth))
                assert r.status_code == 503
                assert r.json()["code"] == 503
                assert "database" in r.json()["error"]
            # A channel needs no database until the PUT authenticates.
            ws = await connect(c.a.ws_url, open_timeout=WAIT_S)
            channel = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["uuid"]
            r = c.record(
                await c.cb.put(f"/v1/messages/{channel}", json=channel_body(), auth=alice.auth)
            )
            assert r.status_code == 503
            await ws.close()

            private_postgres.start()
            await until(lambda: all_healthy(c), "both nodes recover by themselves")
            after = traffic.statuses.count(200)
            await until(lambda: traffic.count(200)(after + 4), "sends succeed through both nodes")
            await assert_channel_relays_across_nodes(c, alice)
    finally:
        if private_postgres_is_down(private_postgres):
            private_postgres.start()  # the module's other tests need it

    assert set(c.statuses) <= {200, 503}, sorted(set(c.statuses))
    stored = set(await drain(c.ca, bob))
    assert b"before" in stored
    assert traffic.accepted <= stored, "a message answered 200 was lost"


def private_postgres_is_down(pg: PrivatePostgres) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", pg.port), timeout=0.5):
            return False
    except OSError:
        return True
