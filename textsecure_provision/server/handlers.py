"""The one place an error becomes an HTTP answer (§4: JSON ``{"error", "code"}``).

* ``ProvisionError`` → its ``http_status``, its message, plus ``Retry-After`` for
  ``RateLimitedError`` and the device lists for 409/410 (§4 message rules).
* Starlette's ``HTTPException`` (unknown route 404, wrong method 405) → the same
  JSON shape, keeping headers such as ``Allow``.
* Anything else is caught by ``GuardMiddleware`` (middleware.py): logged with
  the request id, answered 500 ``{"error": "internal error", "code": 500}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from textsecure_provision.errors import (
    MismatchedDevicesError,
    ProvisionError,
    RateLimitedError,
    StaleDevicesError,
)

JSON_TYPE = "application/json"
log = logging.getLogger(__name__)


def json_response(
    doc: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


_EMPTY_OBJECT = b"{}"  # json.dumps({})


def empty_json_response() -> Response:
    """``json_response({})``, without encoding the same two bytes on every request."""
    return Response(_EMPTY_OBJECT, media_type=JSON_TYPE)


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": status, **extra}


def provision_error_response(exc: ProvisionError) -> Response:
    status = exc.http_status
    if status is None:  # a client-only error raised in the server: a bug, answered as one
        log.error("client-only error %s raised in the server", type(exc).__name__)
        return Response(INTERNAL_ERROR_BODY, status_code=500, media_type=JSON_TYPE)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    if isinstance(exc, MismatchedDevicesError):
        extra = {"missingDevices": exc.missing, "extraDevices": exc.extra}
    if isinstance(exc, StaleDevicesError):
        extra = {"staleDevices": exc.stale}
    return json_response(error_body(status, exc.message, **extra), status, headers)


async def handle_provision_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProvisionError)
    return provision_error_response(exc)


_HTTP_MESSAGES = {
    404: "no such endpoint",
    405: "method not allowed on this endpoint",
}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    return json_response(error_body(exc.status_code, message), exc.status_code, exc.headers)


INTERNAL_ERROR_BODY = json.dumps(error_body(500, "internal error"), separators=(",", ":")).encode()
