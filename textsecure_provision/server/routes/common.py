"""Request pieces shared by several routes."""

from __future__ import annotations

import re

from starlette.requests import Request

from textsecure_provision.errors import InvalidInputError
from textsecure_provision.protocol.bodies import DeviceAttributes
from textsecure_provision.server.auth import BasicCredentials, check_new_password
from textsecure_provision.server.policy.common import DeviceRequest
from textsecure_provision.server.validation import read_body


async def read_new_device(
    request: Request, creds: BasicCredentials, code_pattern: re.Pattern[str], code_rule: str
) -> tuple[str, DeviceRequest]:
    """What a request that creates a device (registering a master, linking a device) asks
    for: its body ``{"registrationId", "fetchesMessages", "name"?}`` (§4), a strong new
    password, and the ``{code}`` of its path, which must match ``code_pattern`` (else 400
    ``code_rule``). Each refusal here is a 400 that spends no guess."""
    attributes = await read_body(request, DeviceAttributes)
    check_new_password(creds.password)
    code: str = request.path_params["code"]
    if not code_pattern.fullmatch(code):
        raise InvalidInputError(code_rule)
    device = DeviceRequest(
        attributes.registration_id, attributes.fetches_messages, attributes.name, creds.password
    )
    return code, device
