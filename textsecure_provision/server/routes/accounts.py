"""Registering a master (§4): ask for a registration code, then register with it as device 1.

Parse → ``policy/accounts.py`` → render.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import AuthError
from textsecure_provision.protocol.encoding import parse_phone_number
from textsecure_provision.server.auth import parse_basic_auth
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.policy import accounts
from textsecure_provision.server.routes.common import read_new_device
from textsecure_provision.server.services import client_address, services

_REGISTRATION_CODE = re.compile(r"[0-9]{4,12}")


async def request_registration_code(request: Request) -> Response:
    """``GET /v1/accounts/sms/code/{number}``: 400 bad number, 429 too many."""
    number = parse_phone_number(request.path_params["number"])
    await accounts.request_code(services(request), number, client_address(request))
    return json_response({})


async def register_account(request: Request) -> Response:
    """``PUT /v1/accounts/code/{code}`` with the new master's ``number:password``.

    401 malformed credentials, 400 bad body, weak password or a code that is not
    4 to 12 digits (none of these spends a guess); 429 while this address or number
    may not guess; 403 wrong or expired code; then the account is (re)created with
    this device as device 1.
    """
    svc = services(request)
    creds = parse_basic_auth(request.headers.get("authorization"))
    if creds.device_id not in (None, 1):
        raise AuthError("register as number:password (the master is device 1)")
    code, device = await read_new_device(
        request, creds, _REGISTRATION_CODE, "the registration code is 4 to 12 decimal digits"
    )
    device_id = await accounts.register(svc, creds.number, code, device, client_address(request))
    return json_response({"deviceId": device_id})


routes = [
    Route("/v1/accounts/sms/code/{number}", request_registration_code, methods=["GET"]),
    Route("/v1/accounts/code/{code}", register_account, methods=["PUT"]),
]
