"""A real relay server on 127.0.0.1, port 0, for each test (uvicorn in a background thread).

``server_factory(**config)`` starts one with any ``ServerConfig`` fields and
returns a ``RunningServer`` (base URL, the app's services, a movable clock).
It is parametrised over ``BACKENDS``:

* "sqlite": a SQLite file per test and in-process fan-out and limits;
* "postgres+redis" (marked ``postgres`` and ``redis``): PostgreSQL storage and
  Redis fan-out and limits, as several nodes run. The session gets its own
  database (dropped at the end), each test its own schema in it, and each test
  its own Redis key prefix, so tests never see each other's data. Without the
  services these skip, or fail under CI=true (services.py).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import server_harness as harness  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.server.config import RateLimits, ServerConfig

from . import services as ext
from .helpers import TEST_CODE

START_TIMEOUT_S = harness.START_TIMEOUT_S
STOP_TIMEOUT_S = harness.STOP_TIMEOUT_S
Clock = harness.Clock
RunningServer = harness.InProcessServer  # the one in-process server of tests/server_harness.py


@pytest.fixture(scope="session", autouse=True)
def _join_stopped_servers() -> Iterator[None]:
    """Servers stop in the background while later tests run; all are joined at the end."""
    yield
    harness.join_stopped()


def start_server(config: ServerConfig, **create_kwargs: Any) -> RunningServer:
    return harness.start_in_process(config, **create_kwargs)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis], id="postgres+redis"),
]


@dataclass
class SharedServices:
    """This session's database on the shared PostgreSQL, and its Redis key prefix."""

    database: str
    url: str  # postgresql://…/<database>
    redis_url: str
    redis_prefix: str  # every test's prefix starts with it
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def db_url(self, scope: str, name: str) -> str:
        schema = re.sub(r"[^a-z0-9_]", "_", f"{scope}_{name}".lower())[:63]
        return f"{self.url}?schema={schema}"

    def new_scope(self) -> str:
        return f"s{next(self.counter)}"


async def _create_database(name: str) -> None:
    import asyncpg

    con = await asyncpg.connect(ext.POSTGRES_URL, timeout=10)
    try:
        await con.execute(f'CREATE DATABASE "{name}"')
    finally:
        await con.close()


async def _drop_session_data(shared: SharedServices) -> None:
    import asyncpg
    from redis.asyncio import Redis

    con = await asyncpg.connect(ext.POSTGRES_URL, timeout=10)
    try:
        await con.execute(f'DROP DATABASE IF EXISTS "{shared.database}" WITH (FORCE)')
    finally:
        await con.close()
    redis = Redis.from_url(shared.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=shared.redis_prefix + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
def shared_services() -> Iterator[SharedServices]:
    """Created on first use only (a run without the postgres tests never touches them)."""
    ext.require_services()
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    database = f"provision_it_{tag}"
    asyncio.run(_create_database(database))
    shared = SharedServices(
        database=database,
        url=ext.with_database(ext.POSTGRES_URL, database),
        redis_url=ext.REDIS_URL,
        redis_prefix=f"provision-it-{tag}:",
    )
    yield shared
    harness.join_stopped()  # servers still stopping hold connections to the database
    asyncio.run(_drop_session_data(shared))


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.getfixturevalue("shared_services")
    return name


def backend_fields(
    backend: str, folder: Path, shared: SharedServices | None, scope: str
) -> Callable[[str], dict[str, Any]]:
    """``name → ServerConfig fields`` for one test (or module): the same name gives the
    same database, so a test can restart a server on its data."""
    if backend == "sqlite":
        return lambda name: {"db_url": f"sqlite:///{folder / (name + '.sqlite3')}"}
    assert backend == "postgres" and shared is not None
    return lambda name: {
        "db_url": shared.db_url(scope, name),
        "redis_url": shared.redis_url,
        "redis_prefix": f"{shared.redis_prefix}{scope}:",
    }


@pytest.fixture
def fields_maker(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], dict[str, Any]]:
    shared = request.getfixturevalue("shared_services") if backend == "postgres" else None
    scope = shared.new_scope() if shared is not None else ""
    return backend_fields(backend, tmp_path, shared, scope)


@pytest.fixture
def server_factory(
    fields_maker: Callable[[str], dict[str, Any]],
) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(*, db_name: str = "relay", clock: Clock | None = None, **fields: Any) -> RunningServer:
        defaults: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            **fields_maker(db_name),
            "test_registration_code": TEST_CODE,
            "log_level": "warning",
        }
        defaults.update(fields)
        running = start_server(ServerConfig(**defaults), clock_ms=clock)
        started.append(running)
        return running

    yield make
    for running in started:
        if not running.stopped:
            running.request_stop()


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """The default server: default limits, test registration code."""
    return server_factory()


@pytest.fixture
def open_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A server without rate limits, for tests that make many requests from one address."""
    return server_factory(rate_limits=RateLimits.off())


@pytest.fixture(scope="module")
def shared_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    """One server per test module, without rate limits, for the many tests that only need
    fresh numbers (each registers its own); it must not be used to count metrics."""
    shared = request.getfixturevalue("shared_services") if backend == "postgres" else None
    scope = shared.new_scope() if shared is not None else ""
    folder = tmp_path_factory.mktemp("shared")
    config = ServerConfig(
        port=0,
        **backend_fields(backend, folder, shared, scope)("relay"),
        test_registration_code=TEST_CODE,
        rate_limits=RateLimits.off(),
        log_level="warning",
    )
    running = start_server(config)
    yield running
    running.request_stop()


@pytest.fixture
async def shared_client(shared_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared_server.url, timeout=10.0) as c:
        yield c


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as c:
        yield c


@pytest.fixture
async def open_client(open_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=open_server.url, timeout=10.0) as c:
        yield c
