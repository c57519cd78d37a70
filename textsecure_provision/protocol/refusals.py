"""Turning msgspec's refusal of a body into one sentence that names the field.

msgspec says ``Expected `int` >= 0 - at `$.preKeys[3].keyId```; the client and
the server say ``preKeys[3].keyId must be between 0 and 4294967295``. The
sentence is built from the kind of refusal and the declared type at that path
(``msgspec.inspect``), so the bounds and lengths quoted are the declared ones.
A value is never quoted (only a binary field's decoded length). Rules a type
cannot say raise ``FieldError`` from a body's ``__post_init__``.
``tests/unit/test_bodies.py`` pins every sentence, so a msgspec release that
rewords its errors shows up there.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec
import msgspec.inspect as mi


class FieldError(ValueError):
    """Raised by a ``__post_init__``: ``field`` (relative to the object) ``text``."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(f"{field} {text}")
        self.field = field
        self.text = text


class RawBody:
    """The raw body, parsed without a type only if a sentence needs a value's length."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_TYPE = re.compile(r"Expected `[^`]+`, got `[^`]+`")
_BOUND = re.compile(r"Expected `[^`]+` (?:>=|<=|>|<) ")
_LENGTH = re.compile(r"Expected `[^`]+` of length ")


def _steps(path: str) -> list[str | int]:
    return [m[1] if m[1] is not None else int(m[2]) for m in _STEP.finditer(path)]


def _label(steps: list[str | int]) -> str:
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "the body"


def _info_at(kind: type[Any], steps: list[str | int]) -> mi.Type:
    node: mi.Type = mi.type_info(kind)
    for step in steps:
        node = _unwrap(node)
        if isinstance(step, int) and isinstance(node, mi.ListType):
            node = node.item_type
        elif isinstance(node, mi.StructType):
            node = next(f.type for f in node.fields if f.encode_name == step)
        elif isinstance(node, mi.DictType):
            node = node.value_type
    return node


def _unwrap(node: mi.Type) -> mi.Type:
    """``X | None`` → ``X`` (null is always allowed where a field is optional), and the
    type under its documentation."""
    while True:
        if isinstance(node, mi.Metadata):
            node = node.type
            continue
        if isinstance(node, mi.UnionType):
            rest = [t for t in node.types if not isinstance(t, mi.NoneType)]
            if len(rest) == 1:
                node = rest[0]
                continue
        return node


def _noun(node: mi.Type) -> str:
    node = _unwrap(node)
    if isinstance(node, mi.IntType):
        return "an integer"
    if isinstance(node, mi.BoolType):
        return "true or false"
    if isinstance(node, mi.StrType):
        if node.max_length is not None:
            return f"a string of at most {node.max_length} characters"
        return "a string"
    if isinstance(node, mi.BytesType):
        return "a base64 string"
    if isinstance(node, mi.ListType):
        return "a JSON array"
    if isinstance(node, (mi.StructType, mi.DictType)):
        return "a JSON object"
    if isinstance(node, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in node.values)
    if isinstance(node, mi.UnionType):
        return " or ".join(_noun(t) for t in node.types if not isinstance(t, mi.NoneType))
    return "of another type"


def _value_at(doc: object, steps: list[str | int]) -> object:
    if isinstance(doc, RawBody):
        try:
            doc = msgspec.json.decode(doc.raw)
        except (msgspec.DecodeError, RecursionError):
            return None
    for step in steps:
        if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
            doc = doc[step]
        elif isinstance(step, str) and isinstance(doc, dict):
            doc = doc.get(step)
        else:
            return None
    return doc


def _byte_length(value: object) -> int | None:
    if isinstance(value, bytes):
        return len(value)
    if not isinstance(value, str):
        return None
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None


def describe(exc: msgspec.ValidationError, kind: type[Any], doc: object = None) -> str:
    """One sentence naming the field by its path (never its value)."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    msg, steps = match["msg"], _steps(match["path"] or "")
    cause = exc.__cause__
    if isinstance(cause, FieldError):
        return f"{_label([*steps, cause.field])} {cause.text}"
    if missing := _MISSING.match(msg):
        return f"{_label([*steps, missing[1]])} is required"
    node = _unwrap(_info_at(kind, steps))
    label = _label(steps)
    if _TYPE.match(msg) or msg.startswith("Invalid enum value"):
        return f"{label} must be {_noun(node)}"
    if msg.startswith("Invalid base64"):
        return f"{label} is not valid base64"
    if _BOUND.match(msg) and isinstance(node, mi.IntType):
        lo = node.ge if node.ge is not None else node.gt
        hi = node.le if node.le is not None else node.lt
        if lo is not None and hi is not None:
            return f"{label} must be between {lo} and {hi}"
        bound = f"at least {lo}" if lo is not None else f"at most {hi}"
        return f"{label} must be {bound}"
    if _LENGTH.match(msg):
        if isinstance(node, mi.BytesType) and node.min_length == node.max_length:
            got = _byte_length(_value_at(doc, steps))
            suffix = "" if got is None else f", got {got}"
            return f"{label} must be {node.min_length} bytes{suffix}"
        if isinstance(node, mi.ListType) and node.min_length == 1 and node.max_length is None:
            return f"{label} is empty"
        if isinstance(node, mi.StrType):
            return f"{label} must be {_noun(node)}"
    return f"{label}: {msg[:1].lower()}{msg[1:]}"
