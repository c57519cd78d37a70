"""Prekeys (§4, §7): whose identity key an account has, and who gets which bundles.

* Device 1's first upload sets the account's identity key; every later upload,
  by any device, must carry the same key (409 otherwise).
* ``GET /v1/keys/{number}/{device}`` is limited per (asking device, target
  number and device), as Signal-Server's "prekeys" limiter is: without it one
  account could take all of another's one-time prekeys in a fraction of a
  second (issue 12 #8), leaving only the last-resort key for everyone else.
"""

from __future__ import annotations

from collections.abc import Sequence

from textsecure_provision.errors import IdentityKeyMismatchError, NotFoundError
from textsecure_provision.server.services import Services
from textsecure_provision.server.storage.base import (
    KeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    StoredDevice,
)

MASTER_DEVICE_ID = 1


async def upload(
    svc: Services,
    device: StoredDevice,
    identity_key: bytes,
    signed: SignedPreKeyRecord,
    prekeys: Sequence[PreKeyRecord],
    last_resort: PreKeyRecord | None,
) -> None:
    """Store the device's keys (their signature already checked by the caller); 409 if
    ``identity_key`` is not the account's."""
    if device.device_id == MASTER_DEVICE_ID:
        account_key = await svc.storage.set_identity_key_if_unset(device.number, identity_key)
    else:
        account_key = await svc.storage.get_identity_key(device.number)
        if account_key is None:
            raise IdentityKeyMismatchError(
                "the account has no identity key yet: device 1 uploads its keys first"
            )
    if account_key != identity_key:
        raise IdentityKeyMismatchError("identityKey differs from the account's identity key")
    await svc.storage.replace_keys(device.number, device.device_id, signed, prekeys, last_resort)


def pair_key(asker: StoredDevice, number: str, which: int | None) -> str:
    return f"{asker.number}.{asker.device_id}__{number}.{'*' if which is None else which}"


async def fetch(
    svc: Services, asker: StoredDevice, number: str, which: int | None
) -> tuple[bytes, list[KeyBundle]]:
    """The identity key and bundles of ``number``'s device ``which`` (None: every device
    with keys, except the asker itself). 429 past ``key_fetch_pair``; 404 no keys."""
    await svc.limits.enforce("key_fetch_pair", pair_key(asker, number, which))
    identity_key = await svc.storage.get_identity_key(number)
    if identity_key is None:
        raise NotFoundError("no keys for that number")
    if which is None:
        devices = await svc.storage.list_devices(number)
        wanted = [
            d.device_id
            for d in devices
            if not (number == asker.number and d.device_id == asker.device_id)
        ]
    else:
        wanted = [which]
    bundles = [
        b for b in await svc.storage.take_key_bundles(number, wanted) if b.signed_prekey is not None
    ]
    if not bundles:
        raise NotFoundError("no keys for that device")
    return identity_key, bundles
