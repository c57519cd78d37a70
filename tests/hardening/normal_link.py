"""A normal link, end to end over the raw API (benchmarks/load_links.py ``Load.link``).

The hostile-client tests run one of these while they attack and assert that it still
succeeds in time: the master registers (device 1, keys), asks for a provisioning code,
seals a DeviceInit into a temp channel, and the new device links with the code, uploads
keys and announces itself; the master fetches and acknowledges, then unlinks it.
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
from load_links import Load, Master, b64, keys_upload  # benchmarks/, on sys.path (conftest)

from textsecure_provision.crypto.keys import KeyPair

from .support import TEST_CODE, new_number

LINK_TIMEOUT_S = 30.0


def _load(url: str) -> Load:
    return Load(url, prekeys=3, links_per_master=1, abandon_every=0, reuse_keys=True)


async def register_master(url: str, number: str | None = None) -> Master:
    """A master with its keys, registered from 127.0.0.1."""
    master = Master(number or new_number(), b64(os.urandom(18)), KeyPair.generate(), 7)
    async with httpx.AsyncClient(base_url=url, timeout=LINK_TIMEOUT_S) as http:
        attrs = {"registrationId": master.registration_id, "fetchesMessages": True}
        r = await http.put(f"/v1/accounts/code/{TEST_CODE}", json=attrs, auth=master.auth)
        assert r.status_code == 200, r.text
        master.keys = keys_upload(master.identity, 3)
        r = await http.put("/v1/keys", json=master.keys, auth=master.auth)
        assert r.status_code == 200, r.text
    return master


async def link(url: str, master: Master) -> float:
    """One link of a new device to ``master``'s account; its duration (fails if refused)."""
    load = _load(url)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=LINK_TIMEOUT_S) as http:
        await asyncio.wait_for(load.link(http, master), LINK_TIMEOUT_S)
    return time.monotonic() - started
