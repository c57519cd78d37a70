"""The relay server's ASGI app: ``create_app(config)`` wires routes, backends and handlers.

Backends come from the config's URLs (``build_storage``, ``build_fanout``,
``build_limiter``: SQLite and in-process by default, PostgreSQL with
``--db postgresql://…``, Redis with ``--redis``) or are injected (tests). The
lifespan opens them on start and closes them on stop; a housekeeping task
purges expired codes and idle rate-limit buckets meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from textsecure_provision.clock import now_ms
from textsecure_provision.errors import ProvisionError
from textsecure_provision.server import fastpath
from textsecure_provision.server.config import (
    ServerConfig,
    default_db_path,
    is_postgres_url,
    sqlite_path_from_url,
)
from textsecure_provision.server.fanout.base import FanOut
from textsecure_provision.server.fanout.memory import MemoryFanOut
from textsecure_provision.server.handlers import handle_http_exception, handle_provision_error
from textsecure_provision.server.limits import Limits, RateLimiter
from textsecure_provision.server.limits.persistent import PersistentRateLimiter
from textsecure_provision.server.metrics import Metrics
from textsecure_provision.server.middleware import GuardMiddleware
from textsecure_provision.server.nameplates.base import NameplateStore
from textsecure_provision.server.nameplates.memory import MemoryNameplateStore
from textsecure_provision.server.nameplates.service import Nameplates
from textsecure_provision.server.routes import accounts, channels, devices, keys, messages, ops
from textsecure_provision.server.routes import nameplates as nameplate_routes
from textsecure_provision.server.services import Services
from textsecure_provision.server.storage.base import Storage

log = logging.getLogger("textsecure_provision.server")


def build_storage(config: ServerConfig) -> Storage:
    """``postgresql://…`` → PostgreSQL (several nodes); ``sqlite:///path``, a bare path or
    "" (the default file) → SQLite (one node)."""
    url = config.db_url
    if is_postgres_url(url):
        from textsecure_provision.server.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    from textsecure_provision.server.storage.sqlite import SqliteStorage

    path = str(default_db_path()) if not url else sqlite_path_from_url(url)
    return SqliteStorage(path)


def build_fanout(config: ServerConfig) -> FanOut:
    """Redis with ``--redis`` (channels and wake-ups across nodes), else this process only."""
    if config.redis_url:
        from textsecure_provision.server.fanout.redis import RedisFanOut

        return RedisFanOut(config.redis_url, config.redis_prefix)
    return MemoryFanOut()


def build_limiter(config: ServerConfig, storage: Storage) -> RateLimiter:
    """Redis with ``--redis`` (limits count across nodes), else in memory with the guess
    budgets saved in ``storage`` (limits/persistent.py: they survive a restart)."""
    if config.redis_url:
        from textsecure_provision.server.limits.redis import RedisRateLimiter

        return RedisRateLimiter(config.redis_url, config.redis_prefix)
    return PersistentRateLimiter(storage, config.rate_limits)


def build_nameplates(
    config: ServerConfig, fanout: FanOut, clock_ms: Callable[[], int]
) -> NameplateStore:
    """Short-code nameplates live where the channels do: Redis with --redis, else here."""
    if config.redis_url and not isinstance(fanout, MemoryFanOut):
        from textsecure_provision.server.nameplates.redis import RedisNameplateStore

        return RedisNameplateStore(config.redis_url, config.redis_prefix)
    holds = fanout.holds if isinstance(fanout, MemoryFanOut) else (lambda _channel: False)
    return MemoryNameplateStore(holds, clock_ms)


class RelayApp(Starlette):
    """Starlette, except that ``PUT /v1/messages/{destination}``, half of every rendezvous,
    skips the router's layers (fastpath.py says what still runs). The temp websocket never
    reaches the app: channel_socket.py serves it in front of uvicorn."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and fastpath.is_message_put(scope):
            await fastpath.serve(self, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: ServerConfig,
    *,
    storage: Storage | None = None,
    fanout: FanOut | None = None,
    limiter: RateLimiter | None = None,
    clock_ms: Callable[[], int] = now_ms,
) -> RelayApp:
    metrics = Metrics()
    storage = storage if storage is not None else build_storage(config)
    svc = Services(
        config=config,
        storage=storage,
        fanout=fanout if fanout is not None else build_fanout(config),
        limits=Limits(
            limiter if limiter is not None else build_limiter(config, storage),
            config.rate_limits,
            metrics,
        ),
        metrics=metrics,
        clock_ms=clock_ms,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.storage.open()
        try:
            try:
                await svc.limits.limiter.open()
                await svc.fanout.start()
            except BaseException:
                await svc.limits.limiter.close()
                raise
            housekeeping = asyncio.get_running_loop().create_task(_housekeeping(svc))
            log.info(
                "storage %s, fan-out %s, channel ttl %gs, registration codes: %s",
                svc.storage.describe(),
                svc.fanout.describe(),
                config.channel_ttl_s,
                config.registration_codes,
            )
            if is_postgres_url(config.db_url) and isinstance(svc.fanout, MemoryFanOut):
                log.warning(
                    "shared PostgreSQL storage without --redis: channels, long-poll wake-ups "
                    "and rate limits stay within this node; run several nodes with --redis"
                )
            try:
                yield
            finally:
                svc.begin_shutdown()
                housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await housekeeping
                await svc.fanout.close()
                await svc.limits.limiter.close()
                await app.state.nameplates.store.close()
        finally:
            await svc.storage.close()

    app = RelayApp(
        routes=[
            *accounts.routes,
            *devices.routes,
            *keys.routes,
            *messages.routes,
            *channels.routes,
            *nameplate_routes.routes,
            *ops.routes,
        ],
        middleware=[
            Middleware(
                GuardMiddleware,
                metrics=metrics,
                max_body_bytes=config.max_body_bytes,
                access_log=config.access_log,
            )
        ],
        exception_handlers={
            ProvisionError: handle_provision_error,
            HTTPException: handle_http_exception,
        },
        lifespan=lifespan,
    )
    # The contract's paths are exact: a near miss is a JSON 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.services = svc
    nameplate_store = build_nameplates(config, svc.fanout, clock_ms)
    if isinstance(nameplate_store, MemoryNameplateStore):
        svc.channel_ended.append(nameplate_store.channel_ended)
    app.state.nameplates = Nameplates(svc, nameplate_store, enabled=config.short_codes)
    return app


async def _housekeeping(svc: Services) -> None:
    """Purge expired codes and refilled rate-limit buckets, once a minute by default."""
    while True:
        await asyncio.sleep(svc.config.housekeeping_interval_s)
        try:
            purged = await svc.storage.purge_expired(svc.clock_ms())
            await svc.limits.limiter.sweep()
            if purged:
                log.debug("purged %d expired codes", purged)
        except ProvisionError as exc:
            log.warning("housekeeping skipped: %s", exc.message)
