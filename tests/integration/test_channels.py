"""Temp channels (§4.1) over a real websocket and real PUTs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from textsecure_provision.server.config import RateLimits, Rule, SocketBudgets

from .conftest import RunningServer
from .helpers import Device, b64, register

DEVICE_INIT = bytes(range(200))  # stands in for a DeviceInit: the relay never looks inside
WAIT_S = 5.0


async def open_channel(server: RunningServer) -> tuple[ClientConnection, str]:
    ws = await connect(server.ws_url, open_timeout=WAIT_S)
    first = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert set(first) == {"uuid"}
    assert str(uuid.UUID(first["uuid"])) == first["uuid"]  # lowercase canonical (§3)
    return ws, first["uuid"]


def channel_body(body: bytes = DEVICE_INIT) -> dict[str, object]:
    # The shape the client sends (transport/api.send_to_channel).
    return {
        "messages": [
            {
                "type": 0,
                "destinationDeviceId": 1,
                "destinationRegistrationId": 0,
                "body": b64(body),
                "timestamp": 1,
            }
        ]
    }


async def put_channel(client: httpx.AsyncClient, master: Device, channel: str) -> httpx.Response:
    return await client.put(f"/v1/messages/{channel}", json=channel_body(), auth=master.auth)


async def closed_code(ws: ClientConnection) -> int | None:
    try:
        await asyncio.wait_for(ws.recv(), WAIT_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    raise AssertionError("the channel sent a second frame")


async def test_uuid_first_then_one_message_then_close_1000(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    r = await put_channel(client, master, channel)
    assert r.status_code == 200, r.text
    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert frame == {"message": b64(DEVICE_INIT)}
    assert await closed_code(ws) == 1000
    # A channel receives at most one message (§4.1 step 3).
    again = await put_channel(client, master, channel)
    assert again.status_code == 404
    assert again.json()["code"] == 404
    assert server.services.metrics.channel_messages_delivered == 1


async def test_uppercase_uuid_reaches_the_channel(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    r = await put_channel(client, master, channel.upper())
    assert r.status_code == 200
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["message"] == b64(DEVICE_INIT)


async def test_expiry_closes_1001_and_later_put_is_404(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(channel_ttl_s=0.3)
    async with httpx.AsyncClient(base_url=server.url) as client:
        master = await register(client)
        ws, channel = await open_channel(server)
        assert await closed_code(ws) == 1001
        r = await put_channel(client, master, channel)
        assert r.status_code == 404
        assert server.services.metrics.channels_expired == 1


@pytest.mark.parametrize(
    ("junk", "codes"),
    [
        pytest.param("junk that the channel does not carry", {1008}, id="text"),
        pytest.param(b"\x00\xff" * 10, {1008}, id="binary"),
        pytest.param("x" * 100_000, {1008, 1009}, id="oversized"),
    ],
)
async def test_client_sending_anything_closes_the_channel(
    server: RunningServer, client: httpx.AsyncClient, junk: str | bytes, codes: set[int]
) -> None:
    # §4.1 step 4: the channel carries nothing from the client; it closes, never a 500.
    master = await register(client)
    ws, channel = await open_channel(server)
    await ws.send(junk)
    assert await closed_code(ws) in codes
    assert (await put_channel(client, master, channel)).status_code == 404
    assert server.services.metrics.internal_errors == 0


async def test_client_that_leaves_takes_the_channel_with_it(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    await ws.close()
    # The server unregisters the channel when it sees the close; wait for that, not a sleep.
    for _ in range(200):
        if server.services.metrics.open_channels == 0:
            break
        await asyncio.sleep(0.01)
    assert server.services.metrics.open_channels == 0
    assert (await put_channel(client, master, channel)).status_code == 404


async def test_two_concurrent_puts_exactly_one_wins(
    open_server: RunningServer, open_client: httpx.AsyncClient
) -> None:
    master = await register(open_client)
    for _ in range(10):
        ws, channel = await open_channel(open_server)
        results = await asyncio.gather(
            put_channel(open_client, master, channel), put_channel(open_client, master, channel)
        )
        assert sorted(r.status_code for r in results) == [200, 404]
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert frame["message"] == b64(DEVICE_INIT)
        assert await closed_code(ws) == 1000


async def test_put_to_unknown_channel_is_404(client: httpx.AsyncClient) -> None:
    master = await register(client)
    r = await put_channel(client, master, str(uuid.uuid4()))
    assert r.status_code == 404
    assert r.json() == {"error": r.json()["error"], "code": 404}


async def test_put_to_channel_needs_an_authenticated_device(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    r = await client.put(f"/v1/messages/{channel}", json=channel_body())
    assert r.status_code == 401
    r = await client.put(
        f"/v1/messages/{channel}", json=channel_body(), auth=(master.number, "wrong" * 6)
    )
    assert r.status_code == 401
    # The refused PUTs did not use the channel up.
    assert (await put_channel(client, master, channel)).status_code == 200
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["message"] == b64(DEVICE_INIT)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [channel_body()["messages"][0]] * 2},  # type: ignore[index]
        {"messages": [{"body": "not base64!"}]},
        {"messages": [{"type": 0}]},
        {"messages": ["string"]},
        {"messages": {"body": "AAAA"}},
    ],
    ids=["none", "two", "bad-b64", "no-body", "not-object", "not-list"],
)
async def test_malformed_channel_put_is_400_and_keeps_the_channel(
    server: RunningServer, client: httpx.AsyncClient, body: object
) -> None:
    master = await register(client)
    _ws, channel = await open_channel(server)
    r = await client.put(f"/v1/messages/{channel}", json=body, auth=master.auth)
    assert r.status_code == 400, r.text
    assert (await put_channel(client, master, channel)).status_code == 200


async def test_minimal_channel_message_needs_only_a_body(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    r = await client.put(
        f"/v1/messages/{channel}", json={"messages": [{"body": b64(b"x")}]}, auth=master.auth
    )
    assert r.status_code == 200
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)) == {"message": b64(b"x")}


async def test_channel_creation_is_rate_limited_per_address(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(
        rate_limits=RateLimits().with_rule("channel_create_address", Rule(2, 3600))
    )
    sockets = [await open_channel(server) for _ in range(2)]
    with pytest.raises(InvalidStatus) as info:
        await connect(server.ws_url, open_timeout=WAIT_S)
    response = info.value.response
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.body)["code"] == 429
    assert server.services.metrics.rate_limit_refusals["channel_create_address"] == 1
    for ws, _ in sockets:
        await ws.close()


async def test_plain_get_on_the_websocket_path_is_426(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/temp_websocket")
    assert r.status_code == 426
    assert r.json()["code"] == 426


async def test_open_channels_gauge_follows_sockets(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws1, _ = await open_channel(server)
    ws2, _ = await open_channel(server)
    metrics = (await client.get("/metrics")).text
    assert "provision_open_channels 2" in metrics
    assert "provision_channels_opened_total 2" in metrics
    await ws1.close()
    await ws2.close()


async def test_expiry_after_a_shorter_handshake_deadline_comes_on_time(
    server_factory: Callable[..., RunningServer],
) -> None:
    """The socket's one timer was armed for the handshake deadline (0.2 s); the channel, open
    by then, moved it later (the 0.6 s expiry): it fires, re-arms, and the channel closes
    with 1001 at its expiry, not at the handshake deadline."""
    server = server_factory(channel_ttl_s=0.6, sockets=SocketBudgets(head_timeout_s=0.2))
    ws, _channel = await open_channel(server)
    opened = time.monotonic()
    assert await closed_code(ws) == 1001
    assert time.monotonic() - opened >= 0.5
    assert server.services.metrics.channels_expired == 1
