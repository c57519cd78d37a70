"""``provision devices`` and ``provision whoami``: read the account, remove a device (§4)."""

from __future__ import annotations

from typing import Any

from textsecure_provision.errors import InvalidInputError
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.protocol.encoding import b64encode
from textsecure_provision.store import DeviceRecord
from textsecure_provision.transport.api import ApiClient, Credentials, DeviceInfo


def credentials(record: DeviceRecord) -> Credentials:
    return Credentials(record.number, record.password, record.device_id)


def api_for(record: DeviceRecord, config: FlowConfig) -> ApiClient:
    """A client for the account's own server, authenticated as this device."""
    return ApiClient(record.server, credentials(record), ca_file=config.ca_file)


async def list_devices(config: FlowConfig) -> list[DeviceInfo]:
    record = config.store().require_record()
    async with api_for(record, config) as api:
        return sorted(await api.fetch_devices(), key=lambda d: d.id)


async def remove_device(config: FlowConfig, device_id: int) -> DeviceRecord:
    record = config.store().require_record()
    if device_id == 1:
        raise InvalidInputError(
            "device 1 is the account's master and cannot be removed",
            hint="Remove another device (see `provision devices`).",
        )
    async with api_for(record, config) as api:
        await api.remove_device(device_id)
    return record


def whoami(config: FlowConfig) -> dict[str, Any]:
    """The issue's JSON shape: number, device_id, server, identity_key (b64 of 33 bytes)."""
    record = config.store().require_record()
    return {
        "number": record.number,
        "device_id": record.device_id,
        "server": record.server,
        "identity_key": b64encode(record.identity.public.serialize()),
    }
