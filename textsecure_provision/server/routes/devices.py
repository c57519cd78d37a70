"""Devices of an account (§4): provisioning codes, linking, listing, unlinking."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import (
    AuthError,
    CodeRejectedError,
    DeviceLimitError,
    ForbiddenError,
    NotFoundError,
)
from textsecure_provision.server.auth import check_new_password, parse_basic_auth
from textsecure_provision.server.codes import new_code
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.routes.common import read_device_attributes
from textsecure_provision.server.services import authenticate, client_address, services
from textsecure_provision.server.storage.base import NewDevice
from textsecure_provision.server.validation import parse_device_id

MASTER_DEVICE_ID = 1


async def provisioning_code(request: Request) -> Response:
    """``GET /v1/devices/provisioning_code``: 401, 411 device limit, 429. Each code belongs
    to one link: up to ``max_provisioning_codes`` are outstanding per account (the oldest
    dropped first), so a second scan never voids the first link's code; each expires after
    10 minutes (§4)."""
    svc = services(request)
    device = await authenticate(request)
    await svc.limits.enforce("provisioning_code_number", device.number)
    devices = await svc.storage.list_devices(device.number)
    if len(devices) >= svc.config.max_devices:
        raise DeviceLimitError(f"the account already has {svc.config.max_devices} devices")
    code = new_code(svc.config.provisioning_code_digits)
    expires = svc.clock_ms() + int(svc.config.provisioning_code_ttl_s * 1000)
    await svc.storage.put_provisioning_code(
        device.number, code, expires, keep=svc.config.max_provisioning_codes
    )
    return json_response({"verificationCode": code})


async def link_device(request: Request) -> Response:
    """``PUT /v1/devices/{code}`` with the new device's ``number:password`` (§4).

    401 malformed credentials; 429 once the guesses of this number or this
    address are spent (counted before the code is looked at, so a guesser is
    cut off whatever it guesses); 400 bad body or weak password; 411 account
    full; 403 wrong, expired or used code. The code is consumed only by a
    request that passes every other check.
    """
    svc = services(request)
    creds = parse_basic_auth(request.headers.get("authorization"))
    if creds.device_id is not None:
        raise AuthError("link as number:password; the server assigns the device id")
    await svc.limits.enforce("code_guess_address", client_address(request))
    await svc.limits.enforce("code_guess_number", creds.number)
    attributes = await read_device_attributes(request)
    check_new_password(creds.password)
    existing = await svc.storage.list_devices(creds.number)
    if existing and len(existing) >= svc.config.max_devices:
        raise DeviceLimitError(f"the account already has {svc.config.max_devices} devices")
    code = request.path_params["code"]
    # Look before hashing (a wrong guess costs no PBKDF2); consumed below, atomically.
    if not await svc.storage.has_provisioning_code(creds.number, code, svc.clock_ms()):
        raise CodeRejectedError("wrong, expired or already used provisioning code")
    password_hash = await svc.verifier.hash(creds.password)
    new = NewDevice(
        registration_id=attributes.registration_id,
        fetches_messages=attributes.fetches_messages,
        name=attributes.name,
        password_hash=password_hash,
    )
    # The code is consumed in the transaction that adds the device: of two concurrent
    # links with one code exactly one gets a device; a re-registered account voids it.
    device_id = await svc.storage.add_device_with_code(
        creds.number, code, new, svc.clock_ms(), svc.config.max_devices
    )
    if device_id is None:
        raise DeviceLimitError(f"the account already has {svc.config.max_devices} devices")
    svc.metrics.links_completed += 1
    return json_response({"deviceId": device_id})


async def list_devices(request: Request) -> Response:
    """``GET /v1/devices/``: the account's devices (401)."""
    svc = services(request)
    device = await authenticate(request)
    devices = await svc.storage.list_devices(device.number)
    return json_response(
        {
            "devices": [
                {
                    "id": d.device_id,
                    "name": d.name,
                    "created": d.created_ms,
                    "lastSeen": d.last_seen_ms,
                }
                for d in devices
            ]
        }
    )


async def remove_device(request: Request) -> Response:
    """``DELETE /v1/devices/{id}``: unlink (401, 403 for device 1, 404 unknown); its keys,
    messages and credentials go with it."""
    svc = services(request)
    device = await authenticate(request)
    target = parse_device_id(request.path_params["device_id"])
    if target == MASTER_DEVICE_ID:
        raise ForbiddenError("device 1 (the master) cannot be unlinked")
    if not await svc.storage.remove_device(device.number, target):
        raise NotFoundError(f"the account has no device {target}")
    return json_response({})


routes = [
    Route("/v1/devices/provisioning_code", provisioning_code, methods=["GET"]),
    Route("/v1/devices/", list_devices, methods=["GET"]),
    Route("/v1/devices/{code}", link_device, methods=["PUT"]),
    Route("/v1/devices/{device_id}", remove_device, methods=["DELETE"]),
]
