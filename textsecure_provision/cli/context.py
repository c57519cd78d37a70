"""The global options of ``provision``, as one value passed to every command."""

from __future__ import annotations

from typing import NamedTuple


class Settings(NamedTuple):
    # A NamedTuple, not a dataclass: dataclasses pulls in `inspect`, which costs
    # `provision --help` several milliseconds (B1).
    data_dir: str | None = None
    server_url: str | None = None
    trusted_servers: tuple[str, ...] = ()
    ca_file: str | None = None
    json_mode: bool = False
    assume_yes: bool = False
    verbose: int = 0
