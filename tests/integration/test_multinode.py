"""Two relay nodes sharing PostgreSQL and Redis: any node serves any request.

Node A runs in this process (uvicorn in a thread, so the test can see its
fan-out); node B is a real ``provision server --db postgresql://… --redis …``
process. Both use a fresh schema and Redis prefix for this module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from textsecure_provision.server.config import RateLimits, Rule, ServerConfig

from .conftest import RunningServer, SharedServices, backend_fields, start_server
from .helpers import TEST_CODE, b64, new_number, new_password, provisioning_code, register
from .test_channels import channel_body

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WAIT_S = 10.0
SMS_LIMIT = Rule(2, 3600)  # the limit the cross-node test spends


@dataclass
class Pair:
    a: RunningServer
    b_url: str
    fields: dict[str, object]

    @property
    def a_ws(self) -> str:
        return self.a.ws_url

    @property
    def b_ws(self) -> str:
        return self.b_url.replace("http://", "ws://", 1) + "/v1/temp_websocket"


def _spawn_node(folder: Path, fields: dict[str, object]) -> tuple[subprocess.Popen[bytes], str]:
    port_file = folder / "b.url"
    log = folder / "b.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    env["XDG_DATA_HOME"] = str(folder / "xdg")
    args = [sys.executable, "-m", "textsecure_provision", "server", "--port", "0",
            "--port-file", str(port_file), "--db", str(fields["db_url"]),
            "--redis", str(fields["redis_url"]), "--redis-prefix", str(fields["redis_prefix"]),
            "--test-registration-code", TEST_CODE, "--log-level", "warning",
            "--rate-limit", f"sms_code_number={SMS_LIMIT.count}/{SMS_LIMIT.period_s:g}",
            "--rate-limit", "sms_code_address=off"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("node B exited:\n" + log.read_text())
        if port_file.exists():
            return proc, port_file.read_text().strip()
        time.sleep(0.05)  # another process's file: nothing to wait on but the file itself
    proc.kill()
    raise AssertionError("node B did not start:\n" + log.read_text())


@pytest.fixture(scope="module")
def pair(
    shared_services: SharedServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("multinode")
    fields = backend_fields("postgres", folder, shared_services, shared_services.new_scope())(
        "relay"
    )
    # B first: it creates the schema; A then finds it migrated (two nodes, one schema).
    proc, b_url = _spawn_node(folder, fields)
    a = start_server(
        ServerConfig(
            port=0,
            test_registration_code=TEST_CODE,
            log_level="warning",
            # Every client here is 127.0.0.1, one address registering dozens of numbers.
            rate_limits=RateLimits()
            .with_rule("sms_code_number", SMS_LIMIT)
            .with_rule("sms_code_address", None),
            **fields,  # type: ignore[arg-type]
        )
    )
    try:
        yield Pair(a, b_url, fields)
    finally:
        a.stop()
        proc.terminate()
        try:
            assert proc.wait(15) == 0, (folder / "b.log").read_text()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


@pytest.fixture
async def clients(pair: Pair) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=pair.a.url, timeout=WAIT_S) as a,
        httpx.AsyncClient(base_url=pair.b_url, timeout=WAIT_S) as b,
    ):
        yield a, b


async def _open(ws_url: str) -> tuple[object, str]:
    ws = await connect(ws_url, open_timeout=WAIT_S)
    first = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return ws, first["uuid"]


async def _receive_one_frame(ws: object) -> tuple[dict[str, str], int | None]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))  # type: ignore[attr-defined]
    try:
        await asyncio.wait_for(ws.recv(), WAIT_S)  # type: ignore[attr-defined]
    except ConnectionClosed as exc:
        return frame, exc.rcvd.code if exc.rcvd is not None else None
    raise AssertionError("the channel sent a second frame")


async def test_health_names_postgres_and_redis_on_both_nodes(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    for client in clients:
        r = await client.get("/health")
        assert r.status_code == 200, r.text
        deps = r.json()["dependencies"]
        assert deps["storage"]["backend"].startswith("postgresql://")
        assert deps["fanout"]["backend"].startswith("redis://")
        assert deps["ratelimiter"]["backend"].startswith("redis://")
    # Two nodes, two node ids.
    fanouts = [
        (await c.get("/health")).json()["dependencies"]["fanout"]["backend"] for c in clients
    ]
    assert fanouts[0] != fanouts[1]


@pytest.mark.parametrize("holder", ["a", "b"])
async def test_channel_on_one_node_put_through_the_other(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient], holder: str
) -> None:
    a, b = clients
    master = await register(a)
    ws, channel = await _open(pair.a_ws if holder == "a" else pair.b_ws)
    via = b if holder == "a" else a  # always the node that does not hold the channel
    r = await via.put(f"/v1/messages/{channel}", json=channel_body(b"init"), auth=master.auth)
    assert r.status_code == 200, r.text
    frame, code = await _receive_one_frame(ws)
    assert frame == {"message": b64(b"init")}
    assert code == 1000
    # Used up, on every node.
    for client in (a, b):
        r = await client.put(f"/v1/messages/{channel}", json=channel_body(), auth=master.auth)
        assert r.status_code == 404
        assert r.json()["code"] == 404


async def test_racing_puts_on_both_nodes_deliver_exactly_once(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    master = await register(a)
    for ws_url in (pair.a_ws, pair.b_ws):
        ws, channel = await _open(ws_url)
        bodies = [f"racer {i}".encode() for i in range(8)]
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).put(
                    f"/v1/messages/{channel}", json=channel_body(body), auth=master.auth
                )
                for i, body in enumerate(bodies)
            )
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200] + [404] * 7
        winner = bodies[[r.status_code for r in results].index(200)]
        frame, code = await _receive_one_frame(ws)
        assert frame == {"message": b64(winner)}  # the frame is the 200's body
        assert code == 1000


async def test_a_channel_closed_on_a_is_404_through_b(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    master = await register(a)
    ws, channel = await _open(pair.a_ws)
    before = pair.a.services.fanout.local_channels()
    await ws.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + WAIT_S
    while pair.a.services.fanout.local_channels() >= before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # waiting on the server's own state
    r = await b.put(f"/v1/messages/{channel}", json=channel_body(), auth=master.auth)
    assert r.status_code == 404
    r = await b.put(f"/v1/messages/{uuid.uuid4()}", json=channel_body(), auth=master.auth)
    assert r.status_code == 404


async def test_a_channel_whose_node_died_is_404_not_a_hang(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """A node that dies without cleaning up leaves its keys until they expire: the PUT
    claims one, finds no node listening on that node's topic, and answers 404 at once."""
    _, b = clients
    master = await register(b)
    channel = str(uuid.uuid4())
    redis = Redis.from_url(str(pair.fields["redis_url"]))
    try:
        await redis.set(f"{pair.fields['redis_prefix']}ch:{channel}", "deadbeef" * 4, px=60_000)
        started = time.monotonic()
        r = await b.put(f"/v1/messages/{channel}", json=channel_body(), auth=master.auth)
        assert r.status_code == 404
        assert time.monotonic() - started < 2.0  # no waiting for an answer that cannot come
        assert await redis.exists(f"{pair.fields['redis_prefix']}ch:{channel}") == 0  # claimed
    finally:
        await redis.aclose()


async def test_long_poll_on_a_is_woken_by_a_store_on_b(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    alice = await register(b)
    bob = await register(a)
    parked_before = pair.a.parked_long_polls()
    started = time.monotonic()
    poll = asyncio.create_task(a.get("/v1/messages/", params={"wait": "20"}, auth=bob.auth))
    deadline = time.monotonic() + WAIT_S
    while pair.a.parked_long_polls() <= parked_before and not poll.done():
        assert time.monotonic() < deadline, "the long-poll never parked"
        await asyncio.sleep(0.01)  # waiting on the server's own state
    assert not poll.done()
    message = {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": bob.registration_id,
               "body": b64(b"across nodes"), "timestamp": 1}  # fmt: skip
    r = await b.put(f"/v1/messages/{bob.number}", json={"messages": [message]}, auth=alice.auth)
    assert r.status_code == 200, r.text
    r = await asyncio.wait_for(poll, WAIT_S)
    assert r.status_code == 200
    (got,) = r.json()["messages"]
    assert base64.b64decode(got["body"]) == b"across nodes"
    assert got["source"] == alice.number
    assert time.monotonic() - started < 10, "woken by the message, not by the 20 s timeout"


async def test_provisioning_code_from_a_is_used_on_b_once(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    master = await register(a)
    code = await provisioning_code(a, master)
    body = {"registrationId": 77, "fetchesMessages": True}
    r = await b.put(f"/v1/devices/{code}", json=body, auth=(master.number, new_password()))
    assert r.status_code == 200, r.text
    assert r.json() == {"deviceId": 2}
    # Single use across nodes.
    r = await a.put(f"/v1/devices/{code}", json=body, auth=(master.number, new_password()))
    assert r.status_code == 403
    r = await b.get("/v1/devices/", auth=master.auth)
    assert [d["id"] for d in r.json()["devices"]] == [1, 2]


async def test_a_limit_spent_on_a_holds_on_b(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    number = new_number()
    for _ in range(SMS_LIMIT.count):
        assert (await a.get(f"/v1/accounts/sms/code/{number}")).status_code == 200
    r = await b.get(f"/v1/accounts/sms/code/{number}")
    assert r.status_code == 429
    assert r.json()["code"] == 429
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    assert (await a.get(f"/v1/accounts/sms/code/{number}")).status_code == 429
    # Another number is untouched: the bucket is per number.
    assert (await b.get(f"/v1/accounts/sms/code/{new_number()}")).status_code == 200


async def test_many_long_polls_on_a_all_woken_by_sends_on_b(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """Bursts of subscriptions and wake-ups at once (one Redis subscription per device)."""
    a, b = clients
    n = 40
    sender = await register(b)
    devices = await asyncio.gather(*(register(a) for _ in range(n)))
    parked_before = pair.a.parked_long_polls()
    polls = [
        asyncio.create_task(a.get("/v1/messages/", params={"wait": "20"}, auth=d.auth))
        for d in devices
    ]
    deadline = time.monotonic() + WAIT_S
    while pair.a.parked_long_polls() < parked_before + n:
        assert time.monotonic() < deadline, "the long-polls never all parked"
        await asyncio.sleep(0.01)  # waiting on the server's own state
    sends = await asyncio.gather(
        *(
            b.put(
                f"/v1/messages/{d.number}",
                json={
                    "messages": [
                        {
                            "type": 1,
                            "destinationDeviceId": 1,
                            "destinationRegistrationId": d.registration_id,
                            "body": b64(d.number.encode()),
                            "timestamp": 1,
                        }
                    ]
                },
                auth=sender.auth,
            )
            for d in devices
        )
    )
    assert [r.status_code for r in sends] == [200] * n
    answers = await asyncio.wait_for(asyncio.gather(*polls), WAIT_S)
    for device, r in zip(devices, answers, strict=True):
        assert r.status_code == 200
        assert [base64.b64decode(m["body"]) for m in r.json()["messages"]] == [
            device.number.encode()
        ]


# -- links by short code across nodes -------------------------------------------------------


async def test_nameplates_are_shared_and_claimed_once_across_nodes(
    pair: Pair, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    ws_a, channel_a = await _open(pair.a_ws)
    ws_b, channel_b = await _open(pair.b_ws)
    on_a = (await a.post("/v1/nameplates", json={"channel": channel_a})).json()
    on_b = (await b.post("/v1/nameplates", json={"channel": channel_b})).json()
    assert on_a["nameplate"] != on_b["nameplate"]  # one numbering for the whole deployment
    masters = [await register(a), await register(b)]
    claims = await asyncio.gather(
        a.put(f"/v1/nameplates/{on_b['nameplate']}/claim", auth=masters[0].auth),
        b.put(f"/v1/nameplates/{on_b['nameplate']}/claim", auth=masters[1].auth),
    )
    assert sorted(r.status_code for r in claims) == [200, 409]
    for ws in (ws_a, ws_b):
        await ws.close()


async def test_link_by_code_nameplate_on_a_master_on_b(pair: Pair, tmp_path: Path) -> None:
    """The new device opens its channel and nameplate on node A; the master claims and
    runs the exchange on node B (one deployment, A's URL its canonical name)."""
    from textsecure_provision.flows.config import FlowConfig
    from textsecure_provision.flows.devices import credentials
    from textsecure_provision.flows.master import link_master
    from textsecure_provision.flows.register import register_account
    from textsecure_provision.flows.secondary import ListenOptions, listen_secondary
    from textsecure_provision.flows.shortcode import learn_link_by_code
    from textsecure_provision.flows.ui import RecordingUi
    from textsecure_provision.protocol.shortcode import parse_code
    from textsecure_provision.store import DeviceRecord, DeviceStore
    from textsecure_provision.transport.api import ApiClient

    number = new_number()
    master = FlowConfig(data_dir=str(tmp_path / "master"), server_url=pair.a.url)
    await register_account(master, RecordingUi(), number, code=TEST_CODE)
    codes: asyncio.Queue[str] = asyncio.Queue()

    class CodeUi(RecordingUi):
        def channel_opened(self, link: str, **kw: object) -> None:
            super().channel_opened(link, **kw)  # type: ignore[arg-type]
            codes.put_nowait(str(kw["code"]))

    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=pair.a.url)
    listening = asyncio.create_task(
        listen_secondary(secondary, CodeUi(), ListenOptions(expect_number=number))
    )
    code = parse_code(await asyncio.wait_for(codes.get(), WAIT_S))
    record = DeviceStore(master.data_dir).require_record()
    async with ApiClient(pair.b_url, credentials(record)) as on_b:
        link = await learn_link_by_code(on_b, code, pair.a.url, secrets.token_bytes)
    m_ui = RecordingUi()
    result = await link_master(master, m_ui, link)
    linked = await asyncio.wait_for(listening, WAIT_S)
    assert isinstance(linked, DeviceRecord) and linked.device_id == 2
    assert m_ui.names() == ["link_parsed", "sent"]
    assert result.number == number
