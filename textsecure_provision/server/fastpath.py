"""``PUT /v1/messages/{destination}`` without Starlette's router and its middleware layers.

The master's PUT to a temp channel is half of every rendezvous (§4.1), and
profiling the B3 benchmark showed Starlette's layers (ServerErrorMiddleware,
ExceptionMiddleware, the router trying each route's regex, ``request_response``)
costing more server CPU than the handler itself. ``RelayApp`` (app.py) sends
this one route here instead. Nothing of the behaviour changes, because the
same pieces run:

* ``GuardMiddleware`` (request id, body limit 413, metrics under the route
  template, access log, the last-resort 500), built with the app's own
  settings;
* the same handler, ``routes.messages.send_messages``, with the same
  ``path_params`` and the matched ``Route`` in the scope, as the router sets;
* ``ProvisionError`` → ``provision_error_response``, as the app's exception
  handler does (the handler raises nothing else on purpose; anything else is a
  500 from ``GuardMiddleware``, as before).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.handlers import provision_error_response
from textsecure_provision.server.middleware import GuardMiddleware
from textsecure_provision.server.routes import messages

PREFIX = "/v1/messages/"
TEMPLATE = PREFIX + "{destination}"
_STATE_KEY = "message_put_fast_path"


def is_message_put(scope: Scope) -> bool:
    """``PUT /v1/messages/{one non-empty segment}``, as the route's ``[^/]+`` matches it."""
    if scope["method"] != "PUT" or scope.get("root_path"):
        return False
    path: str = scope["path"]
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and "/" not in path[len(PREFIX) :]


async def serve(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    handler: ASGIApp | None = getattr(app.state, _STATE_KEY, None)
    if handler is None:
        handler = _build(app)
        setattr(app.state, _STATE_KEY, handler)
    scope["app"] = app
    scope["path_params"] = {"destination": scope["path"][len(PREFIX) :]}
    await handler(scope, receive, send)


def _build(app: Any) -> ASGIApp:
    svc = app.state.services
    route = next(
        r
        for r in app.router.routes
        if isinstance(r, Route) and r.path == TEMPLATE and "PUT" in (r.methods or ())
    )

    async def put_message(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route  # what the router sets: the metrics and the log use its path
        scope["endpoint"] = messages.send_messages
        try:
            response = await messages.send_messages(Request(scope, receive))
        except ProvisionError as exc:
            response = provision_error_response(exc)
        await response(scope, receive, send)

    return GuardMiddleware(
        put_message,
        metrics=svc.metrics,
        max_body_bytes=svc.config.max_body_bytes,
        access_log=svc.config.access_log,
    )
