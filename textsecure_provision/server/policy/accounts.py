"""Registering a master (§4): registration codes, and the guesses at them.

The 6-digit code is guarded per address (``registration_guess_address``, wrong
guesses only) and per number by a lockout that doubles with each wrong guess
(limits/backoff.py); a malformed request spends neither.
"""

from __future__ import annotations

from textsecure_provision.errors import CodeRejectedError
from textsecure_provision.protocol.encoding import PhoneNumber
from textsecure_provision.server.codes import codes_equal, new_registration_code
from textsecure_provision.server.limits.backoff import Lockout
from textsecure_provision.server.policy.common import DeviceRequest
from textsecure_provision.server.policy.guesses import code_guess
from textsecure_provision.server.services import Services

MASTER_DEVICE_ID = 1
LOCKOUT_RULE = "registration_guess_number"


async def request_code(svc: Services, number: PhoneNumber, address: str) -> None:
    """Deliver the number's registration code (429 past the address's or the number's
    limit). While a code is unexpired the same one is delivered again: someone else asking
    for the owner's number never voids the code the owner is typing."""
    await svc.limits.enforce("sms_code_address", address)
    await svc.limits.enforce("sms_code_number", number)
    if svc.config.registration_codes == "log":
        now = svc.clock_ms()
        expires = now + int(svc.config.registration_code_ttl_s * 1000)
        code = await svc.storage.issue_registration_code(
            number, new_registration_code(), expires, now
        )
        svc.delivery.deliver(number, code)
    # "test": the operator's fixed code is accepted; nothing to deliver.


def lockout(svc: Services) -> Lockout | None:
    rule = svc.config.registration_lockout
    return None if rule is None else Lockout(LOCKOUT_RULE, rule, svc.storage, svc.metrics)


async def register(
    svc: Services, number: PhoneNumber, code: str, device: DeviceRequest, address: str
) -> int:
    """Check the code (403 wrong or expired; 429 while this address or number may not
    guess), then (re)create the account with ``device`` as device 1. The password is
    hashed only then: a wrong guess costs no hashing."""
    async with code_guess(
        svc,
        address_rule="registration_guess_address",
        address=address,
        number=number,
        lockout=lockout(svc),
    ):
        if svc.config.registration_codes == "test":
            assert svc.config.test_registration_code is not None
            ok = codes_equal(code, svc.config.test_registration_code)
        else:
            ok = await svc.storage.consume_registration_code(number, code, svc.clock_ms())
        if not ok:
            raise CodeRejectedError("wrong or expired registration code")
    await svc.storage.create_account(number, await device.hashed(svc), svc.clock_ms())
    svc.metrics.accounts_registered += 1
    return MASTER_DEVICE_ID
