"""What every route needs, built once per app: config, storage, fan-out, limits, clock.

Routes reach it with ``services(request)``; ``authenticate`` is the one place a
request becomes a device of an account (§4 Auth).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

from textsecure_provision.clock import now_ms
from textsecure_provision.errors import AuthError
from textsecure_provision.server.addresses import address_key
from textsecure_provision.server.auth import PasswordVerifier, parse_basic_auth
from textsecure_provision.server.codes import CodeDelivery, LogDelivery
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.fanout.base import ChannelId, FanOut
from textsecure_provision.server.limits import Limits
from textsecure_provision.server.metrics import Metrics
from textsecure_provision.server.storage.base import Storage, StoredDevice

LAST_SEEN_RESOLUTION_MS = 60_000  # last_seen is written at most once a minute per device


class KeyedLocks:
    """One ``asyncio.Lock`` per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class Services:
    config: ServerConfig
    storage: Storage
    fanout: FanOut
    limits: Limits
    metrics: Metrics
    verifier: PasswordVerifier = field(default_factory=PasswordVerifier)
    # Serialises uncached password checks per address: without it, concurrent wrong
    # guesses all pass the budget check before any of them is counted.
    auth_gate: KeyedLocks = field(default_factory=KeyedLocks)
    # The same for code guesses (policy/guesses.py), per address.
    guess_gate: KeyedLocks = field(default_factory=KeyedLocks)
    delivery: CodeDelivery = field(default_factory=LogDelivery)  # registration codes
    clock_ms: Callable[[], int] = now_ms
    stopping: bool = False
    # Called as ``hook(channel_id, how)`` when a temp channel ends (channel_socket.ChannelEnd
    # says how); synchronous, on the event loop: spawn a task for anything slow.
    channel_ended: list[Callable[[ChannelId, Any], None]] = field(default_factory=list)

    def begin_shutdown(self) -> None:
        """Called as the server starts to stop: long-polls answer now instead of waiting."""
        self.stopping = True
        self.fanout.interrupt_waiters()


def services(conn: HTTPConnection) -> Services:
    svc: Services = conn.app.state.services
    return svc


@functools.lru_cache(maxsize=4096)
def budget_key(host: str) -> str:
    """``addresses.address_key``, cached: every authenticated request and every new
    connection asks, mostly for the same few addresses."""
    return address_key(host)


def client_address(conn: HTTPConnection) -> str:
    """The peer's budget key: IPv4, or the /64 of an IPv6 address (addresses.py); uvicorn
    rewrites the peer from X-Forwarded-For only for trusted proxies."""
    return _scope_address(conn.scope)


def _scope_address(scope: Scope) -> str:
    client = scope.get("client")  # conn.client, without building its Address
    return budget_key(client[0]) if client else "unknown"


def _authorization_header(scope: Scope) -> str | None:
    """The first ``Authorization`` header, as ``conn.headers.get`` gives it, read from the
    scope's list (ASGI names are lowercase) without building a ``Headers`` object."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


async def authenticate(conn: HTTPConnection) -> StoredDevice:
    """The device behind ``Basic number[.id]:password`` (§4), or ``AuthError`` (401).

    A missing or malformed header is 401 at once. Otherwise the address's
    failure budget is checked before any hashing (429 once spent), and every
    failure spends one token of it. A password that needs hashing is checked
    under the address's lock, so concurrent guesses cannot overshoot the budget
    (on one node; across nodes, by at most the number of nodes). An unknown number
    or device costs the same hashing as a wrong password.
    """
    return await authenticate_scope(services(conn), conn.scope)


async def authenticate_scope(svc: Services, scope: Scope) -> StoredDevice:
    """``authenticate`` on a request's ASGI scope (fastpath.py has no ``Request``)."""
    creds = parse_basic_auth(_authorization_header(scope))
    address = _scope_address(scope)
    # First, for every request: a cut-off address may not even try a cached password,
    # or it could still tell a right guess from a wrong one.
    await svc.limits.check_not_blocked("auth_failure_address", address)
    device_id = 1 if creds.device_id is None else creds.device_id
    device = await svc.storage.get_device(creds.number, device_id)
    if device is not None and svc.verifier.remembers(creds.password, device.password_hash):
        return await _seen(svc, device)
    async with svc.auth_gate.hold(address):
        await svc.limits.check_not_blocked("auth_failure_address", address)
        if device is None:
            await svc.verifier.verify_nothing(creds.password)  # the same work as a wrong one
            ok = False
        else:
            ok = await svc.verifier.verify(creds.password, device.password_hash)
        if not ok:
            await svc.limits.record("auth_failure_address", address)
            raise AuthError("wrong number, device or password")
    assert device is not None
    return await _seen(svc, device)


async def _seen(svc: Services, device: StoredDevice) -> StoredDevice:
    now = svc.clock_ms()
    if now - device.last_seen_ms >= LAST_SEEN_RESOLUTION_MS:
        await svc.storage.touch_device(device.number, device.device_id, now)
    return device
