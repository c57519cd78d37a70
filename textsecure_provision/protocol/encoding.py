"""Base64 and phone-number values as the contract spells them (§2).

Strict base64 (standard alphabet, padded) is what this project writes and what
JSON bodies must hold; the liberal reader (also base64url, missing padding) is
only for the QR link (§3).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NewType

from textsecure_provision.errors import MessageFormatError, PhoneNumberError

PhoneNumber = NewType("PhoneNumber", str)

_E164 = re.compile(r"\+[0-9]{8,15}")
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_ANY_B64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def b64encode(data: bytes) -> str:
    """Standard, padded base64 (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, *, name: str = "value") -> bytes:
    """Strict standard base64 with padding; anything else is ``MessageFormatError``."""
    if not isinstance(text, str):
        raise MessageFormatError(f"{name} must be a base64 string")
    if len(text) % 4 or not _STD_B64.fullmatch(text):
        raise MessageFormatError(f"{name} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageFormatError(f"{name} is not valid base64") from exc


def b64decode_liberal(text: str, *, name: str = "value") -> bytes:
    """Standard or URL-safe base64, padding optional (§3: what link parsers accept)."""
    if not isinstance(text, str) or not _ANY_B64.fullmatch(text):
        raise MessageFormatError(f"{name} is not valid base64")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise MessageFormatError(f"{name} is not valid base64 (bad length)")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageFormatError(f"{name} is not valid base64") from exc


def parse_phone_number(text: object) -> PhoneNumber:
    """E.164: '+' then 8 to 15 digits (§2). Nothing is normalised away."""
    if not isinstance(text, str) or not _E164.fullmatch(text):
        raise PhoneNumberError("the phone number must be '+' followed by 8 to 15 digits")
    return PhoneNumber(text)
