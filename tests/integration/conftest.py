"""A real relay server on 127.0.0.1, port 0, for each test (uvicorn in a background thread).

``server_factory(**config)`` starts one with any ``ServerConfig`` fields and
returns a ``RunningServer`` (base URL, the app's services, a movable clock).
It is parametrised over storage backends: "sqlite" always; the multi-node issue
adds "postgres" (marked) to ``BACKENDS`` with its own ``db_url`` maker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from textsecure_provision.server.app import create_app
from textsecure_provision.server.config import RateLimits, ServerConfig
from textsecure_provision.server.runner import ProvisionServer, uvicorn_config
from textsecure_provision.server.services import Services

from .helpers import TEST_CODE

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class Clock:
    """Wall-clock milliseconds plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@dataclass
class RunningServer:
    config: ServerConfig
    server: ProvisionServer
    thread: threading.Thread
    clock: Clock
    app: Any
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/v1/temp_websocket"

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    def request_stop(self) -> None:
        """Ask the server to stop and return at once (uvicorn notices within ~0.1 s)."""
        self.stopped = True
        self.server.should_exit = True
        _stopping.append(self)

    def stop(self) -> None:
        """Stop and wait until the server has closed its database."""
        self.request_stop()
        self.thread.join(STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "the server did not stop in time"


_stopping: list[RunningServer] = []


@pytest.fixture(scope="session", autouse=True)
def _join_stopped_servers() -> Iterator[None]:
    """Servers stop in the background while later tests run; all are joined at the end."""
    yield
    for running in _stopping:
        running.thread.join(STOP_TIMEOUT_S)
    assert not any(r.thread.is_alive() for r in _stopping), "a test server did not stop"


def start_server(config: ServerConfig, **create_kwargs: Any) -> RunningServer:
    clock = create_kwargs.pop("clock_ms", None) or Clock()
    app = create_app(config, clock_ms=clock, **create_kwargs)
    srv = ProvisionServer(uvicorn_config(app, config), config)
    thread = threading.Thread(target=srv.run, name="relay-server", daemon=True)
    thread.start()
    # Wait on the server's own "listening" event, not on a sleep.
    if not srv.started_event.wait(START_TIMEOUT_S):
        srv.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        raise RuntimeError("the test server did not start")
    return RunningServer(config, srv, thread, clock, app)


BACKENDS = [pytest.param("sqlite", id="sqlite")]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def make_db_url(backend: str, folder: Path, name: str) -> str:
    """A database URL for a name; the same name in the same folder gives the same database."""
    if backend == "sqlite":
        return f"sqlite:///{folder / (name + '.sqlite3')}"
    raise AssertionError(backend)


@pytest.fixture
def db_url_maker(backend: str, tmp_path: Path) -> Callable[[str], str]:
    return lambda name: make_db_url(backend, tmp_path, name)


@pytest.fixture
def server_factory(
    db_url_maker: Callable[[str], str],
) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(*, db_name: str = "relay", clock: Clock | None = None, **fields: Any) -> RunningServer:
        defaults: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "db_url": db_url_maker(db_name),
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
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server per test module, without rate limits, for the many tests that only need
    fresh numbers (each registers its own); it must not be used to count metrics."""
    config = ServerConfig(
        port=0,
        db_url=make_db_url(backend, tmp_path_factory.mktemp("shared"), "relay"),
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
