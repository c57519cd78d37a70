"""Turning request bodies and path values into checked values, or a 400.

Bodies are declared in ``protocol/bodies.py`` (shared with the client);
``read_body`` decodes one into its declaration. Every refusal is an
``InvalidInputError`` that names the field (never its value), so malformed
JSON, wrong types, bad base64 and wrong key lengths all end as 400 through the
one error handler, never as a 500. The body limit (413) is enforced by
``GuardMiddleware`` while the body is read, before any of this runs.
"""

from __future__ import annotations

import math
from typing import TypeVar

from starlette.requests import Request

from textsecure_provision.errors import InvalidInputError, MessageFormatError
from textsecure_provision.protocol.bodies import INT31_MAX, decode

T = TypeVar("T")


async def read_body(request: Request, kind: type[T]) -> T:
    """The JSON body as ``kind`` (a ``protocol.bodies`` declaration)."""
    return parse_body(await request.body(), kind)


def parse_body(raw: bytes, kind: type[T]) -> T:
    """``read_body`` on a body already read."""
    if not raw:
        raise MessageFormatError("the request needs a JSON body")
    return decode(raw, kind)


def parse_wait(text: str | None, max_wait_s: float) -> float:
    """``?wait=S`` (seconds, ≥ 0, clamped to the server's maximum)."""
    if text is None or text == "":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError("wait must be a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError("wait must be a number of seconds, 0 or more")
    return min(value, max_wait_s)


def parse_device_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) < 1:
        raise InvalidInputError("the device id must be a positive integer")
    value = int(text)
    if value > INT31_MAX:
        raise InvalidInputError("the device id is too large")
    return value
