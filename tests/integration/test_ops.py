"""/health, /metrics and /openapi.json, and the document matching real answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from textsecure_provision.errors import ServiceUnavailableError
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.storage.sqlite import SqliteStorage

from .conftest import RunningServer, start_server
from .helpers import TEST_CODE, link, message, register, upload_keys


async def test_health_reports_each_dependency(client: httpx.AsyncClient, backend: str) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok"
    assert set(doc["dependencies"]) == {"storage", "fanout", "ratelimiter"}
    assert all(d["status"] == "ok" for d in doc["dependencies"].values())
    deps = doc["dependencies"]
    if backend == "sqlite":
        assert deps["storage"]["backend"].startswith("sqlite:")
        assert deps["fanout"]["backend"].startswith("memory")
    else:
        assert deps["storage"]["backend"].startswith("postgresql://")
        assert deps["fanout"]["backend"].startswith("redis://")
        assert deps["ratelimiter"]["backend"].startswith("redis://")


class _DownStorage(SqliteStorage):
    down = False

    async def check(self) -> None:
        if self.down:
            raise ServiceUnavailableError("the database is unavailable; try again")
        await super().check()


async def test_health_is_503_when_storage_is_down(tmp_path: Any) -> None:
    storage = _DownStorage(str(tmp_path / "h.sqlite3"))
    srv = start_server(
        ServerConfig(port=0, test_registration_code=TEST_CODE, log_level="warning"),
        storage=storage,
    )
    try:
        async with httpx.AsyncClient(base_url=srv.url) as client:
            storage.down = True
            r = await client.get("/health")
            assert r.status_code == 503
            assert r.json()["status"] == "degraded"
            assert r.json()["dependencies"]["storage"]["status"] == "down"
            assert r.json()["dependencies"]["fanout"]["status"] == "ok"
            storage.down = False
            assert (await client.get("/health")).status_code == 200
    finally:
        srv.stop()


async def test_metrics_count_what_happens(
    server_factory: Callable[..., RunningServer],
) -> None:
    from textsecure_provision.server.config import RateLimits, Rule

    server = server_factory(rate_limits=RateLimits().with_rule("sms_code_number", Rule(2, 3600)))
    async with httpx.AsyncClient(base_url=server.url) as client:
        master = await register(client)
        await upload_keys(client, master)
        second = await link(client, master)
        await client.put(
            f"/v1/messages/{master.number}", json={"messages": [message(second)]}, auth=master.auth
        )
        for _ in range(3):
            await client.get(f"/v1/accounts/sms/code/{master.number}")
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "provision_links_completed_total 1" in text
    assert "provision_accounts_registered_total 1" in text
    assert "provision_messages_stored_total 1" in text
    assert 'provision_rate_limit_refusals_total{rule="sms_code_number"} 2' in text
    assert re.search(
        r'provision_request_duration_seconds_count\{method="PUT",route="/v1/devices/\{code\}",'
        r'status="200"\} 1',
        text,
    )
    # Route templates only: no concrete number or code in the metrics.
    assert master.number not in text


# -- the OpenAPI document ---------------------------------------------------------------------


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def test_openapi_lists_exactly_the_routes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {
        (_template(path), method.upper()) for path, item in doc["paths"].items() for method in item
    }
    served = {
        (_template(route.path), method)
        for route in server.app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert documented == served


async def test_openapi_document_is_valid(server: RunningServer) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    from textsecure_provision.server.openapi import openapi_document

    validator.validate(openapi_document(ServerConfig(), server.app.routes))


def _check(doc: dict[str, Any], path: str, method: str, r: httpx.Response) -> None:
    """The answer's status is documented for the operation and its body fits the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    responses = doc["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, f"{method} {path}: {r.status_code} not documented"
    content = responses[str(r.status_code)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(r.json())


async def test_real_answers_match_the_document(open_client: httpx.AsyncClient) -> None:
    client = open_client
    doc = (await client.get("/openapi.json")).json()
    master = await register(client)
    _check(
        doc,
        "/v1/accounts/sms/code/{number}",
        "get",
        await client.get(f"/v1/accounts/sms/code/{master.number}"),
    )
    _check(
        doc, "/v1/accounts/sms/code/{number}", "get", await client.get("/v1/accounts/sms/code/123")
    )
    _check(
        doc,
        "/v1/accounts/code/{code}",
        "put",
        await client.put(
            "/v1/accounts/code/1", json={"registrationId": 1}, auth=(master.number, master.password)
        ),
    )
    body = await upload_keys(client, master)
    _check(doc, "/v1/keys", "put", await client.put("/v1/keys", json=body, auth=master.auth))
    _check(doc, "/v1/keys/", "get", await client.get("/v1/keys/", auth=master.auth))
    _check(
        doc,
        "/v1/devices/provisioning_code",
        "get",
        await client.get("/v1/devices/provisioning_code", auth=master.auth),
    )
    second = await link(client, master)
    _check(doc, "/v1/devices/", "get", await client.get("/v1/devices/", auth=master.auth))
    _check(
        doc,
        "/v1/devices/{code}",
        "put",
        await client.put("/v1/devices/1", json={"registrationId": 1}, auth=master.auth),
    )
    await upload_keys(client, second)
    _check(
        doc,
        "/v1/keys/{number}/{device}",
        "get",
        await client.get(f"/v1/keys/{master.number}/*", auth=master.auth),
    )
    _check(
        doc,
        "/v1/keys/{number}/{device}",
        "get",
        await client.get(f"/v1/keys/{master.number}/9", auth=master.auth),
    )
    other = await register(client)
    _check(
        doc,
        "/v1/messages/{destination}",
        "put",
        await client.put(
            f"/v1/messages/{master.number}", json={"messages": [message(master)]}, auth=other.auth
        ),
    )
    _check(
        doc,
        "/v1/messages/{destination}",
        "put",
        await client.put(
            f"/v1/messages/{master.number}",
            json={"messages": [message(master), message(second)]},
            auth=other.auth,
        ),
    )
    r = await client.get("/v1/messages/", auth=master.auth)
    _check(doc, "/v1/messages/", "get", r)
    _check(
        doc,
        "/v1/messages/{destination}",
        "delete",
        await client.delete(f"/v1/messages/{r.json()['messages'][0]['guid']}", auth=master.auth),
    )
    _check(
        doc,
        "/v1/messages/{destination}",
        "delete",
        await client.delete("/v1/messages/nope", auth=master.auth),
    )
    _check(
        doc, "/v1/devices/{code}", "delete", await client.delete("/v1/devices/1", auth=master.auth)
    )
    _check(
        doc, "/v1/devices/{code}", "delete", await client.delete("/v1/devices/2", auth=master.auth)
    )
    _check(doc, "/v1/temp_websocket", "get", await client.get("/v1/temp_websocket"))
    _check(doc, "/health", "get", await client.get("/health"))
    _check(doc, "/v1/keys/", "get", await client.get("/v1/keys/"))
    _check(doc, "/v1/keys", "put", await client.post("/v1/keys"))
