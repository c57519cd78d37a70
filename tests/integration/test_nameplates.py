"""The short-code relay over real sockets (routes/nameplates.py), on every backend.

Nameplates are allocated smallest-free and die with their channel (expiry,
close, use); one claim each; burned on a failed confirmation and then refused
to both sides; tokens tell the two sides apart; limits per address and per
account; and a server with short codes off says so.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from textsecure_provision.server.config import RateLimits, Rule

from .conftest import RunningServer
from .helpers import Device, register
from .test_channels import closed_code, open_channel, put_channel

WAIT_S = 5.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_header(token: str) -> dict[str, str]:
    return {"X-Nameplate-Token": token}


async def allocate(client: httpx.AsyncClient, channel: str) -> dict[str, Any]:
    r = await client.post("/v1/nameplates", json={"channel": channel})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert set(doc) == {"nameplate", "token", "expiresIn"}
    return doc


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a condition the server reaches on its own (a channel's close is processed
    in the server's own task), bounded; each try is a real request."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_capabilities_say_short_codes(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/capabilities")
    assert r.status_code == 200 and r.json() == {"shortCodes": True}


async def test_smallest_free_number_reused_after_its_channel_closes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws1, ch1 = await open_channel(server)
    ws2, ch2 = await open_channel(server)
    assert (await allocate(client, ch1))["nameplate"] == 1
    assert (await allocate(client, ch2))["nameplate"] == 2
    master = await register(client)
    await ws1.close()  # channel 1 gone: its nameplate with it

    async def one_is_gone() -> bool:
        r = await client.put("/v1/nameplates/1/claim", auth=master.auth)
        return r.status_code == 404

    await eventually(one_is_gone, "nameplate 1 to die with its channel")
    ws3, ch3 = await open_channel(server)
    assert (await allocate(client, ch3))["nameplate"] == 1
    for ws in (ws2, ws3):
        await ws.close()


async def test_allocate_refuses_bad_unknown_and_second(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws, channel = await open_channel(server)
    await allocate(client, channel)
    again = await client.post("/v1/nameplates", json={"channel": channel})
    assert again.status_code == 409 and again.json()["error"] == (
        "this channel already has a nameplate"
    )
    unknown = await client.post(
        "/v1/nameplates", json={"channel": "9f1c2c57-6a3e-4b8e-9d4f-0b6f8f2d1a77"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "no such open channel"
    for body in ({"channel": "nope"}, {"channel": 5}, {}, [1]):
        r = await client.post("/v1/nameplates", json=body)
        assert r.status_code == 400, (body, r.text)
    await ws.close()


async def test_exchange_claim_once_messages_both_ways(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws, channel = await open_channel(server)
    got = await allocate(client, channel)
    n, secondary = got["nameplate"], got["token"]
    r = await client.put(
        f"/v1/nameplates/{n}/messages",
        json={"messages": [b64(b"pB")]},
        headers=token_header(secondary),
    )
    assert r.status_code == 200, r.text
    master = await register(client)
    assert (await client.put(f"/v1/nameplates/{n}/claim")).status_code == 401  # no credentials
    claim = await client.put(f"/v1/nameplates/{n}/claim", auth=master.auth)
    assert claim.status_code == 200, claim.text
    assert claim.json()["messages"] == [b64(b"pB")]
    mine = claim.json()["token"]
    other = await register(client)
    second = await client.put(f"/v1/nameplates/{n}/claim", auth=other.auth)
    assert second.status_code == 409
    assert second.json()["error"] == "this short code was already used"

    # The secondary's long-poll wakes when the master posts.
    waiting = asyncio.create_task(
        client.get(
            f"/v1/nameplates/{n}/messages",
            params={"after": "0", "wait": "5"},
            headers=token_header(secondary),
        )
    )
    posted = await client.put(
        f"/v1/nameplates/{n}/messages",
        json={"messages": [b64(b"pA"), b64(b"cA")]},
        headers=token_header(mine),
    )
    assert posted.status_code == 200
    answer = await asyncio.wait_for(waiting, WAIT_S)
    assert answer.json() == {"messages": [b64(b"pA"), b64(b"cA")], "claimed": True}
    later = await client.get(
        f"/v1/nameplates/{n}/messages", params={"after": "1"}, headers=token_header(secondary)
    )
    assert later.json()["messages"] == [b64(b"cA")]
    # Each side reads only the other's list.
    own = await client.get(f"/v1/nameplates/{n}/messages", headers=token_header(mine))
    assert own.json()["messages"] == [b64(b"pB")]
    await ws.close()


async def test_tokens_and_bounds(server: RunningServer, client: httpx.AsyncClient) -> None:
    ws, channel = await open_channel(server)
    got = await allocate(client, channel)
    n, token = got["nameplate"], got["token"]
    url = f"/v1/nameplates/{n}/messages"
    for headers in ({}, token_header("not base64"), token_header(b64(b"x"))):
        r = await client.get(url, headers=headers)
        assert r.status_code == 401, (headers, r.text)
    # A well-formed token of no side: as if its (earlier) nameplate were gone.
    r = await client.get(url, headers=token_header(b64(bytes(32))))
    assert r.status_code == 404
    assert r.json()["error"] == "no open short code with this number for this token"
    big = await client.put(url, json={"messages": [b64(bytes(4097))]}, headers=token_header(token))
    assert big.status_code == 413
    many = await client.put(url, json={"messages": [b64(b"m")] * 5}, headers=token_header(token))
    assert many.status_code == 413
    for _ in range(2):
        ok = await client.put(url, json={"messages": [b64(b"m")] * 2}, headers=token_header(token))
        assert ok.status_code == 200
    full = await client.put(url, json={"messages": [b64(b"m")]}, headers=token_header(token))
    assert full.status_code == 413 and full.json()["error"] == "the nameplate's mailbox is full"
    for bad in ({"messages": []}, {"messages": ["%%%"]}, {"messages": [""]}, {"other": 1}):
        r = await client.put(url, json=bad, headers=token_header(token))
        assert r.status_code == 400, (bad, r.text)
    for path in (
        "/v1/nameplates/0/claim",
        "/v1/nameplates/x/claim",
        "/v1/nameplates/1234567/claim",
    ):
        assert (await client.put(path)).status_code == 400
    r = await client.get(url, params={"after": "-1"}, headers=token_header(token))
    assert r.status_code == 400
    await ws.close()


async def test_burned_nameplate_stays_burned_after_its_channel_closes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    """The new device burns and closes its channel at once; the master reads after that and
    must learn of the wrong code (410), not of a gone nameplate (404)."""
    ws, channel = await open_channel(server)
    got = await allocate(client, channel)
    n, secondary = got["nameplate"], got["token"]
    master = await register(client)
    claim = (await client.put(f"/v1/nameplates/{n}/claim", auth=master.auth)).json()
    burned = await client.post(f"/v1/nameplates/{n}/burn", headers=token_header(secondary))
    assert burned.status_code == 200
    await ws.close()
    probe_ws, probe_channel = await open_channel(server)

    async def channel_is_gone() -> bool:
        return (await put_channel(client, master, channel)).status_code == 404

    await eventually(channel_is_gone, "the burned nameplate's channel to close")
    read = await client.get(f"/v1/nameplates/{n}/messages", headers=token_header(claim["token"]))
    assert read.status_code == 410, read.text
    # Nor is its number handed to the next channel while it answers 410.
    assert (await allocate(client, probe_channel))["nameplate"] != n
    await probe_ws.close()


async def test_burned_nameplate_refuses_both_sides(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws, channel = await open_channel(server)
    got = await allocate(client, channel)
    n, secondary = got["nameplate"], got["token"]
    master = await register(client)
    claim = (await client.put(f"/v1/nameplates/{n}/claim", auth=master.auth)).json()
    waiting = asyncio.create_task(
        client.get(
            f"/v1/nameplates/{n}/messages",
            params={"wait": "5"},
            headers=token_header(claim["token"]),
        )
    )
    burned = await client.post(f"/v1/nameplates/{n}/burn", headers=token_header(secondary))
    assert burned.status_code == 200
    told = await asyncio.wait_for(waiting, WAIT_S)  # the master's wait ends at once
    assert told.status_code == 410
    assert told.json()["error"] == "this short code is burned: a wrong code was tried"
    for token in (secondary, claim["token"]):
        r = await client.put(
            f"/v1/nameplates/{n}/messages",
            json={"messages": [b64(b"x")]},
            headers=token_header(token),
        )
        assert r.status_code == 410
    again = await client.put(f"/v1/nameplates/{n}/claim", auth=(await register(client)).auth)
    assert again.status_code == 410
    # Burning twice is still fine; a stranger cannot burn.
    assert (
        await client.post(f"/v1/nameplates/{n}/burn", headers=token_header(secondary))
    ).status_code == 200
    assert (
        await client.post(f"/v1/nameplates/{n}/burn", headers=token_header(b64(bytes(32))))
    ).status_code == 404
    await ws.close()


async def test_nameplate_expires_with_its_channel(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(channel_ttl_s=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as client:
        ws, channel = await open_channel(server)
        got = await allocate(client, channel)
        assert got["expiresIn"] == 0  # whole seconds: under one
        master = await register(client)
        assert await closed_code(ws) == 1001  # the channel expired
        r = await client.put(f"/v1/nameplates/{got['nameplate']}/claim", auth=master.auth)
        assert r.status_code == 404
        assert r.json()["error"] == "no open short code with this number"


async def test_nameplate_dies_when_its_channel_is_used(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    ws, channel = await open_channel(server)
    got = await allocate(client, channel)
    master = await register(client)
    assert (await put_channel(client, master, channel)).status_code == 200
    r = await client.put(f"/v1/nameplates/{got['nameplate']}/claim", auth=master.auth)
    assert r.status_code == 404
    r = await client.get(
        f"/v1/nameplates/{got['nameplate']}/messages", headers=token_header(got["token"])
    )
    assert r.status_code == 404
    await ws.close()


async def test_claims_are_limited_per_account_and_per_address(
    server_factory: Callable[..., RunningServer],
) -> None:
    limits = (
        RateLimits.off()
        .with_rule("nameplate_claim_account", Rule(2, 3600))
        .with_rule("nameplate_claim_address", Rule(4, 3600))
    )
    server = server_factory(rate_limits=limits)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as client:
        one: Device = await register(client)
        statuses = [
            (await client.put(f"/v1/nameplates/{n}/claim", auth=one.auth)).status_code
            for n in (11, 12, 13)
        ]
        assert statuses == [404, 404, 429]
        two = await register(client)
        statuses = [
            (await client.put(f"/v1/nameplates/{n}/claim", auth=two.auth)).status_code
            for n in (14, 15)
        ]
        assert statuses == [404, 429]  # the address's 4 are spent (3 + 1)
        r = await client.put("/v1/nameplates/16/claim", auth=two.auth)
        assert r.status_code == 429 and r.headers["retry-after"].isdigit()


async def test_short_codes_off(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(short_codes=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as client:
        assert (await client.get("/v1/capabilities")).json() == {"shortCodes": False}
        ws, channel = await open_channel(server)
        r = await client.post("/v1/nameplates", json={"channel": channel})
        assert r.status_code == 404
        assert r.json()["error"] == "this server does not offer links by short code"
        master = await register(client)
        assert (await client.put("/v1/nameplates/1/claim", auth=master.auth)).status_code == 404
        await ws.close()


async def test_unknown_nameplate(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nameplates/1/messages", headers=token_header(b64(bytes(32))))
    assert r.status_code == 404
    assert r.json()["error"] == "no open short code with this number"
