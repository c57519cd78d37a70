"""The server's 400 for a malformed body is the declared body's sentence, end to end: the
field by its path, never its value (protocol/bodies.py, protocol/refusals.py)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from .conftest import RunningServer
from .helpers import keys_body, message, register

CHANNEL = "6f1c7c1e-2a4b-4c53-9b1d-2f0e4b0c9a11"


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """Only fresh numbers are needed: one shared server (conftest)."""
    return shared_server


async def _refusal(
    client: httpx.AsyncClient, path: str, body: Any, auth: Any, raw: bytes | None = None
) -> str:
    if raw is None:
        r = await client.put(path, json=body, auth=auth)
    else:
        r = await client.put(path, content=raw, auth=auth)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["code"] == 400
    return str(doc["error"])


async def test_keys_refusals_name_the_field(client: httpx.AsyncClient) -> None:
    master = await register(client)
    body = keys_body(master.identity, prekeys=3)
    body["preKeys"][2]["publicKey"] = base64.b64encode(b"\x05" + bytes(31)).decode()
    assert await _refusal(client, "/v1/keys", body, master.auth) == (
        "preKeys[2].publicKey must be 33 bytes, got 32"
    )
    body = keys_body(master.identity)
    body["signedPreKey"]["keyId"] = 2**32
    assert await _refusal(client, "/v1/keys", body, master.auth) == (
        "signedPreKey.keyId must be between 0 and 4294967295"
    )
    assert await _refusal(client, "/v1/keys", None, master.auth, raw=b"") == (
        "the request needs a JSON body"
    )
    assert await _refusal(client, "/v1/keys", None, master.auth, raw=b"[1]") == (
        "the body must be a JSON object"
    )


async def test_message_refusals_name_the_field(client: httpx.AsyncClient) -> None:
    alice = await register(client)
    bob = await register(client)
    item = {**message(bob), "timestamp": 2**63}
    assert await _refusal(
        client, f"/v1/messages/{bob.number}", {"messages": [item]}, alice.auth
    ) == ("messages[0].timestamp must be between 0 and 9223372036854775807")
    item = {**message(bob), "body": "AA="}
    assert await _refusal(
        client, f"/v1/messages/{bob.number}", {"messages": [item]}, alice.auth
    ) == ("messages[0].body is not valid base64")
    # A channel needs only a body; two messages are still one too many.
    two = {"messages": [{"body": "AA=="}, {"body": "AA=="}]}
    assert await _refusal(client, f"/v1/messages/{CHANNEL}", two, alice.auth) == (
        "a temp channel takes exactly one message"
    )


async def test_device_attribute_refusals_name_the_field(client: httpx.AsyncClient) -> None:
    master = await register(client)
    r = await client.get("/v1/devices/provisioning_code", auth=master.auth)
    code = r.json()["verificationCode"]
    password = base64.b64encode(bytes(18)).decode()
    r = await client.put(
        f"/v1/devices/{code}",
        json={"registrationId": 5, "name": "x" * 257},
        auth=(master.number, password),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "name must be a string of at most 256 characters"
