"""Messages between devices (§4): send rules, long-poll, acknowledgement."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import httpx
import pytest

from .conftest import RunningServer
from .helpers import Device, link, message, register


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """This module's tests only need fresh numbers: they share one server (conftest)."""
    return shared_server


async def send(
    client: httpx.AsyncClient, sender: Device, number: str, *targets: Device, body: bytes = b"hi"
) -> httpx.Response:
    return await client.put(
        f"/v1/messages/{number}",
        json={"messages": [message(t, body) for t in targets]},
        auth=sender.auth,
    )


async def fetch(client: httpx.AsyncClient, device: Device, wait: float | None = None) -> dict:  # type: ignore[type-arg]
    params = {"wait": str(wait)} if wait is not None else None
    r = await client.get("/v1/messages/", auth=device.auth, params=params)
    assert r.status_code == 200, r.text
    doc: dict = r.json()  # type: ignore[type-arg]
    return doc


async def test_send_fetch_acknowledge(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    r = await send(client, alice, bob.number, bob, body=b"\x00secret\xff")
    assert r.status_code == 200, r.text
    doc = await fetch(client, bob)
    (m,) = doc["messages"]
    assert doc["more"] is False
    assert m["source"] == alice.number
    assert m["sourceDevice"] == 1
    assert m["type"] == 1
    assert m["timestamp"] == 1_700_000_000_000
    assert base64.b64decode(m["body"]) == b"\x00secret\xff"
    # Still there until acknowledged (§4).
    assert (await fetch(client, bob))["messages"] == [m]
    assert (await client.delete(f"/v1/messages/{m['guid']}", auth=bob.auth)).status_code == 200
    assert (await fetch(client, bob))["messages"] == []
    r = await client.delete(f"/v1/messages/{m['guid']}", auth=bob.auth)
    assert r.status_code == 404


async def test_only_the_recipient_can_acknowledge(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    await send(client, alice, bob.number, bob)
    (m,) = (await fetch(client, bob))["messages"]
    assert (await client.delete(f"/v1/messages/{m['guid']}", auth=alice.auth)).status_code == 404
    assert len((await fetch(client, bob))["messages"]) == 1


async def test_other_account_must_cover_every_device_409(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    bob2 = await link(client, bob)
    r = await send(client, alice, bob.number, bob)
    assert r.status_code == 409
    assert r.json()["missingDevices"] == [2]
    assert r.json()["extraDevices"] == []
    assert r.json()["code"] == 409
    ghost = Device(bob.number, 7, "x", 1, bob.identity)
    r = await send(client, alice, bob.number, bob, bob2, ghost)
    assert r.status_code == 409
    assert r.json()["missingDevices"] == []
    assert r.json()["extraDevices"] == [7]
    assert (await send(client, alice, bob.number, bob, bob2)).status_code == 200
    assert len((await fetch(client, bob2))["messages"]) == 1


async def test_stale_registration_id_is_410(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    stale = Device(bob.number, 1, bob.password, bob.registration_id + 1, bob.identity)
    r = await send(client, alice, bob.number, stale)
    assert r.status_code == 410
    assert r.json()["staleDevices"] == [1]
    assert r.json()["code"] == 410


@pytest.mark.parametrize("same_account", [True, False])
@pytest.mark.parametrize("registration_id", [0, None])
async def test_registration_id_zero_or_absent_is_not_checked(
    client: httpx.AsyncClient, same_account: bool, registration_id: int | None
) -> None:
    """Signal-Server's rule: 0 (or no field) is "not checked"; only a non-zero mismatch is 410."""
    master = await register(client)
    second = await link(client, master)
    sender = master if same_account else await register(client)
    targets = [second] if same_account else [master, second]
    items = []
    for t in targets:
        item = message(t, b"hello")
        if registration_id is None:
            del item["destinationRegistrationId"]
        else:
            item["destinationRegistrationId"] = registration_id
        items.append(item)
    r = await client.put(
        f"/v1/messages/{master.number}", json={"messages": items}, auth=sender.auth
    )
    assert r.status_code == 200, r.text
    (m,) = (await fetch(client, second))["messages"]
    assert base64.b64decode(m["body"]) == b"hello"
    # A non-zero mismatch in the same send is still 410 and stores nothing.
    items[-1]["destinationRegistrationId"] = second.registration_id + 1
    r = await client.put(
        f"/v1/messages/{master.number}", json={"messages": items}, auth=sender.auth
    )
    assert r.status_code == 410
    assert r.json()["staleDevices"] == [2]
    assert len((await fetch(client, second))["messages"]) == 1


async def test_same_account_any_subset_never_409(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master)
    third = await link(client, master)
    # The new device tells only the master (§1 step 7): a subset, not 409.
    assert (await send(client, third, master.number, master)).status_code == 200
    assert (await send(client, master, master.number, second)).status_code == 200
    assert (await send(client, master, master.number, second, third)).status_code == 200
    assert len((await fetch(client, master))["messages"]) == 1
    assert len((await fetch(client, second))["messages"]) == 2
    (m,) = (await fetch(client, master))["messages"]
    assert (m["source"], m["sourceDevice"]) == (master.number, 3)


async def test_same_account_stale_and_unknown_devices(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master)
    stale = Device(master.number, 2, "", second.registration_id + 1, master.identity)
    r = await send(client, master, master.number, stale)
    assert r.status_code == 410
    ghost = Device(master.number, 9, "", 1, master.identity)
    r = await send(client, master, master.number, ghost)
    assert r.status_code == 404
    r = await send(client, master, master.number, master)
    assert r.status_code == 400  # a device does not write to itself


async def test_send_to_unknown_number_is_404(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    ghost = Device("+15559990000", 1, "", 1, alice.identity)
    assert (await send(client, alice, ghost.number, ghost)).status_code == 404


@pytest.mark.parametrize(
    "destination,status", [("nobody", 400), ("15550001111", 400), ("1234-5678", 400)]
)
async def test_bad_destination_is_400(
    client: httpx.AsyncClient, destination: str, status: int
) -> None:
    alice = await register(client)
    r = await client.put(
        f"/v1/messages/{destination}", json={"messages": [message(alice)]}, auth=alice.auth
    )
    assert r.status_code == status


@pytest.mark.parametrize(
    "item",
    [
        {"type": "1", "destinationDeviceId": 1, "destinationRegistrationId": 1, "body": "AA=="},
        {"type": 1, "destinationDeviceId": 0, "destinationRegistrationId": 1, "body": "AA=="},
        {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": -1, "body": "AA=="},
        {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": 1, "body": "AA="},
        {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": 1, "body": 5},
        {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": 1},
        {"type": 1, "destinationDeviceId": 1.5, "destinationRegistrationId": 1, "body": "AA=="},
        {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": 1, "body": "AA==",
         "timestamp": "now"},
        "not an object",
    ],
)  # fmt: skip
async def test_malformed_message_is_400(client: httpx.AsyncClient, item: object) -> None:
    alice = await register(client)
    bob = await register(client)
    r = await client.put(f"/v1/messages/{bob.number}", json={"messages": [item]}, auth=alice.auth)
    assert r.status_code == 400, r.text
    r = await client.put(f"/v1/messages/{bob.number}", json={"messages": []}, auth=alice.auth)
    assert r.status_code == 400
    r = await client.put(
        f"/v1/messages/{bob.number}", json={"messages": [message(bob)] * 2}, auth=alice.auth
    )
    assert r.status_code == 400  # the same device twice


async def test_send_and_fetch_need_auth(client: httpx.AsyncClient) -> None:
    bob = await register(client)
    r = await client.put(f"/v1/messages/{bob.number}", json={"messages": [message(bob)]})
    assert r.status_code == 401
    assert (await client.get("/v1/messages/")).status_code == 401
    assert (await client.delete("/v1/messages/abc")).status_code == 401


async def test_long_poll_wakes_on_a_message(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    alice = await register(client)
    bob = await register(client)
    started = time.monotonic()
    poll = asyncio.create_task(fetch(client, bob, wait=20))
    # Send once the poll is parked in the server: wait on the server's own state, not a sleep.
    for _ in range(500):
        if server.parked_long_polls() or poll.done():
            break
        await asyncio.sleep(0.01)
    assert not poll.done()
    r = await send(client, alice, bob.number, bob, body=b"wake up")
    assert r.status_code == 200
    doc = await asyncio.wait_for(poll, 10)
    elapsed = time.monotonic() - started
    assert [base64.b64decode(m["body"]) for m in doc["messages"]] == [b"wake up"]
    assert elapsed < 10, "the long-poll was not woken by the message"


async def test_long_poll_returns_empty_when_the_wait_runs_out(client: httpx.AsyncClient) -> None:
    bob = await register(client)
    started = time.monotonic()
    doc = await fetch(client, bob, wait=0.3)
    assert doc == {"messages": [], "more": False}
    assert time.monotonic() - started >= 0.25


async def test_long_poll_returns_at_once_when_messages_wait(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    await send(client, alice, bob.number, bob)
    started = time.monotonic()
    doc = await fetch(client, bob, wait=30)
    assert len(doc["messages"]) == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["-1", "soon", "nan", "inf"])
async def test_bad_wait_is_400(client: httpx.AsyncClient, wait: str) -> None:
    bob = await register(client)
    r = await client.get("/v1/messages/", auth=bob.auth, params={"wait": wait})
    assert r.status_code == 400


async def test_more_flag_pages_messages(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(max_messages_per_fetch=2)
    async with httpx.AsyncClient(base_url=server.url) as client:
        alice = await register(client)
        bob = await register(client)
        for i in range(3):
            await send(client, alice, bob.number, bob, body=bytes([i]))
        doc = await fetch(client, bob)
        assert [base64.b64decode(m["body"]) for m in doc["messages"]] == [b"\x00", b"\x01"]
        assert doc["more"] is True
        for m in doc["messages"]:
            await client.delete(f"/v1/messages/{m['guid']}", auth=bob.auth)
        doc = await fetch(client, bob)
        assert [base64.b64decode(m["body"]) for m in doc["messages"]] == [b"\x02"]
        assert doc["more"] is False


async def test_message_sends_are_rate_limited(server_factory: Callable[..., RunningServer]) -> None:
    from textsecure_provision.server.config import RateLimits, Rule

    server = server_factory(rate_limits=RateLimits().with_rule("message_send_device", Rule(3, 60)))
    async with httpx.AsyncClient(base_url=server.url) as client:
        alice = await register(client)
        bob = await register(client)
        statuses = [(await send(client, alice, bob.number, bob)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
