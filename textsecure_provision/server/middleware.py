"""The outermost layer of every HTTP request: id, body limit, timing, last-resort 500.

One pure-ASGI middleware (no BaseHTTPMiddleware: it costs a task per request),
so a request passes through a single extra frame:

* gives the request an id (``X-Request-Id`` on the answer, in every log line);
* refuses a body over the limit with 413 (§4): at once from ``Content-Length``,
  or while streaming when there is none or it lies;
* turns any exception no handler took into 500 ``{"error": "internal error"}``,
  logged here with the id and the traceback, never sent to the client;
* records latency per route *template* and writes the access log line. The
  concrete path is never logged: it may hold a code (``/v1/devices/{code}``).
"""

from __future__ import annotations

import itertools
import logging
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textsecure_provision.errors import TooLargeError
from textsecure_provision.server.handlers import INTERNAL_ERROR_BODY, provision_error_response
from textsecure_provision.server.metrics import Metrics

log = logging.getLogger("textsecure_provision.server")

# Request ids only need to be unique in the logs, not secret: a per-process prefix and a
# counter, instead of os.urandom (a syscall, measurable at thousands of requests per second).
_ID_PREFIX = os.urandom(3).hex()
_ids = itertools.count(1)
access_log = logging.getLogger("textsecure_provision.server.access")


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids):x}"


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        scope["request_id"] = request_id
        status = 0
        limit = self.max_body_bytes
        received = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLargeError(f"the body is over {limit // 1024} KiB")
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                response = provision_error_response(
                    TooLargeError(f"the body is over {limit // 1024} KiB")
                )
                response.headers["connection"] = "close"
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        except Exception:
            self.metrics.internal_errors += 1
            route = _route(scope)
            log.exception(
                "internal error in %s %s (request %s)", scope["method"], route, request_id
            )
            if status == 0:
                status = 500
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": INTERNAL_ERROR_BODY})
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    '%s "%s %s" %d %.1fms id=%s',
                    scope["client"][0] if scope.get("client") else "-",
                    scope["method"],
                    route,
                    status,
                    elapsed * 1000,
                    request_id,
                )


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "(no route)"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
