"""Turning request bodies and path values into checked values, or a 400.

Every check raises an ``InvalidInputError`` subclass that names the field (never
its value), so malformed JSON, wrong types, bad base64 and wrong key lengths
all end as 400 through the one error handler, never as a 500. Unknown fields
are ignored (forward compatibility); booleans are not integers here, although
Python thinks they are.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from textsecure_provision.crypto.keys import PublicKey
from textsecure_provision.errors import InvalidInputError, MessageFormatError
from textsecure_provision.protocol.encoding import b64decode

UINT32_MAX = 2**32 - 1
INT31_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1
MAX_NAME_CHARS = 256


def _reject_constant(name: str) -> Any:
    raise MessageFormatError(f"the JSON body holds {name}, which is not a number")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (the body limit is enforced while it is read)."""
    raw = await request.body()
    if not raw:
        raise MessageFormatError("the request needs a JSON body")
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MessageFormatError("the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise MessageFormatError("the body must be a JSON object")
    return doc


def get_int(doc: dict[str, Any], name: str, *, lo: int = 0, hi: int = INT63_MAX) -> int:
    value = doc.get(name)
    if value is None:
        raise MessageFormatError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageFormatError(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise MessageFormatError(f"{name} must be between {lo} and {hi}")
    return value


def get_optional_int(
    doc: dict[str, Any], name: str, *, lo: int = 0, hi: int = INT63_MAX
) -> int | None:
    return None if doc.get(name) is None else get_int(doc, name, lo=lo, hi=hi)


def get_bool(doc: dict[str, Any], name: str, *, default: bool) -> bool:
    value = doc.get(name, default)
    if not isinstance(value, bool):
        raise MessageFormatError(f"{name} must be true or false")
    return value


def get_optional_name(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise MessageFormatError(f"{name} must be a string of at most {MAX_NAME_CHARS} characters")
    return value


def get_object(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise MessageFormatError(f"{name} must be a JSON object")
    return value


def get_list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if not isinstance(value, list):
        raise MessageFormatError(f"{name} must be a JSON array")
    return value


def get_bytes(doc: dict[str, Any], name: str) -> bytes:
    """Strict padded standard base64 (§2)."""
    if doc.get(name) is None:
        raise MessageFormatError(f"{name} is required")
    return b64decode(doc.get(name), name=name)


def get_public_key(doc: dict[str, Any], name: str) -> bytes:
    """A 33-byte serialized Curve25519 key, 0x05 first (§2); returned serialized."""
    return PublicKey.from_bytes(get_bytes(doc, name), name=name).serialize()


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
