"""The one place that depends on uvicorn's internals: its httptools HTTP/1.1 protocol, with
the connection budgets of the channel socket applied to every later request.

``channel_socket.ChannelSocket`` reads the first request head of every connection; what is
not a websocket upgrade is handed, bytes unchanged, to ``GuardedHttpProtocol`` below, which
then owns the connection for its keep-alive life. uvicorn itself would let one connection

* hold an unfinished request head forever (its keep-alive timer stops at the first byte)
  and grow it without bound (httptools buffers a header until it ends);
* switch a keep-alive connection to a websocket while a pipelined earlier response is still
  being written, so that response lands inside the websocket stream, and drop any bytes
  that followed the upgrade request in the same read.

So this subclass adds, per request: a deadline for the head (408), a size bound for it
(431), and a pipelined upgrade that waits for the responses before it and keeps the bytes
after it. It also keeps the connection's slot in the per-address socket count until the
connection ends or becomes a channel socket.

uvicorn has no public API for any of this; the attributes and methods used here are listed
in ``USED_INTERNALS`` and checked by tests/integration/test_uvicorn_adapter.py, and pyproject.toml
pins uvicorn to the versions that test has passed on (``UVICORN_VERSIONS``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from textsecure_provision.server.channel_socket import answer_and_linger, plain_error

UVICORN_VERSIONS = ">=0.54,<0.55"  # the same range as pyproject.toml's dependency

# What this module (and channel_socket.py) reach inside uvicorn; the contract test checks
# that each still exists, so that an upgrade fails a test rather than a client.
USED_INTERNALS: dict[str, tuple[str, ...]] = {
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol": (
        "__init__",
        "connection_made",
        "connection_lost",
        "data_received",
        "handle_websocket_upgrade",
        "on_message_begin",
        "on_url",
        "on_header",
        "on_headers_complete",
        "on_response_complete",
        "send_400_response",
        "_should_upgrade",
        "_unset_keepalive_if_required",
    ),
    "uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware": ("__init__", "__call__"),
}
# Instance attributes of HttpToolsProtocol read here (set in __init__/connection_made).
USED_ATTRIBUTES = (
    "config",
    "server_state",
    "app_state",
    "transport",
    "flow",
    "parser",
    "cycle",
    "pipeline",
    "scope",
    "url",
    "headers",
    "loop",
    "connections",
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop httptools at a head over the bound."""


class GuardedHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's HTTP/1.1 protocol with a head deadline, a head size bound and ordered
    upgrades (see the module docstring). ``budgets`` is the hub of channel_socket.py."""

    def __init__(
        self, config: Any, server_state: Any, app_state: Any, *, hub: Any, slot: str | None
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state)
        self._hub = hub
        self._slot = slot  # this connection's key in hub.sockets, released exactly once
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_due = 0.0  # the current head's deadline (loop time)
        self._pending_upgrade: bytes | None = None  # bytes after a deferred upgrade request
        self._head_too_large = False
        self._refused = False

    # -- the connection ----------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._release_slot()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and half-closed: the rest is dropped
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            tail = data[exc.args[0] :] if exc.args and isinstance(exc.args[0], int) else b""
            if self._should_upgrade():
                self._upgrade(tail)
            # else (h2c and the like): uvicorn ignores it and answers the request as HTTP/1.1
            return
        except httptools.HttpParserError:
            if self._head_too_large:
                self._answer_and_close(self._hub.head_too_large())
            else:
                self.send_400_response("malformed request")
            return
        if self._in_head:
            # Counted per read (uvicorn's parser keeps an unfinished header to itself): a
            # read that also ends the previous request counts in full, which only errs on
            # the side of the bound.
            self._head_bytes += len(data)
            if self._head_bytes > self._hub.budgets.max_head_bytes:
                self._answer_and_close(self._hub.head_too_large())

    def send_400_response(self, msg: str) -> None:
        """A JSON error like every other (§4), and a lingering close (uvicorn: plain text)."""
        self._answer_and_close(plain_error(400, msg))

    # -- per request -------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        # One handle for the heads of the whole keep-alive connection: armed once, and when
        # it fires for a head that has ended, it waits for the next one (_head_timed_out).
        # A timer created and cancelled per request cost more than the request's parsing.
        due = self.loop.time() + self._hub.budgets.head_timeout_s
        self._head_due = due
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(due, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._hub.budgets.max_head_bytes:
            self._head_too_large = True
            raise _HeadTooLarge  # stops the parser: feed_data raises HttpParserCallbackError
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pending = self._pending_upgrade
        done = self.cycle is None or (self.cycle.response_complete and not self.pipeline)
        if pending is not None and done and not self.transport.is_closing():
            self._pending_upgrade = None
            self._unset_keepalive_if_required()
            self._switch(pending)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return  # between requests: the next head arms it again
        if self._head_due - self.loop.time() > 0.001:  # armed for an earlier request's head
            self._head_timer = self.loop.call_at(self._head_due, self._head_timed_out)
            return
        self._answer_and_close(self._hub.head_timed_out())

    # -- a websocket upgrade on a keep-alive connection ----------------------------------------
    def handle_websocket_upgrade(self) -> None:  # uvicorn's own entry: not used by data_received
        self._upgrade(b"")

    def _upgrade(self, tail: bytes) -> None:
        busy = (self.cycle is not None and not self.cycle.response_complete) or self.pipeline
        if busy:  # a pipelined earlier response is still owed: upgrade once it has left
            self._pending_upgrade = tail
            self.flow.pause_reading()
            return
        self._switch(tail)

    def _switch(self, tail: bytes) -> None:
        """Hand the connection to a fresh channel socket with the upgrade request as it came
        (its own version line, not uvicorn's ``HTTP/1.1``), then the bytes after it."""
        if self.scope["method"] != "GET":
            self._answer_and_close(
                plain_error(405, "a websocket upgrade is a GET", (b"allow", b"GET"))
            )
            return
        self.connections.discard(self)
        self._cancel_head_timer()  # the channel socket has its own deadlines
        version = self.scope.get("http_version", "1.1")
        head = [self.scope["method"].encode(), b" ", self.url, b" HTTP/", version.encode()]
        head.append(b"\r\n")
        for name, value in self.scope["headers"]:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        slot, self._slot = self._slot, None
        protocol = self._hub.channel_socket(slot)
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self.flow.resume_reading()
        protocol.data_received(b"".join(head) + tail)

    # -- plumbing ----------------------------------------------------------------------------------
    def _answer_and_close(self, response: bytes) -> None:
        self._cancel_head_timer()
        self._refused = True
        answer_and_linger(self.transport, response)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _release_slot(self) -> None:
        if self._slot is not None:
            self._hub.sockets.release(self._slot)
            self._slot = None
