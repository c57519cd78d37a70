"""Request pieces shared by several routes."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from textsecure_provision.server.validation import (
    UINT32_MAX,
    get_bool,
    get_int,
    get_optional_name,
    read_json_object,
)


@dataclass(frozen=True)
class DeviceAttributes:
    """``{"registrationId": int, "fetchesMessages": true, "name": str?}`` (§4)."""

    registration_id: int
    fetches_messages: bool
    name: str | None


async def read_device_attributes(request: Request) -> DeviceAttributes:
    doc = await read_json_object(request)
    return DeviceAttributes(
        registration_id=get_int(doc, "registrationId", lo=0, hi=UINT32_MAX),
        fetches_messages=get_bool(doc, "fetchesMessages", default=True),
        name=get_optional_name(doc, "name"),
    )
