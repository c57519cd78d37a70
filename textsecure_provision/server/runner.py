"""Running the app under uvicorn: settings, the port file, and a prompt shutdown.

Choices, each for a reason:

* ``http=ChannelHttpFactory``: every connection starts at channel_socket.py,
  which reads the first request head under the connection budgets
  (``ServerConfig.sockets``), serves a channel upgrade itself (the websockets
  sans-I/O protocol, one small object per idle channel, no task), and hands
  anything else to uvicorn's httptools protocol through uvicorn_adapter.py,
  which keeps the budgets for later requests on the connection.
  ``ws=ChannelSocketFactory`` only tells uvicorn that websockets are served.
  No per-message deflate: a zlib context costs far more than the ≤ 10 KiB an
  idle channel may use, and a channel carries one ~200-byte frame.
* ``backlog=4096``: bursts of channel opens queue in the kernel instead of
  being refused (uvicorn's default is 2048; the kernel caps it at somaxconn).
* uvicorn's access log is off: it logs concrete paths, which may hold codes
  (``/v1/devices/{code}``); ``GuardMiddleware`` logs route templates instead.
* ``proxy_headers`` only with ``--forwarded-allow-ips``: otherwise any client
  could pick its own address for the per-address rate limits.
* ``--port 0`` picks a free port; once listening, the base URL plus a newline
  is written atomically (temp file + rename) to ``--port-file``.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from textsecure_provision.atomic_write import atomic_write
from textsecure_provision.server.channel_socket import ChannelHttpFactory, ChannelSocketFactory
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.services import Services

LISTEN_BACKLOG = 4096
GRACEFUL_SHUTDOWN_S = 5.0


def uvicorn_config(app: Starlette, config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    svc = _services(app)
    kwargs: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "ws": ChannelSocketFactory(svc) if svc is not None else "none",
        "http": ChannelHttpFactory(svc) if svc is not None else "httptools",
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,  # the caller configures logging (cli/server.py or the tests)
        "log_level": config.log_level,
        "proxy_headers": config.forwarded_allow_ips is not None,
        "forwarded_allow_ips": config.forwarded_allow_ips,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "backlog": LISTEN_BACKLOG,
    }
    if config.tls_cert:
        kwargs["ssl_certfile"] = config.tls_cert
        kwargs["ssl_keyfile"] = config.tls_key
    kwargs.update(overrides)
    return uvicorn.Config(app, **kwargs)


class ProvisionServer(uvicorn.Server):
    """uvicorn's server plus: the real port, the port file, a ``started`` thread event,
    and long-polls told to answer as soon as shutdown begins."""

    def __init__(
        self, config: uvicorn.Config, server_config: ServerConfig, port_file: str | None = None
    ) -> None:
        super().__init__(config)
        self.server_config = server_config
        self.port_file = port_file
        self.bound_port: int | None = None
        self.started_event = threading.Event()

    @property
    def base_url(self) -> str:
        assert self.bound_port is not None, "not started"
        return self.server_config.base_url(self.bound_port)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for server in self.servers:
            for sock in server.sockets:
                self.bound_port = int(sock.getsockname()[1])
                break
            if self.bound_port is not None:
                break
        # Everything loaded so far (modules, the app, the database) lives as long as the
        # process: freeze it so that garbage collections stop walking it again and again.
        gc.collect()
        gc.freeze()
        if self.port_file:
            write_atomically(self.port_file, self.base_url + "\n")
        self.started_event.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down, so the process dies of it
        # (exit -15, or KeyboardInterrupt for Ctrl-C). A relay that stopped gracefully on
        # request has done its job: forget the signal and exit 0.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

    async def shutdown(self, sockets: Any = None) -> None:
        svc = _services(self.config.app)
        if svc is not None:
            svc.begin_shutdown()
        await super().shutdown(sockets)


def _services(app: Any) -> Services | None:
    state = getattr(app, "state", None)
    svc = getattr(state, "services", None)
    return svc if isinstance(svc, Services) else None


def write_atomically(path: str, text: str) -> None:
    """Readers see the old file or the whole new one, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text.encode())
