"""Small clients for the integration tests: register a master, link devices, build key uploads."""

from __future__ import annotations

import base64
import itertools
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.crypto.signing import sign

TEST_CODE = "246810"
_numbers = itertools.count(1)


def new_number() -> str:
    """A fresh E.164 number per call (unique within a run, random across runs)."""
    return f"+1555{secrets.randbelow(1000):03d}{next(_numbers):04d}"


def new_password() -> str:
    return base64.b64encode(os.urandom(18)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Device:
    number: str
    device_id: int
    password: str = field(repr=False)
    registration_id: int
    identity: KeyPair = field(repr=False)

    @property
    def username(self) -> str:
        return self.number if self.device_id == 1 else f"{self.number}.{self.device_id}"

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.username, self.password)


async def register(client: httpx.AsyncClient, number: str | None = None, **attrs: Any) -> Device:
    number = number or new_number()
    r = await client.get(f"/v1/accounts/sms/code/{number}")
    assert r.status_code == 200, r.text
    password = new_password()
    registration_id = secrets.randbelow(16380) + 1
    r = await client.put(
        f"/v1/accounts/code/{TEST_CODE}",
        json={"registrationId": registration_id, "fetchesMessages": True, **attrs},
        auth=(number, password),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"deviceId": 1}
    return Device(number, 1, password, registration_id, KeyPair.generate())


async def provisioning_code(client: httpx.AsyncClient, device: Device) -> str:
    r = await client.get("/v1/devices/provisioning_code", auth=device.auth)
    assert r.status_code == 200, r.text
    code: str = r.json()["verificationCode"]
    return code


async def link(client: httpx.AsyncClient, master: Device, **attrs: Any) -> Device:
    code = await provisioning_code(client, master)
    password = new_password()
    registration_id = secrets.randbelow(16380) + 1
    r = await client.put(
        f"/v1/devices/{code}",
        json={"registrationId": registration_id, "fetchesMessages": True, **attrs},
        auth=(master.number, password),
    )
    assert r.status_code == 200, r.text
    return Device(master.number, r.json()["deviceId"], password, registration_id, master.identity)


def keys_body(
    identity: KeyPair,
    *,
    prekeys: int = 3,
    start_id: int = 1,
    last_resort: bool = True,
    signed_id: int = 7,
) -> dict[str, Any]:
    spk = KeyPair.generate()
    spk_pub = spk.public.serialize()
    body: dict[str, Any] = {
        "identityKey": b64(identity.public.serialize()),
        "signedPreKey": {
            "keyId": signed_id,
            "publicKey": b64(spk_pub),
            "signature": b64(sign(identity.private, spk_pub)),
        },
        "preKeys": [
            {"keyId": start_id + i, "publicKey": b64(KeyPair.generate().public.serialize())}
            for i in range(prekeys)
        ],
    }
    if last_resort:
        body["lastResortKey"] = {
            "keyId": 0xFFFFFF,
            "publicKey": b64(KeyPair.generate().public.serialize()),
        }
    return body


async def upload_keys(client: httpx.AsyncClient, device: Device, **kw: Any) -> dict[str, Any]:
    body = keys_body(device.identity, **kw)
    r = await client.put("/v1/keys", json=body, auth=device.auth)
    assert r.status_code == 200, r.text
    return body


def message(device: Device, body: bytes = b"hello", type_: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "destinationDeviceId": device.device_id,
        "destinationRegistrationId": device.registration_id,
        "body": b64(body),
        "timestamp": 1_700_000_000_000,
    }
