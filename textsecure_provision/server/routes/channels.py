"""The temp websocket (§4.1): a one-message, short-lived channel to a new device.

Life of a channel::

    OPEN ──publish (PUT /v1/messages/U)──▶ CLAIMED ──frame sent, close 1000──▶ done
      │
      ├──ttl passes──────────────▶ CLOSED (close 1001; later PUT → 404)
      ├──client sends anything───▶ CLOSED (close 1008: the channel carries nothing else)
      └──client disconnects──────▶ CLOSED

The websocket itself is served by ``server/channel_socket.py`` in front of uvicorn, the
one implementation of §4.1 (its ``TRANSITIONS`` table is the states above, socket
included); the delivery half is ``PUT /v1/messages/{uuid}`` (routes/messages.py). What
is left for the ASGI app is a plain GET on the path, answered 426.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision.server.handlers import error_body, json_response

CLOSE_DELIVERED = 1000  # §4.1 step 2
CLOSE_EXPIRED = 1001  # §4.1 step 3
CLOSE_CLIENT_SPOKE = 1008  # §4.1 step 4: policy violation
PATH = "/v1/temp_websocket"


def message_frame(body_b64: str) -> str:
    """The one frame a channel relays (§4.1 step 2). ``body_b64`` is base64 (of the bytes
    read_body decoded): its alphabet needs no JSON escaping, so this is what
    ``json.dumps({"message": body_b64}, separators=(",", ":"))`` gives, without its cost."""
    return '{"message":"' + body_b64 + '"}'


async def not_a_websocket(request: Request) -> Response:
    """A plain GET on the websocket path: 426, so the answer says what is missing."""
    return json_response(
        error_body(426, "this endpoint needs a websocket upgrade (§4.1)"),
        426,
        {"Upgrade": "websocket", "Connection": "Upgrade"},
    )


routes: list[Any] = [Route(PATH, not_a_websocket, methods=["GET"])]
