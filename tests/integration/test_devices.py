"""Provisioning codes, linking, listing and unlinking devices (§4)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from textsecure_provision.server.config import RateLimits

from .conftest import RunningServer
from .helpers import (
    link,
    message,
    new_number,
    new_password,
    provisioning_code,
    register,
    upload_keys,
)


async def put_code(
    client: httpx.AsyncClient, number: str, code: str, password: str | None = None
) -> httpx.Response:
    return await client.put(
        f"/v1/devices/{code}",
        json={"registrationId": 77, "fetchesMessages": True, "name": "laptop"},
        auth=(number, password or new_password()),
    )


async def test_provisioning_code_is_nine_digits_without_leading_zero(
    client: httpx.AsyncClient,
) -> None:
    master = await register(client)
    codes = {await provisioning_code(client, master) for _ in range(5)}
    for code in codes:
        # It travels as a uint32 in IdentityKey.provisioningCode (§6) and back to text.
        assert re.fullmatch(r"[1-9][0-9]{8}", code)
        assert str(int(code)) == code and int(code) < 2**32


async def test_link_a_device(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master, name="laptop")
    assert second.device_id == 2
    r = await client.get("/v1/devices/", auth=second.auth)
    assert r.status_code == 200
    devices = r.json()["devices"]
    assert [d["id"] for d in devices] == [1, 2]
    assert devices[1]["name"] == "laptop"
    assert all(isinstance(d["created"], int) and isinstance(d["lastSeen"], int) for d in devices)
    # The new device can itself ask for a code (§4: "a device of the account").
    assert (await client.get("/v1/devices/provisioning_code", auth=second.auth)).status_code == 200


async def test_code_is_single_use(client: httpx.AsyncClient) -> None:
    master = await register(client)
    code = await provisioning_code(client, master)
    assert (await put_code(client, master.number, code)).status_code == 200
    r = await put_code(client, master.number, code)
    assert r.status_code == 403
    assert r.json()["code"] == 403


async def test_a_second_code_does_not_void_the_first(client: httpx.AsyncClient) -> None:
    """A code belongs to a link: a second scan of the same QR (or a second master) asks for
    another code, and the first link still completes with the code its DeviceInit carries."""
    master = await register(client)
    first = await provisioning_code(client, master)
    second = await provisioning_code(client, master)
    assert first != second
    assert (await put_code(client, master.number, first)).status_code == 200
    assert (await put_code(client, master.number, second)).status_code == 200
    r = await client.get("/v1/devices/", auth=master.auth)
    assert [d["id"] for d in r.json()["devices"]] == [1, 2, 3]
    # Each stays single use.
    assert (await put_code(client, master.number, first)).status_code == 403


async def test_at_most_five_codes_outstanding_oldest_dropped(client: httpx.AsyncClient) -> None:
    master = await register(client)
    codes = [await provisioning_code(client, master) for _ in range(6)]
    r = await put_code(client, master.number, codes[0])
    assert r.status_code == 403  # the oldest went first
    assert "wrong, expired or already used" in r.json()["error"]
    for code in codes[1:4]:
        assert (await put_code(client, master.number, code)).status_code == 200


async def test_codes_of_one_account_do_not_link_another(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    code = await provisioning_code(client, alice)
    assert (await put_code(client, bob.number, code)).status_code == 403
    assert (await put_code(client, alice.number, code)).status_code == 200


async def test_code_expires_after_ten_minutes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    code = await provisioning_code(client, master)
    server.clock.advance(9 * 60)
    still = await provisioning_code(client, master)  # (and check a fresh one works near the edge)
    server.clock.advance(10 * 60 + 1)
    assert (await put_code(client, master.number, code)).status_code == 403
    assert (await put_code(client, master.number, still)).status_code == 403


async def test_code_of_another_account_is_403(client: httpx.AsyncClient) -> None:
    a = await register(client)
    b = await register(client)
    code = await provisioning_code(client, a)
    assert (await put_code(client, b.number, code)).status_code == 403
    assert (await put_code(client, a.number, code)).status_code == 200


async def test_provisioning_code_needs_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/devices/provisioning_code")).status_code == 401


async def test_link_with_a_device_id_in_the_username_is_401(client: httpx.AsyncClient) -> None:
    master = await register(client)
    code = await provisioning_code(client, master)
    r = await client.put(
        f"/v1/devices/{code}",
        json={"registrationId": 1},
        auth=(f"{master.number}.2", new_password()),
    )
    assert r.status_code == 401
    # The refused request did not burn the code.
    assert (await put_code(client, master.number, code)).status_code == 200


async def test_bad_body_does_not_burn_the_code(client: httpx.AsyncClient) -> None:
    master = await register(client)
    code = await provisioning_code(client, master)
    r = await client.put(
        f"/v1/devices/{code}", json={"registrationId": "x"}, auth=(master.number, new_password())
    )
    assert r.status_code == 400
    r = await client.put(
        f"/v1/devices/{code}", json={"registrationId": 1}, auth=(master.number, "weak")
    )
    assert r.status_code == 400
    assert (await put_code(client, master.number, code)).status_code == 200


async def test_device_limit_is_411(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(max_devices=3)
    async with httpx.AsyncClient(base_url=server.url) as client:
        master = await register(client)
        await link(client, master)
        code = await provisioning_code(client, master)
        assert (await put_code(client, master.number, code)).status_code == 200
        r = await client.get("/v1/devices/provisioning_code", auth=master.auth)
        assert r.status_code == 411
        assert r.json()["code"] == 411


async def test_device_limit_on_link_is_411(server_factory: Callable[..., RunningServer]) -> None:
    """A full account answers 411 to a link attempt, before any code is looked at."""
    server = server_factory(max_devices=2)
    async with httpx.AsyncClient(base_url=server.url) as client:
        master = await register(client)
        await link(client, master)
        r = await put_code(client, master.number, "123456789")
        assert r.status_code == 411
        assert r.json()["code"] == 411


async def test_default_device_limit_is_six(open_client: httpx.AsyncClient) -> None:
    master = await register(open_client)
    for _ in range(5):
        await link(open_client, master)
    r = await open_client.get("/v1/devices/provisioning_code", auth=master.auth)
    assert r.status_code == 411


async def test_unlink_removes_credentials_keys_and_messages(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master)
    second = await link(client, master)
    await upload_keys(client, second)
    r = await client.put(
        f"/v1/messages/{master.number}", json={"messages": [message(second)]}, auth=master.auth
    )
    assert r.status_code == 200
    assert (await client.delete("/v1/devices/2", auth=master.auth)).status_code == 200
    assert (await client.get("/v1/devices/", auth=second.auth)).status_code == 401
    r = await client.get(f"/v1/keys/{master.number}/2", auth=master.auth)
    assert r.status_code == 404
    r = await client.get("/v1/devices/", auth=master.auth)
    assert [d["id"] for d in r.json()["devices"]] == [1]
    # Ids are not reused: the next device is 3, and it has no leftover messages.
    third = await link(client, master)
    assert third.device_id == 3
    r = await client.get("/v1/messages/", auth=third.auth)
    assert r.json() == {"messages": [], "more": False}


async def test_a_device_can_unlink_itself(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master)
    assert (await client.delete("/v1/devices/2", auth=second.auth)).status_code == 200
    assert (await client.get("/v1/devices/", auth=second.auth)).status_code == 401


async def test_device_1_cannot_be_unlinked(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master)
    r = await client.delete("/v1/devices/1", auth=second.auth)
    assert r.status_code == 403
    assert r.json()["code"] == 403


@pytest.mark.parametrize("target,status", [("9", 404), ("0", 400), ("abc", 400), ("-2", 400)])
async def test_unlink_unknown_or_malformed_id(
    client: httpx.AsyncClient, target: str, status: int
) -> None:
    master = await register(client)
    r = await client.delete(f"/v1/devices/{target}", auth=master.auth)
    assert r.status_code == status


async def test_unlink_needs_auth(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/v1/devices/2")).status_code == 401
    assert (await client.get("/v1/devices/")).status_code == 401


async def test_another_account_cannot_unlink(client: httpx.AsyncClient) -> None:
    a = await register(client)
    await link(client, a)
    b = await register(client)
    assert (await client.delete("/v1/devices/2", auth=b.auth)).status_code == 404
    r = await client.get("/v1/devices/", auth=a.auth)
    assert len(r.json()["devices"]) == 2


# -- brute force ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule_name", ["code_guess_number", "code_guess_address"])
async def test_wrong_codes_are_cut_off_at_the_rules_count(
    server_factory: Callable[..., RunningServer], rule_name: str
) -> None:
    """A guesser gets exactly the rule's budget of wrong codes, then 429 (each rule alone:
    the other one is lifted, so the count asserted is this rule's)."""
    from textsecure_provision.server.config import Rule

    other = {"code_guess_number": "code_guess_address"}.get(rule_name, "code_guess_number")
    rule = Rule(7, 3600)
    limits = RateLimits().with_rule(rule_name, rule).with_rule(other, None)
    server = server_factory(rate_limits=limits)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await _guess_until_cut_off(client, rule.count)


async def _guess_until_cut_off(client: httpx.AsyncClient, count: int) -> None:
    master = await register(client)
    code = await provisioning_code(client, master)
    statuses = []
    for guess in range(20):
        wrong = str(100_000_000 + guess) if str(100_000_000 + guess) != code else "999999999"
        statuses.append((await put_code(client, master.number, wrong)).status_code)
    assert 429 in statuses
    first_refusal = statuses.index(429)
    assert first_refusal == count
    assert set(statuses[:first_refusal]) == {403}
    assert set(statuses[first_refusal:]) == {429}
    # Cut off for this number: even the right code waits (the guesser cannot slip it in).
    r = await put_code(client, master.number, code)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1


async def test_guesses_are_limited_per_address_across_numbers(
    server_factory: Callable[..., RunningServer],
) -> None:
    from textsecure_provision.server.config import Rule

    limits = RateLimits().with_rule("code_guess_address", Rule(5, 3600))
    server = server_factory(rate_limits=limits)
    async with httpx.AsyncClient(base_url=server.url) as client:
        statuses = [
            (await put_code(client, new_number(), "123456789")).status_code for _ in range(8)
        ]
    assert statuses[:5] == [403] * 5
    assert statuses[5:] == [429] * 3
    assert server.services.metrics.rate_limit_refusals["code_guess_address"] == 3


async def test_wrong_passwords_are_cut_off_per_address(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as client:
        master = await register(client)
        statuses = [
            (await client.get("/v1/devices/", auth=(master.number, new_password()))).status_code
            for _ in range(35)
        ]
        assert statuses[:30] == [401] * 30
        assert set(statuses[30:]) == {429}
        # Refused before hashing, even with the right password, until the wait is over.
        assert (await client.get("/v1/devices/", auth=master.auth)).status_code == 429
