"""Devices of an account (§4): provisioning codes, the device limit, linking, unlinking.

The order of a link, decided here: the guess budgets (policy/guesses.py) → the
device limit (411, before any code is looked at) → the code looked up without
hashing (a wrong guess costs no PBKDF2; 403, one guess spent) → the password
hashed → the code consumed in the same transaction that adds the device, so of
two links with one code exactly one gets a device. Each code belongs to one link:
up to ``max_provisioning_codes`` are outstanding per account, the oldest dropped
first, so a second scan never voids the first link's code.
"""

from __future__ import annotations

from textsecure_provision.errors import (
    CodeRejectedError,
    DeviceLimitError,
    ForbiddenError,
    NotFoundError,
)
from textsecure_provision.protocol.encoding import PhoneNumber
from textsecure_provision.server.codes import new_code
from textsecure_provision.server.policy.common import DeviceRequest
from textsecure_provision.server.policy.guesses import code_guess
from textsecure_provision.server.services import Services
from textsecure_provision.server.storage.base import StoredDevice

MASTER_DEVICE_ID = 1


def _full(svc: Services) -> DeviceLimitError:
    return DeviceLimitError(f"the account already has {svc.config.max_devices} devices")


async def issue_code(svc: Services, master: StoredDevice) -> str:
    """A new provisioning code for ``master``'s account (429 past the number's limit,
    411 if the account is full); it expires after ``provisioning_code_ttl_s``."""
    await svc.limits.enforce("provisioning_code_number", master.number)
    devices = await svc.storage.list_devices(master.number)
    if len(devices) >= svc.config.max_devices:
        raise _full(svc)
    code = new_code(svc.config.provisioning_code_digits)
    expires = svc.clock_ms() + int(svc.config.provisioning_code_ttl_s * 1000)
    await svc.storage.put_provisioning_code(
        master.number, code, expires, keep=svc.config.max_provisioning_codes
    )
    return code


async def link(
    svc: Services, number: PhoneNumber, code: str, device: DeviceRequest, address: str
) -> int:
    """Link ``device`` to ``number``'s account with ``code``: its new device id."""
    async with code_guess(
        svc,
        address_rule="code_guess_address",
        address=address,
        number_rule="code_guess_number",
        number=number,
    ):
        existing = await svc.storage.list_devices(number)
        if existing and len(existing) >= svc.config.max_devices:
            raise _full(svc)
        if not await svc.storage.has_provisioning_code(number, code, svc.clock_ms()):
            raise CodeRejectedError("wrong, expired or already used provisioning code")
        # Raises CodeRejectedError too if another link consumed the code meanwhile.
        device_id = await svc.storage.add_device_with_code(
            number, code, await device.hashed(svc), svc.clock_ms(), svc.config.max_devices
        )
    if device_id is None:
        raise _full(svc)
    svc.metrics.links_completed += 1
    return device_id


async def unlink(svc: Services, master: StoredDevice, target: int) -> None:
    """Remove device ``target`` with its keys, messages and credentials (403 for device 1,
    404 unknown)."""
    if target == MASTER_DEVICE_ID:
        raise ForbiddenError("device 1 (the master) cannot be unlinked")
    if not await svc.storage.remove_device(master.number, target):
        raise NotFoundError(f"the account has no device {target}")
