"""The temp websocket (§4.1): a one-message, short-lived channel to a new device.

Life of a channel::

    OPEN ──publish (PUT /v1/messages/U)──▶ CLAIMED ──frame sent, close 1000──▶ done
      │
      ├──ttl passes──────────────▶ CLOSED (close 1001; later PUT → 404)
      ├──client sends anything───▶ CLOSED (close 1008: the channel carries nothing else)
      └──client disconnects──────▶ CLOSED

Every transition out of OPEN first leaves OPEN synchronously, so exactly one of
them wins. Delivery runs in the PUT's own task (the sink writes the frame and
closes), and expiry is a loop timer, so an idle channel costs one ASGI task
parked in ``receive()``, one timer handle and this small object: no extra task.

Memory (the target is ≤ 10 KiB per idle channel, socket included): the channel
is served as plain ASGI, straight from ``RelayApp`` (app.py), not through
Starlette's middleware, router and ``WebSocket`` wrappers; those would keep
about a dozen more frames and objects alive for each idle channel.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.fanout.base import ChannelId
from textsecure_provision.server.handlers import error_body, json_response, provision_error_response
from textsecure_provision.server.services import Services

log = logging.getLogger(__name__)

CLOSE_DELIVERED = 1000  # §4.1 step 2
CLOSE_EXPIRED = 1001  # §4.1 step 3
CLOSE_CLIENT_SPOKE = 1008  # §4.1 step 4: policy violation
CLOSE_UNAVAILABLE = 1011
PATH = "/v1/temp_websocket"


def message_frame(body_b64: str) -> str:
    """The one frame a channel relays (§4.1 step 2)."""
    return json.dumps({"message": body_b64}, separators=(",", ":"))


class _State(enum.Enum):
    OPEN = 1
    CLAIMED = 2
    CLOSED = 3


_closing_tasks: set[asyncio.Task[None]] = set()  # strong refs until each close finishes


class _Channel:
    __slots__ = ("id", "send", "state", "svc", "timer")

    def __init__(self, send: Send, svc: Services) -> None:
        self.send = send
        self.svc = svc
        self.id = ChannelId(str(uuid.uuid4()))
        self.state = _State.OPEN
        self.timer: asyncio.TimerHandle | None = None

    async def deliver(self, frame: str) -> bool:
        """The fan-out sink: send the one frame and close 1000 (§4.1 step 2)."""
        if self.state is not _State.OPEN:
            return False
        self.state = _State.CLAIMED
        self.cancel_timer()
        try:
            await self.send({"type": "websocket.send", "text": frame})
            await self.send({"type": "websocket.close", "code": CLOSE_DELIVERED})
        except Exception:  # the client vanished between the claim and the write
            log.debug("channel socket gone while delivering")
            return False
        return True

    def expire(self) -> None:
        """Timer callback: close 1001 (§4.1 step 3)."""
        self.timer = None
        if self.state is _State.OPEN:
            self.svc.metrics.channels_expired += 1
            self.close_soon(CLOSE_EXPIRED)

    def close_soon(self, code: int) -> None:
        self.state = _State.CLOSED
        self.cancel_timer()
        task = asyncio.get_running_loop().create_task(self._close(code))
        _closing_tasks.add(task)
        task.add_done_callback(_closing_tasks.discard)

    async def _close(self, code: int) -> None:
        await self.svc.fanout.close_channel(self.id)  # unreachable first, then closed
        try:
            await self.send({"type": "websocket.close", "code": code})
        except Exception:
            log.debug("channel socket already gone")

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _deny(scope: Scope, send: Send, exc: ProvisionError) -> None:
    """Answer the upgrade request with a plain HTTP error (e.g. 429 + Retry-After)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})  # the server says 403
        return
    response = provision_error_response(exc)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "websocket.http.response.body", "body": response.body})


async def serve_channel(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /v1/temp_websocket`` as raw ASGI; 429 (before the upgrade) when one address
    opens too many, 503 if the fan-out cannot take the channel."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:
        await svc.limits.enforce("channel_create_address", _client_address(scope))
    except ProvisionError as exc:
        await _deny(scope, send, exc)
        return
    channel = _Channel(send, svc)
    channel.id = svc.fanout.route_channel_id(channel.id)
    try:
        await svc.fanout.open_channel(channel.id, channel.deliver, svc.config.channel_ttl_s)
    except ProvisionError as exc:
        await _deny(scope, send, exc)
        return
    svc.metrics.channels_opened += 1
    svc.metrics.open_channels += 1
    try:
        await send({"type": "websocket.accept"})
        # Registered before the uuid leaves, so a PUT right after it always finds the channel.
        frame = json.dumps({"uuid": channel.id}, separators=(",", ":"))
        await send({"type": "websocket.send", "text": frame})
        channel.timer = asyncio.get_running_loop().call_later(
            svc.config.channel_ttl_s, channel.expire
        )
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            if channel.state is _State.OPEN:  # §4.1 step 4: it carries nothing else
                channel.close_soon(CLOSE_CLIENT_SPOKE)
    except Exception:
        log.debug("channel socket failed", exc_info=True)
    finally:
        channel.cancel_timer()
        svc.metrics.open_channels -= 1
        if channel.state is _State.OPEN:  # the client went away first
            channel.state = _State.CLOSED
            await svc.fanout.close_channel(channel.id)


async def not_a_websocket(request: Request) -> Response:
    """A plain GET on the websocket path: 426, so the answer says what is missing."""
    return json_response(
        error_body(426, "this endpoint needs a websocket upgrade (§4.1)"),
        426,
        {"Upgrade": "websocket", "Connection": "Upgrade"},
    )


# The websocket itself is dispatched by RelayApp (app.py) before Starlette; this route
# answers a plain HTTP GET on the same path.
routes: list[Any] = [Route(PATH, not_a_websocket, methods=["GET"])]
