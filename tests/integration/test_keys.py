"""Key upload, count and bundles (§4, §7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from json_edit import DELETE, edited  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.crypto.keys import KeyPair

from .conftest import RunningServer
from .helpers import Device, b64, keys_body, link, register, upload_keys


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """This module's tests only need fresh numbers: they share one server (conftest)."""
    return shared_server


VECTORS = Path(__file__).resolve().parents[1] / "vectors"


async def test_upload_then_count(client: httpx.AsyncClient) -> None:
    master = await register(client)
    r = await client.get("/v1/keys/", auth=master.auth)
    assert r.json() == {"count": 0}
    await upload_keys(client, master, prekeys=5)
    r = await client.get("/v1/keys/", auth=master.auth)
    assert r.status_code == 200
    assert r.json() == {"count": 5}
    # An upload replaces the one-time prekeys; it does not add to them.
    await upload_keys(client, master, prekeys=2, start_id=100)
    assert (await client.get("/v1/keys/", auth=master.auth)).json() == {"count": 2}


async def test_count_needs_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/keys/")).status_code == 401
    assert (await client.put("/v1/keys", json={})).status_code == 401


async def test_identity_key_must_match_the_account(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master)
    other = KeyPair.generate()
    r = await client.put("/v1/keys", json=keys_body(other), auth=master.auth)
    assert r.status_code == 409
    assert r.json()["code"] == 409
    second = await link(client, master)
    r = await client.put("/v1/keys", json=keys_body(other), auth=second.auth)
    assert r.status_code == 409
    # The secondary holds the master's identity key pair (§5): that one is accepted.
    await upload_keys(client, second)


async def test_secondary_cannot_set_the_identity_key_first(client: httpx.AsyncClient) -> None:
    master = await register(client)
    second = await link(client, master)
    r = await client.put("/v1/keys", json=keys_body(second.identity), auth=second.auth)
    assert r.status_code == 409


async def test_bad_signature_is_400(client: httpx.AsyncClient) -> None:
    master = await register(client)
    body = keys_body(master.identity)
    sig = bytearray(__import__("base64").b64decode(body["signedPreKey"]["signature"]))
    sig[5] ^= 1
    body["signedPreKey"]["signature"] = b64(bytes(sig))
    r = await client.put("/v1/keys", json=body, auth=master.auth)
    assert r.status_code == 400
    # Signed by another key: also refused.
    body = keys_body(master.identity)
    body["signedPreKey"]["signature"] = keys_body(KeyPair.generate())["signedPreKey"]["signature"]
    assert (await client.put("/v1/keys", json=body, auth=master.auth)).status_code == 400


async def test_libaxolotl_2014_signature_is_accepted(client: httpx.AsyncClient) -> None:
    """Bob's keys from the independent libaxolotl vector: sign bit in bit 7 of byte 63 (§7)."""
    bob = json.loads((VECTORS / "session_v3.json").read_text())["bob"]
    signature = bytes.fromhex(bob["signed_prekey"]["signature"])
    assert signature[63] & 0x80
    identity = KeyPair.from_private(bytes.fromhex(bob["identity_private"]))
    master = await register(client)
    body = {
        "identityKey": b64(bytes.fromhex(bob["identity_public"])),
        "signedPreKey": {
            "keyId": bob["signed_prekey"]["id"],
            "publicKey": b64(bytes.fromhex(bob["signed_prekey"]["public"])),
            "signature": b64(signature),
        },
        "preKeys": [
            {
                "keyId": bob["one_time_prekey"]["id"],
                "publicKey": b64(bytes.fromhex(bob["one_time_prekey"]["public"])),
            }
        ],
    }
    r = await client.put("/v1/keys", json=body, auth=master.auth)
    assert r.status_code == 200, r.text
    asker = await register(client)
    r = await client.get(f"/v1/keys/{master.number}/1", auth=asker.auth)
    doc = r.json()
    assert doc["identityKey"] == b64(identity.public.serialize())
    assert doc["devices"][0]["signedPreKey"]["signature"] == b64(signature)
    assert doc["devices"][0]["preKey"]["keyId"] == 31


async def test_too_many_prekeys_is_413(client: httpx.AsyncClient) -> None:
    master = await register(client)
    body = keys_body(master.identity, prekeys=201)
    r = await client.put("/v1/keys", json=body, auth=master.auth)
    assert r.status_code == 413
    assert r.json()["code"] == 413
    await upload_keys(client, master, prekeys=200)


def _mutations() -> list[tuple[str, Any]]:
    identity = KeyPair.from_private(bytes(range(32)))
    base = keys_body(identity)
    short_key = b64(b"\x05" + bytes(31))
    wrong_type = b64(b"\x06" + bytes(32))

    def mutate(path: list[Any], value: Any) -> dict[str, Any]:
        return edited(base, path, value)

    return [
        ("identity-32-bytes", mutate(["identityKey"], short_key)),
        ("identity-type-byte", mutate(["identityKey"], wrong_type)),
        ("identity-not-b64", mutate(["identityKey"], "%%%")),
        (
            "sig-unpadded",
            mutate(["signedPreKey", "signature"], base["signedPreKey"]["signature"].rstrip("=")),
        ),
        (
            "sig-urlsafe",
            mutate(
                ["signedPreKey", "signature"],
                base["signedPreKey"]["signature"].replace("/", "_").replace("+", "-")
                if any(c in base["signedPreKey"]["signature"] for c in "+/")
                else "-_-_" * 22,
            ),
        ),
        ("identity-number", mutate(["identityKey"], 5)),
        ("identity-missing", mutate(["identityKey"], DELETE)),
        ("spk-missing", mutate(["signedPreKey"], DELETE)),
        ("spk-list", mutate(["signedPreKey"], [])),
        ("spk-key-short", mutate(["signedPreKey", "publicKey"], short_key)),
        ("spk-sig-short", mutate(["signedPreKey", "signature"], b64(bytes(63)))),
        ("spk-id-string", mutate(["signedPreKey", "keyId"], "7")),
        ("spk-id-negative", mutate(["signedPreKey", "keyId"], -7)),
        ("spk-id-huge", mutate(["signedPreKey", "keyId"], 2**40)),
        ("prekeys-object", mutate(["preKeys"], {})),
        ("prekeys-missing", mutate(["preKeys"], DELETE)),
        ("prekey-not-object", mutate(["preKeys", 0], "x")),
        ("prekey-key-long", mutate(["preKeys", 0, "publicKey"], b64(b"\x05" + bytes(33)))),
        ("prekey-id-bool", mutate(["preKeys", 0, "keyId"], True)),
        ("prekey-dup-id", mutate(["preKeys", 1, "keyId"], base["preKeys"][0]["keyId"])),
        ("last-resort-bad", mutate(["lastResortKey", "publicKey"], "AAAA")),
        ("last-resort-string", mutate(["lastResortKey"], "x")),
    ]




_MUTATIONS = _mutations()


@pytest.mark.parametrize("body", [b for _, b in _MUTATIONS], ids=[n for n, _ in _MUTATIONS])
async def test_malformed_upload_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    master = await register(client)
    r = await client.put("/v1/keys", json=body, auth=master.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400


async def _fetch(client: httpx.AsyncClient, asker: Device, number: str, device: str) -> Any:
    r = await client.get(f"/v1/keys/{number}/{device}", auth=asker.auth)
    return r


async def test_each_one_time_prekey_goes_out_once_then_last_resort(
    client: httpx.AsyncClient,
) -> None:
    master = await register(client)
    body = await upload_keys(client, master, prekeys=2, start_id=10)
    asker = await register(client)
    seen = []
    for _ in range(4):
        r = await _fetch(client, asker, master.number, "1")
        assert r.status_code == 200
        (dev,) = r.json()["devices"]
        assert dev["deviceId"] == 1
        assert dev["registrationId"] == master.registration_id
        assert dev["signedPreKey"] == body["signedPreKey"]
        seen.append(dev["preKey"])
    assert [p["keyId"] for p in seen[:2]] == [10, 11]
    assert seen[2] == seen[3] == body["lastResortKey"]
    assert (await client.get("/v1/keys/", auth=master.auth)).json() == {"count": 0}


async def test_without_last_resort_the_bundle_has_no_prekey(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master, prekeys=1, last_resort=False)
    asker = await register(client)
    first = (await _fetch(client, asker, master.number, "1")).json()["devices"][0]
    second = (await _fetch(client, asker, master.number, "1")).json()["devices"][0]
    assert "preKey" in first
    assert "preKey" not in second
    assert "signedPreKey" in second


async def test_star_covers_every_device_but_the_asker(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master)
    second = await link(client, master)
    await upload_keys(client, second)
    third = await link(client, master)
    await upload_keys(client, third)
    r = await _fetch(client, second, master.number, "*")
    assert r.status_code == 200
    assert [d["deviceId"] for d in r.json()["devices"]] == [1, 3]
    assert r.json()["identityKey"] == b64(master.identity.public.serialize())
    stranger = await register(client)
    r = await _fetch(client, stranger, master.number, "*")
    assert [d["deviceId"] for d in r.json()["devices"]] == [1, 2, 3]


async def test_star_skips_devices_without_keys(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master)
    await link(client, master)  # device 2 never uploads
    stranger = await register(client)
    r = await _fetch(client, stranger, master.number, "*")
    assert [d["deviceId"] for d in r.json()["devices"]] == [1]
    assert (await _fetch(client, stranger, master.number, "2")).status_code == 404


@pytest.mark.parametrize(
    "number,device,status",
    [
        ("+15559999999", "*", 404),
        ("+15559999999", "1", 404),
        ("OWN", "9", 404),
        ("OWN", "abc", 400),
        ("OWN", "0", 400),
        ("not-a-number", "1", 400),
    ],
)
async def test_fetch_errors(
    client: httpx.AsyncClient, number: str, device: str, status: int
) -> None:
    master = await register(client)
    await upload_keys(client, master)
    asker = await register(client)
    target = master.number if number == "OWN" else number
    r = await _fetch(client, asker, target, device)
    assert r.status_code == status
    assert r.json()["code"] == status


async def test_fetch_needs_auth(client: httpx.AsyncClient) -> None:
    master = await register(client)
    await upload_keys(client, master)
    assert (await client.get(f"/v1/keys/{master.number}/*")).status_code == 401
