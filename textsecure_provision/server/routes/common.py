"""Request pieces shared by several routes."""

from __future__ import annotations

from starlette.requests import Request

from textsecure_provision.protocol.bodies import DeviceAttributes
from textsecure_provision.server.validation import read_body


async def read_device_attributes(request: Request) -> DeviceAttributes:
    """``{"registrationId": int, "fetchesMessages": true, "name": str?}`` (§4)."""
    return await read_body(request, DeviceAttributes)
