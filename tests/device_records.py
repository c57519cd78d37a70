"""A device's record with real keys, for the tests of the data folder (store, sessions)."""

from __future__ import annotations

from typing import Any

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.prekeys import (
    LAST_RESORT_KEY_ID,
    PreKey,
    generate_prekeys,
    generate_signed_prekey,
)
from textsecure_provision.store import DeviceRecord


def device_record(number: str = "+15550001111", device_id: int = 1, **fields: Any) -> DeviceRecord:
    """A linked device's record (fresh keys each call); ``fields`` override the rest."""
    identity = KeyPair.generate()
    values: dict[str, Any] = {
        "number": number,
        "device_id": device_id,
        "password": "cGFzc3dvcmRwYXNzd29yZA==",
        "server": "http://127.0.0.1:8080",
        "registration_id": 1234,
        "identity": identity,
        "signed_prekey": generate_signed_prekey(identity, 7),
        "prekeys": tuple(generate_prekeys(100, 3)),
        "last_resort_key": PreKey(LAST_RESORT_KEY_ID, KeyPair.generate()),
        "created_ms": 1_700_000_000_000,
        **fields,
    }
    return DeviceRecord(**values)
