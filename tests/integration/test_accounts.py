"""Registering a master (§4): code request, registration, code delivery modes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest

from textsecure_provision.server.config import RateLimits, Rule

from .conftest import RunningServer
from .helpers import TEST_CODE, basic, new_number, new_password, register


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """This module's tests only need fresh numbers: they share one server (conftest)."""
    return shared_server


async def test_register_makes_device_1(client: httpx.AsyncClient) -> None:
    master = await register(client, name="phone")
    r = await client.get("/v1/devices/", auth=master.auth)
    assert r.status_code == 200
    (device,) = r.json()["devices"]
    assert device["id"] == 1
    assert device["name"] == "phone"
    # number.1 is the same device as the bare number (§4 Auth).
    r = await client.get("/v1/devices/", auth=(f"{master.number}.1", master.password))
    assert r.status_code == 200


@pytest.mark.parametrize("number", ["15550001111", "+1555", "+1555000111122233344", "+1555abc1111"])
async def test_code_request_for_a_bad_number_is_400(client: httpx.AsyncClient, number: str) -> None:
    r = await client.get(f"/v1/accounts/sms/code/{number}")
    assert r.status_code == 400
    assert r.json()["code"] == 400


async def test_wrong_registration_code_is_403(client: httpx.AsyncClient) -> None:
    number = new_number()
    r = await client.put(
        "/v1/accounts/code/999999", json={"registrationId": 5}, auth=(number, new_password())
    )
    assert r.status_code == 403
    assert r.json()["code"] == 403


async def test_registration_needs_credentials(client: httpx.AsyncClient) -> None:
    r = await client.put(f"/v1/accounts/code/{TEST_CODE}", json={"registrationId": 5})
    assert r.status_code == 401


async def test_registration_with_a_device_id_other_than_1_is_401(client: httpx.AsyncClient) -> None:
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}",
        json={"registrationId": 5},
        auth=(f"{new_number()}.2", new_password()),
    )
    assert r.status_code == 401


@pytest.mark.parametrize("password", ["short", "AAAAAAAAAAAAAAAAAAAA", "not base64 at all!!!!!!!"])
async def test_weak_or_non_base64_password_is_400(client: httpx.AsyncClient, password: str) -> None:
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}", json={"registrationId": 5}, auth=(new_number(), password)
    )
    assert r.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"registrationId": "5"},
        {"registrationId": True},
        {"registrationId": -1},
        {"registrationId": 2**32},
        {"registrationId": 5, "fetchesMessages": "yes"},
        {"registrationId": 5, "name": 7},
        {"registrationId": 5, "name": "x" * 300},
    ],
)
async def test_bad_device_attributes_are_400(client: httpx.AsyncClient, body: object) -> None:
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}", json=body, auth=(new_number(), new_password())
    )
    assert r.status_code == 400, r.text


async def test_re_registration_replaces_the_account(client: httpx.AsyncClient) -> None:
    old = await register(client)
    new = await register(client, number=old.number)
    assert (await client.get("/v1/devices/", auth=old.auth)).status_code == 401
    assert (await client.get("/v1/devices/", auth=new.auth)).status_code == 200


async def test_log_delivery_writes_the_code_and_accepts_it_once(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory(test_registration_code=None, registration_codes="log")
    number = new_number()
    async with httpx.AsyncClient(base_url=server.url) as client:
        with caplog.at_level(logging.WARNING, "textsecure_provision.server.registration_codes"):
            r = await client.get(f"/v1/accounts/sms/code/{number}")
        assert r.status_code == 200
        (line,) = [m for m in caplog.messages if "REGISTRATION CODE" in m]
        code = re.search(rf"{re.escape(number)}: ([0-9]+)", line).group(1)  # type: ignore[union-attr]
        # The fixed test code is not accepted in log mode.
        password = new_password()
        r = await client.put(
            f"/v1/accounts/code/{TEST_CODE}", json={"registrationId": 1}, auth=(number, password)
        )
        assert r.status_code == 403
        r = await client.put(
            f"/v1/accounts/code/{code}", json={"registrationId": 1}, auth=(number, password)
        )
        assert r.status_code == 200
        r = await client.put(
            f"/v1/accounts/code/{code}", json={"registrationId": 1}, auth=(number, password)
        )
        assert r.status_code == 403  # single use


async def test_logged_code_expires(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory(test_registration_code=None, registration_codes="log")
    number = new_number()
    async with httpx.AsyncClient(base_url=server.url) as client:
        with caplog.at_level(logging.WARNING, "textsecure_provision.server.registration_codes"):
            await client.get(f"/v1/accounts/sms/code/{number}")
        code = caplog.messages[-1].split(": ")[1].split()[0]
        server.clock.advance(601)
        r = await client.put(
            f"/v1/accounts/code/{code}", json={"registrationId": 1}, auth=(number, new_password())
        )
        assert r.status_code == 403


async def test_code_requests_are_rate_limited_with_retry_after(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(rate_limits=RateLimits().with_rule("sms_code_number", Rule(2, 3600)))
    number = new_number()
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(2):
            assert (await client.get(f"/v1/accounts/sms/code/{number}")).status_code == 200
        r = await client.get(f"/v1/accounts/sms/code/{number}")
        assert r.status_code == 429
        assert r.json()["code"] == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 1800
        # Another number is not affected by this number's limit.
        assert (await client.get(f"/v1/accounts/sms/code/{new_number()}")).status_code == 200


async def test_registration_guesses_are_cut_off(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory()
    number = new_number()
    async with httpx.AsyncClient(base_url=server.url) as client:
        statuses = []
        for guess in range(20):
            r = await client.put(
                f"/v1/accounts/code/{100000 + guess}",
                json={"registrationId": 1},
                auth=(number, new_password()),
            )
            statuses.append(r.status_code)
        assert set(statuses) == {403, 429}
        assert statuses.index(429) <= 10
        # Once cut off, even the right code is refused until the wait is over.
        r = await client.put(
            f"/v1/accounts/code/{TEST_CODE}",
            json={"registrationId": 1},
            auth=(number, new_password()),
        )
        assert r.status_code == 429


async def test_malformed_auth_header_on_registration_is_401(client: httpx.AsyncClient) -> None:
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}",
        json={"registrationId": 1},
        headers=basic("not-a-number", new_password()),
    )
    assert r.status_code == 401
