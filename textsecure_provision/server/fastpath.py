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

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.fanout.memory import MemoryFanOut
from textsecure_provision.server.handlers import empty_json_response, provision_error_response
from textsecure_provision.server.limits import MemoryRateLimiter
from textsecure_provision.server.limits.persistent import PersistentRateLimiter
from textsecure_provision.server.middleware import GuardMiddleware
from textsecure_provision.server.routes import messages
from textsecure_provision.server.storage.sqlite import SqliteStorage

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


# -- the same route below ASGI: uvicorn's HTTP protocol, with this one request served in it ----

_PREFIX_BYTES = PREFIX.encode()
_CHANNEL_PATH_BYTES = len(_PREFIX_BYTES) + 36  # /v1/messages/ + a canonical uuid


class _NoEvent:
    """What uvicorn calls on a cycle's ``message_event``; nothing waits on it here."""

    __slots__ = ()

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()
_EMPTY = empty_json_response()  # what send_messages answers, so what the fast path writes
_EMPTY_HEADERS: list[tuple[bytes, bytes]] = list(_EMPTY.raw_headers)
_EMPTY_BODY = bytes(_EMPTY.body)


class _FastCycle:
    """Stands in for uvicorn's ``RequestResponseCycle`` while a channel PUT is served, so
    that uvicorn's own bookkeeping (pipelining, shutdown, disconnects) treats it as one."""

    __slots__ = ("body", "disconnected", "keep_alive", "message_event", "more_body",
                 "response_complete", "scope")  # fmt: skip

    def __init__(self, scope: Scope, keep_alive: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT


_relay_class: Any = None


def relay_http_protocol() -> Any:
    """The HTTP/1.1 protocol class for every connection that is not a channel socket:
    uvicorn_adapter.GuardedHttpProtocol (its head deadline, size bound and socket budgets)
    with the channel PUT served inside it (``RelayHttpProtocol``)."""
    global _relay_class
    if _relay_class is None:
        _relay_class = _relay_http_protocol()
    return _relay_class


def _relay_http_protocol() -> Any:
    import logging
    import time

    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    from textsecure_provision.server.handlers import INTERNAL_ERROR_BODY
    from textsecure_provision.server.middleware import access_log, new_request_id
    from textsecure_provision.server.uvicorn_adapter import GuardedHttpProtocol

    log = logging.getLogger("textsecure_provision.server")

    class ChannelPut(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol, except ``PUT /v1/messages/{uuid}`` (the master's
        half of every rendezvous): that request is served here, without uvicorn's ASGI
        cycle, ``GuardMiddleware``, Starlette's ``Request`` and ``Response``, and answered in
        one write. What runs is what runs on the ASGI route: the same handler
        (``routes.messages.deliver``, all of ``send_messages`` but its ``Request`` and its
        ``{}``) over the same kind of scope, the same error mapping, the request id, the
        metrics under the route template, the access log line and the last-resort 500.
        Anything unusual (a query string, percent-escapes, no ``Content-Length`` or one
        over the body limit, ``Expect: 100-continue``, chunked bodies, pipelined requests
        behind a busy one, trusted proxy headers, a concurrency limit) takes uvicorn's
        ordinary path."""

        def on_headers_complete(self) -> None:
            if not self._take_channel_put():
                super().on_headers_complete()

        def _take_channel_put(self) -> bool:
            url = self.url
            parser = self.parser
            if (
                len(url) != _CHANNEL_PATH_BYTES
                or not url.startswith(_PREFIX_BYTES)
                or b"%" in url
                or b"?" in url
                or b"/" in url[len(_PREFIX_BYTES) :]
                or parser.get_method() != b"PUT"
                or self.expect_100_continue
                or self.root_path
                or self.limit_concurrency is not None
                or self.config.proxy_headers
                or parser.should_upgrade()
            ):
                return False
            existing = self.cycle
            if existing is not None and not existing.response_complete:
                return False  # behind a busy request: uvicorn queues it
            app = self.config.app
            put = _put_context(app)
            if put is None:
                return False
            svc = put.svc
            length = None
            for name, value in self.headers:
                if name == b"content-length":
                    length = value
                elif name == b"transfer-encoding":
                    return False
            if length is None or not length.isdigit() or int(length) > svc.config.max_body_bytes:
                return False
            http_version = parser.get_http_version()
            scope = self.scope
            scope["method"] = "PUT"
            if http_version != "1.1":
                scope["http_version"] = http_version
            path = url.decode("ascii")
            scope["path"] = path
            scope["raw_path"] = url
            scope["query_string"] = b""
            scope["app"] = app
            scope["path_params"] = {"destination": path[len(PREFIX) :]}
            self.cycle = _FastCycle(scope, http_version != "1.0" and parser.should_keep_alive())
            return True

        def on_message_complete(self) -> None:
            cycle = self.cycle
            if not isinstance(cycle, _FastCycle):
                super().on_message_complete()
                return
            if cycle.response_complete or not cycle.more_body:
                return
            cycle.more_body = False
            if _put_context(cycle.scope["app"]).eager:  # type: ignore[union-attr]
                run_eagerly(self._serve_channel_put(cycle), self.tasks)
            else:
                task = self.loop.create_task(self._serve_channel_put(cycle))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)

        async def _serve_channel_put(self, cycle: _FastCycle) -> None:
            started = time.perf_counter()
            scope = cycle.scope
            put = _put_context(scope["app"])
            assert put is not None
            svc = put.svc
            request_id = new_request_id()
            scope["request_id"] = request_id
            scope["route"] = put.route
            scope["endpoint"] = messages.send_messages
            body = bytes(cycle.body)

            async def read() -> bytes:
                return body

            try:
                # send_messages itself, less its Request and its Response (the same ``{}``).
                await messages.deliver(svc, scope, scope["path_params"]["destination"], read)
                status, headers, payload = 200, _EMPTY_HEADERS, _EMPTY_BODY
            except ProvisionError as exc:
                response = provision_error_response(exc)
                status, headers, payload = (
                    response.status_code,
                    response.raw_headers,
                    bytes(response.body),
                )
            except Exception:
                svc.metrics.internal_errors += 1
                log.exception("internal error in PUT %s (request %s)", TEMPLATE, request_id)
                status, payload = 500, INTERNAL_ERROR_BODY
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ]
            out = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                out += (name, b": ", value, b"\r\n")
            out += (b"x-request-id: ", request_id.encode(), b"\r\n")
            if not cycle.keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", payload)
            if not cycle.disconnected:
                self.transport.write(b"".join(out))
            cycle.response_complete = True
            elapsed = time.perf_counter() - started
            svc.metrics.observe_request("PUT", TEMPLATE, status, elapsed)
            if svc.config.access_log and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info('%s "PUT %s" %d %.1fms id=%s', client[0] if client else "-",
                                TEMPLATE, status, elapsed * 1000, request_id)  # fmt: skip
            if cycle.disconnected:
                return
            if not cycle.keep_alive:
                self.transport.close()
            else:
                self.on_response_complete()

    class RelayHttpProtocol(GuardedHttpProtocol, ChannelPut):  # type: ignore[misc]
        """GuardedHttpProtocol first (its checks of every head run, then call on), then
        ChannelPut: the order of the bases is the order in which they see a request."""

    return RelayHttpProtocol


def run_eagerly(coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
    """Run ``coro`` now, on this stack, as a task's first step would; only if it has to wait
    does the rest become a task (kept in ``tasks``, which uvicorn awaits on shutdown). A
    channel PUT usually completes without waiting (SQLite's loop-thread read, the device
    cache, the in-process fan-out), and then costs no task and no extra loop turn. Only
    for code that never needs ``asyncio.current_task()`` before its first wait
    (``asyncio.timeout`` does): see ``in_process``."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return
    task = asyncio.get_running_loop().create_task(_resume(coro, yielded))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(lambda _: _abandon(coro, yielded))


def _abandon(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """A task cancelled before its first step never ran ``_resume``: end ``coro`` (its
    ``finally`` blocks run) and what it waited for, rather than leave them pending."""
    if coro.cr_frame is not None:
        if yielded is not None:
            yielded.cancel()
        coro.close()


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Drive ``coro`` on from where ``run_eagerly`` left it: wait for what it waits for (a
    future, or None for a bare yield), then resume it; it reads the future's outcome
    itself (a cancellation of this task cancels that future, so it sees that too)."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False  # taken over, as a task's step does
                await yielded
        except BaseException as exc:
            if yielded is None or not yielded.done():  # cancelled before it could wait
                if yielded is not None:
                    yielded.cancel()
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
                continue
            # Otherwise the future's own outcome: coro.send() below hands it the same.
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class _PutContext:
    """What the channel PUT needs of its app, looked up once per app (Starlette's
    ``app.state`` is a Python ``__getattr__`` per read)."""

    __slots__ = ("eager", "route", "svc")

    def __init__(self, app: Any, svc: Any) -> None:
        self.svc = svc
        self.route = _channel_route(app)
        self.eager = in_process(svc)  # the backends are chosen at start and never change


def _put_context(app: Any) -> _PutContext | None:
    put: _PutContext | None = getattr(app, "_channel_put_context", None)
    if put is None:
        svc = getattr(getattr(app, "state", None), "services", None)
        if svc is None:
            return None
        put = _PutContext(app, svc)
        app._channel_put_context = put
    return put


def in_process(svc: Any) -> bool:
    """SQLite, the in-process fan-out and limiter: nothing on a rendezvous's path needs to
    run inside a task (redis-py and asyncpg use ``asyncio.timeout``, which does), so
    ``run_eagerly`` may start it. The default limiter with SQLite is the memory one with
    its guess budgets written to that SQLite (limits/persistent.py): in-process too."""
    limiter = svc.limits.limiter
    if isinstance(limiter, PersistentRateLimiter):
        if not isinstance(limiter.storage, SqliteStorage):
            return False
        limiter = limiter.memory
    return (
        isinstance(svc.storage, SqliteStorage)
        and isinstance(svc.fanout, MemoryFanOut)
        and isinstance(limiter, MemoryRateLimiter)
    )


def _channel_route(app: Any) -> Route:
    route: Route | None = getattr(app.state, "message_put_route", None)
    if route is None:
        route = next(
            r
            for r in app.router.routes
            if isinstance(r, Route) and r.path == TEMPLATE and "PUT" in (r.methods or ())
        )
        app.state.message_put_route = route
    return route
