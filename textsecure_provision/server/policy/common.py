"""Values the policies share."""

from __future__ import annotations

from dataclasses import dataclass, field

from textsecure_provision.server.services import Services
from textsecure_provision.server.storage.base import NewDevice


@dataclass(frozen=True)
class DeviceRequest:
    """A device that asks to be registered or linked: its attributes (§4) and password."""

    registration_id: int
    fetches_messages: bool
    name: str | None
    password: str = field(repr=False)

    async def hashed(self, svc: Services) -> NewDevice:
        """The record to store (hashing costs ~5 ms: only once the code was right)."""
        return NewDevice(
            registration_id=self.registration_id,
            fetches_messages=self.fetches_messages,
            name=self.name,
            password_hash=await svc.verifier.hash(self.password),
        )
