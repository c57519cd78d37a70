"""The fast path (server/fastpath.py) copies the app's middleware stack by hand: this pins
that stack, so adding a middleware or an exception handler to the app fails here until
fastpath.py is taught the same (issue 15 #2)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import Router

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server import fastpath
from textsecure_provision.server.app import create_app
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.middleware import GuardMiddleware
from textsecure_provision.server.routes import messages


def _layers(app: Any) -> list[Any]:
    layers, layer = [], app.build_middleware_stack()
    while not isinstance(layer, Router):
        layers.append(layer)
        layer = layer.app
    return [*layers, layer]


def test_the_fast_path_copies_the_apps_middleware_stack() -> None:
    app = create_app(ServerConfig(db_url="sqlite:///:memory:", max_body_bytes=4096))
    layers = _layers(app)
    assert [type(x).__name__ for x in layers] == [
        "ServerErrorMiddleware",  # the fast path: GuardMiddleware's last-resort 500
        "GuardMiddleware",  # copied, with the same settings
        "ExceptionMiddleware",  # the fast path: ProvisionError → provision_error_response
        "Router",
    ]
    assert set(app.exception_handlers) == {ProvisionError, HTTPException}
    guard = layers[1]
    copied = fastpath._build(app)
    assert isinstance(copied, GuardMiddleware)
    assert copied.metrics is guard.metrics
    assert (copied.max_body_bytes, copied.access_log) == (guard.max_body_bytes, guard.access_log)
    assert copied.max_body_bytes == 4096
    # The same handler behind both: the route the router would pick is the one served.
    route = next(r for r in app.router.routes if getattr(r, "path", "") == fastpath.TEMPLATE)
    assert route.endpoint is messages.send_messages
