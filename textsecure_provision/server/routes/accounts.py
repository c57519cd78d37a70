"""Registering a master (§4): ask for a registration code, then register with it as device 1."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.errors import AuthError, CodeRejectedError
from textsecure_provision.protocol.encoding import parse_phone_number
from textsecure_provision.server.auth import check_new_password, parse_basic_auth
from textsecure_provision.server.codes import codes_equal, new_registration_code
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.routes.common import read_device_attributes
from textsecure_provision.server.services import client_address, services
from textsecure_provision.server.storage.base import NewDevice


async def request_registration_code(request: Request) -> Response:
    """``GET /v1/accounts/sms/code/{number}``: 400 bad number, 429 too many."""
    svc = services(request)
    number = parse_phone_number(request.path_params["number"])
    await svc.limits.enforce("sms_code_address", client_address(request))
    await svc.limits.enforce("sms_code_number", number)
    if svc.config.registration_codes == "log":
        code = new_registration_code()
        expires = svc.clock_ms() + int(svc.config.registration_code_ttl_s * 1000)
        await svc.storage.put_registration_code(number, code, expires)
        svc.delivery.deliver(number, code)
    # "test": the operator's fixed code is accepted; nothing to deliver.
    return json_response({})


async def register_account(request: Request) -> Response:
    """``PUT /v1/accounts/code/{code}`` with the new master's ``number:password``.

    401 malformed credentials, 429 too many guesses, 400 bad body, 403 wrong or
    expired code; then the account is (re)created with this device as device 1.
    """
    svc = services(request)
    creds = parse_basic_auth(request.headers.get("authorization"))
    if creds.device_id not in (None, 1):
        raise AuthError("register as number:password (the master is device 1)")
    await svc.limits.enforce("registration_guess_address", client_address(request))
    await svc.limits.enforce("registration_guess_number", creds.number)
    attributes = await read_device_attributes(request)
    check_new_password(creds.password)
    code = request.path_params["code"]
    if svc.config.registration_codes == "test":
        assert svc.config.test_registration_code is not None
        ok = codes_equal(code, svc.config.test_registration_code)
    else:
        ok = await svc.storage.consume_registration_code(creds.number, code, svc.clock_ms())
    if not ok:
        raise CodeRejectedError("wrong or expired registration code")
    password_hash = await svc.verifier.hash(creds.password)
    device = NewDevice(
        registration_id=attributes.registration_id,
        fetches_messages=attributes.fetches_messages,
        name=attributes.name,
        password_hash=password_hash,
    )
    await svc.storage.create_account(creds.number, device, svc.clock_ms())
    svc.metrics.accounts_registered += 1
    return json_response({"deviceId": 1})


routes = [
    Route("/v1/accounts/sms/code/{number}", request_registration_code, methods=["GET"]),
    Route("/v1/accounts/code/{code}", register_account, methods=["PUT"]),
]
