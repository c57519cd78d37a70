"""The settings a flow needs (built by the CLI from its global options)."""

from __future__ import annotations

from dataclasses import dataclass

from textsecure_provision.errors import InvalidInputError
from textsecure_provision.protocol.trust import normalize_server_url
from textsecure_provision.store import DeviceStore


@dataclass(frozen=True)
class FlowConfig:
    data_dir: str | None = None
    """None: the platform's user data folder."""
    server_url: str | None = None
    """The server for commands that have no account yet (register, secondary)."""
    trusted_servers: tuple[str, ...] = ()
    """Servers trusted besides the account's own (or, with no account, --server)."""
    ca_file: str | None = None

    def store(self) -> DeviceStore:
        return DeviceStore(self.data_dir)

    def require_server(self) -> str:
        if not self.server_url:
            raise InvalidInputError(
                "no server given",
                hint="Pass --server URL (or set PROVISION_SERVER), e.g. --server https://relay.example.org",
            )
        return normalize_server_url(self.server_url)
