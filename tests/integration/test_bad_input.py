"""Hostile and broken input: always a JSON 4xx, never a 5xx, never a traceback."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.storage.sqlite import SqliteStorage

from .conftest import RunningServer, start_server
from .helpers import TEST_CODE, basic, new_number, new_password, register


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """This module's tests only need fresh numbers: they share one server (conftest)."""
    return shared_server


BODY_LIMIT = 256 * 1024
JSON_ENDPOINTS = [
    ("PUT", "/v1/accounts/code/246810"),
    ("PUT", "/v1/devices/123456789"),
    ("PUT", "/v1/keys"),
    ("PUT", "/v1/messages/+15550001111"),
    ("PUT", "/v1/messages/6f1c7c1e-2a4b-4c53-9b1d-2f0e4b0c9a11"),
]


def assert_json_error(r: httpx.Response, status: int | None = None) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["code"] == r.status_code
    assert isinstance(doc["error"], str)
    assert "Traceback" not in r.text


@pytest.mark.parametrize("method,path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"a": NaN}', b"[" * 5000, b""],
    ids=["truncated", "array", "null", "string", "not-utf8", "nan", "deep", "empty"],
)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, method: str, path: str, raw: bytes
) -> None:
    master = await register(client)
    r = await client.request(
        method, path, content=raw, auth=master.auth, headers={"content-type": "application/json"}
    )
    assert_json_error(r, 400)


@pytest.mark.parametrize("method,path", JSON_ENDPOINTS)
async def test_oversized_body_by_content_length_is_413(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    master = await register(client)
    r = await client.request(method, path, content=b"x" * (BODY_LIMIT + 1), auth=master.auth)
    assert_json_error(r, 413)


async def test_oversized_streamed_body_is_413(client: httpx.AsyncClient) -> None:
    """No Content-Length (chunked): the limit holds while the body streams in."""
    master = await register(client)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 8192

    r = await client.put(f"/v1/messages/{master.number}", content=chunks(), auth=master.auth)
    assert_json_error(r, 413)


async def test_body_just_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    # A message body of ~190 KiB: the JSON stays under 256 KiB and is accepted.
    body = base64.b64encode(b"z" * 190_000).decode()
    msg = {"type": 1, "destinationDeviceId": 1, "destinationRegistrationId": bob.registration_id,
           "body": body}  # fmt: skip
    r = await client.put(f"/v1/messages/{bob.number}", json={"messages": [msg]}, auth=alice.auth)
    assert r.status_code == 200, r.text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Every malformed form is checked against the parser itself (tests/unit/test_basic_auth.py);
# here each endpoint gets one form, a different one each, to show every route answers a parser
# refusal with its exact message as a JSON 401, before it reads the body or spends a guess.
@pytest.mark.parametrize(
    ("method", "path", "header", "message"),
    [
        ("GET", "/v1/devices/", "", "this request needs Basic credentials"),
        ("GET", "/v1/keys/", "Bearer abc", "the Authorization header must be Basic credentials"),
        ("PUT", "/v1/devices/123456789", "Basic " + _b64("+15550001111.0:pw"),
         "the device id in the username is not a positive integer"),
        ("PUT", f"/v1/accounts/code/{TEST_CODE}", "Basic " + _b64("15550001111:pw"),
         "the username must be an E.164 number, optionally with .deviceId"),
        ("GET", "/v1/messages/", "Basic " + "A" * 3000, "the Authorization header is too long"),
    ],
    ids=["devices", "keys", "link", "register", "messages"],
)  # fmt: skip
async def test_wrong_auth_header_forms_are_401(
    open_client: httpx.AsyncClient, method: str, path: str, header: str, message: str
) -> None:
    r = await open_client.request(
        method, path, headers={"Authorization": header}, json={"registrationId": 1}
    )
    assert_json_error(r, 401)
    assert r.json()["error"] == message


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing/here")
    assert_json_error(r, 404)
    r = await client.get("/v1/devices")  # the contract's path has the slash: no redirect
    assert_json_error(r, 404)
    r = await client.post("/v1/keys")
    assert_json_error(r, 405)
    assert "PUT" in r.headers["allow"]
    r = await client.delete("/v1/keys/")
    assert_json_error(r, 405)


async def test_percent_encoded_and_odd_path_values(client: httpx.AsyncClient) -> None:
    master = await register(client)
    assert (
        await client.get(f"/v1/keys/%2B{master.number[1:]}/1", auth=master.auth)
    ).status_code == 404
    for path in ["/v1/keys/%00/1", "/v1/keys/%FF%FE/*", "/v1/accounts/sms/code/%2B1%0A555"]:
        r = await client.get(path, auth=master.auth)
        assert_json_error(r)


class _BrokenStorage(SqliteStorage):
    """A real SQLite store whose device listing hits a bug (not a ProvisionError)."""

    async def list_devices(self, number: str) -> Any:
        raise RuntimeError("simulated bug with a secret in it: hunter2")


async def test_unexpected_error_is_500_json_without_details(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _BrokenStorage(str(tmp_path / "broken.sqlite3"))
    config = ServerConfig(port=0, test_registration_code=TEST_CODE, log_level="warning")
    srv = start_server(config, storage=storage)
    try:
        async with httpx.AsyncClient(base_url=srv.url) as client:
            master = await register(client)
            with caplog.at_level(logging.ERROR):
                r = await client.get("/v1/devices/", auth=master.auth)
            assert r.status_code == 500
            assert r.json() == {"error": "internal error", "code": 500}
            assert "hunter2" not in r.text and "Traceback" not in r.text
            request_id = r.headers["x-request-id"]
            assert any(request_id in rec.getMessage() for rec in caplog.records)
            assert srv.services.metrics.internal_errors == 1
            # The server is fine afterwards.
            assert (await client.get("/health")).status_code == 200
    finally:
        srv.stop()


async def test_secrets_never_reach_the_log(
    open_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        master = await register(open_client)
        code_r = await open_client.get("/v1/devices/provisioning_code", auth=master.auth)
        code = code_r.json()["verificationCode"]
        password = new_password()
        r = await open_client.put(
            f"/v1/devices/{code}", json={"registrationId": 3}, auth=(master.number, password)
        )
        assert r.status_code == 200
        body = base64.b64encode(b"very secret body").decode()
        await open_client.put(
            f"/v1/messages/{master.number}",
            json={"messages": [{"type": 1, "destinationDeviceId": 2,
                                "destinationRegistrationId": 3, "body": body}]},
            auth=master.auth,
        )  # fmt: skip
        await open_client.get("/v1/devices/", auth=(master.number, "x" * 24))
    # The server's own log lines (this process also logs the test's httpx client).
    text = "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("textsecure_provision", "uvicorn"))
    )
    for secret in (master.password, password, code, TEST_CODE, body):
        assert secret not in text
    assert "/v1/devices/{code}" in text  # the access log names the route template


async def test_a_refused_registration_leaves_no_account(client: httpx.AsyncClient) -> None:
    number = new_number()
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}",
        json={"registrationId": "x"},
        headers=basic(number, new_password()),
    )
    assert r.status_code == 400
    r = await client.get("/v1/devices/", headers=basic(number, new_password()))
    assert r.status_code == 401
