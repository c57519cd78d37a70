"""Registration and provisioning codes: making them, and delivering registration codes.

Provisioning codes (§4) are 9 decimal digits by default with no leading zero:
the master puts the code into ``IdentityKey.provisioningCode`` as a uint32
(§6), and the secondary turns it back into text for ``PUT /v1/devices/{code}``,
so "012345678" would come back as "12345678" and never match.

Registration-code delivery is pluggable (§4): ``log`` writes the code to the
server log for the operator to pass on; this is the ONE place a code is
logged, on purpose, because the log *is* the delivery channel. ``test``
accepts one fixed code (set by the operator) and delivers nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Protocol

from textsecure_provision.server.config import REGISTRATION_CODE_DIGITS

delivery_log = logging.getLogger("textsecure_provision.server.registration_codes")


def new_code(digits: int) -> str:
    """A uniformly random ``digits``-digit decimal code without a leading zero."""
    low = 10 ** (digits - 1)
    return str(low + secrets.randbelow(9 * low))


def codes_equal(a: str, b: str) -> bool:
    """Constant-time comparison (§4): timing must not tell how much of a guess was right."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class CodeDelivery(Protocol):
    def deliver(self, number: str, code: str) -> None: ...


class LogDelivery:
    """``--registration-codes log``: the operator reads codes from the server log."""

    def deliver(self, number: str, code: str) -> None:
        # Deliberate exception to "never log codes": this log line is the delivery channel.
        delivery_log.warning(
            "REGISTRATION CODE for %s: %s  [delivered via the server log: "
            "--registration-codes log]",
            number,
            code,
        )


def new_registration_code() -> str:
    return new_code(REGISTRATION_CODE_DIGITS)
