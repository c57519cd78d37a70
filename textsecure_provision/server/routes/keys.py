"""Prekeys (§4, §7): upload, count, and hand out bundles (each one-time prekey once)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.crypto.keys import PublicKey
from textsecure_provision.crypto.signing import verify
from textsecure_provision.errors import (
    InvalidInputError,
    TooLargeError,
)
from textsecure_provision.protocol.bodies import KeysUpload, PreKey
from textsecure_provision.protocol.encoding import b64encode, parse_phone_number
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.policy import keys
from textsecure_provision.server.services import authenticate, services
from textsecure_provision.server.storage.base import KeyBundle, PreKeyRecord, SignedPreKeyRecord
from textsecure_provision.server.validation import parse_device_id, read_body


def _prekey(key: PreKey) -> PreKeyRecord:
    return PreKeyRecord(key_id=key.key_id, public_key=key.public_key)


async def upload_keys(request: Request) -> Response:
    """``PUT /v1/keys``: 400 malformed or bad signature, 401, 409 identity key differs,
    413 too many one-time prekeys.

    The account's identity key is set by device 1's first upload; every later
    upload, by any device, must carry the same key (§4). The signed prekey's
    signature is checked over its 33-byte serialization (§7), in XEdDSA or
    libaxolotl-2014 form (crypto/signing.verify).
    """
    svc = services(request)
    device = await authenticate(request)
    body = await read_body(request, KeysUpload)
    identity_key = body.identity_key
    spk = body.signed_pre_key
    signed = SignedPreKeyRecord(
        key_id=spk.key_id, public_key=spk.public_key, signature=spk.signature
    )
    if len(body.pre_keys) > svc.config.max_prekeys:
        raise TooLargeError(f"at most {svc.config.max_prekeys} one-time prekeys per upload")
    prekeys = [_prekey(p) for p in body.pre_keys]
    last_resort = None if body.last_resort_key is None else _prekey(body.last_resort_key)
    if not verify(PublicKey.from_bytes(identity_key), signed.public_key, signed.signature):
        raise InvalidInputError("the signed prekey's signature does not verify")

    await keys.upload(svc, device, identity_key, signed, prekeys, last_resort)
    return json_response({})


async def prekey_count(request: Request) -> Response:
    """``GET /v1/keys/``: how many one-time prekeys this device has left (401)."""
    svc = services(request)
    device = await authenticate(request)
    return json_response(
        {"count": await svc.storage.count_prekeys(device.number, device.device_id)}
    )


def _bundle_json(bundle: KeyBundle) -> dict[str, Any]:
    assert bundle.signed_prekey is not None
    spk = bundle.signed_prekey
    out: dict[str, Any] = {
        "deviceId": bundle.device_id,
        "registrationId": bundle.registration_id,
        "signedPreKey": {
            "keyId": spk.key_id,
            "publicKey": b64encode(spk.public_key),
            "signature": b64encode(spk.signature),
        },
    }
    if bundle.prekey is not None:
        out["preKey"] = {
            "keyId": bundle.prekey.key_id,
            "publicKey": b64encode(bundle.prekey.public_key),
        }
    return out


async def fetch_keys(request: Request) -> Response:
    """``GET /v1/keys/{number}/{deviceId or *}`` (401, 404, 429; 400 malformed).

    ``*`` covers every device that has uploaded keys, except the asking device
    itself when it asks for its own account (it would only burn its own
    prekey). Each one-time prekey goes out once; then the last-resort key.
    429 past ``key_fetch_pair`` (per asking device and target).
    """
    svc = services(request)
    device = await authenticate(request)
    number = parse_phone_number(request.path_params["number"])
    which = request.path_params["device"]
    single = None if which == "*" else parse_device_id(which)
    identity_key, bundles = await keys.fetch(svc, device, number, single)
    return json_response(
        {"identityKey": b64encode(identity_key), "devices": [_bundle_json(b) for b in bundles]}
    )


routes = [
    Route("/v1/keys", upload_keys, methods=["PUT"]),
    Route("/v1/keys/", prekey_count, methods=["GET"]),
    Route("/v1/keys/{number}/{device}", fetch_keys, methods=["GET"]),
]
