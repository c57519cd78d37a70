"""Devices of an account (§4): provisioning codes, linking, listing, unlinking.

Parse → ``policy/devices.py`` → render.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import AuthError
from textsecure_provision.server.auth import parse_basic_auth
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.policy import devices
from textsecure_provision.server.routes.common import read_new_device
from textsecure_provision.server.services import authenticate, client_address, services
from textsecure_provision.server.validation import parse_device_id

# §4: 6 to 9 decimal digits, no leading zero (it travels as a uint32, codes.py).
_PROVISIONING_CODE = re.compile(r"[1-9][0-9]{5,8}")


async def provisioning_code(request: Request) -> Response:
    """``GET /v1/devices/provisioning_code``: 401, 411 device limit, 429. Each code belongs
    to one link: up to ``max_provisioning_codes`` are outstanding per account (the oldest
    dropped first), so a second scan never voids the first link's code; each expires after
    10 minutes (§4)."""
    master = await authenticate(request)
    code = await devices.issue_code(services(request), master)
    return json_response({"verificationCode": code})


async def link_device(request: Request) -> Response:
    """``PUT /v1/devices/{code}`` with the new device's ``number:password`` (§4).

    401 malformed credentials; 400 bad body, weak password or a code that is not
    6 to 9 digits (none of these spends a guess); 429 while this address or this
    number may not guess, whatever the code; 411 account full; 403 wrong, expired
    or used code (one guess spent). The order is policy/devices.py's.
    """
    creds = parse_basic_auth(request.headers.get("authorization"))
    if creds.device_id is not None:
        raise AuthError("link as number:password; the server assigns the device id")
    code, device = await read_new_device(
        request, creds, _PROVISIONING_CODE, "the provisioning code is 6 to 9 decimal digits"
    )
    device_id = await devices.link(
        services(request), creds.number, code, device, client_address(request)
    )
    return json_response({"deviceId": device_id})


async def list_devices(request: Request) -> Response:
    """``GET /v1/devices/``: the account's devices (401)."""
    device = await authenticate(request)
    found = await services(request).storage.list_devices(device.number)
    return json_response(
        {
            "devices": [
                {
                    "id": d.device_id,
                    "name": d.name,
                    "created": d.created_ms,
                    "lastSeen": d.last_seen_ms,
                }
                for d in found
            ]
        }
    )


async def remove_device(request: Request) -> Response:
    """``DELETE /v1/devices/{id}``: unlink (401, 403 for device 1, 404 unknown); its keys,
    messages and credentials go with it."""
    master = await authenticate(request)
    target = parse_device_id(request.path_params["device_id"])
    await devices.unlink(services(request), master, target)
    return json_response({})


routes = [
    Route("/v1/devices/provisioning_code", provisioning_code, methods=["GET"]),
    Route("/v1/devices/", list_devices, methods=["GET"]),
    Route("/v1/devices/{code}", link_device, methods=["PUT"]),
    Route("/v1/devices/{device_id}", remove_device, methods=["DELETE"]),
]
