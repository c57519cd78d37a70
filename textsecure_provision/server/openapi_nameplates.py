"""The short-code endpoints' part of /openapi.json (routes/nameplates.py), kept apart so
that the main document (openapi.py) only merges it in."""

from __future__ import annotations

from typing import Any

from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.nameplates.base import MAX_MESSAGE_BYTES, MAX_MESSAGES_PER_SIDE

_B64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_B64_MAX = (MAX_MESSAGE_BYTES + 2) // 3 * 4


def nameplate_schemas() -> dict[str, Any]:
    message = {"type": "string", "pattern": _B64, "minLength": 4, "maxLength": _B64_MAX}
    return {
        "Capabilities": {
            "type": "object",
            "required": ["shortCodes"],
            "properties": {"shortCodes": {"type": "boolean"}},
        },
        "NameplateRequest": {
            "type": "object",
            "required": ["channel"],
            "properties": {"channel": {"type": "string", "pattern": _UUID}},
        },
        "Nameplate": {
            "type": "object",
            "required": ["nameplate", "token", "expiresIn"],
            "properties": {
                "nameplate": {"type": "integer", "minimum": 1, "maximum": 999_999},
                "token": {"type": "string", "pattern": _B64},
                "expiresIn": {"type": "integer", "minimum": 0},
            },
        },
        "NameplateClaim": {
            "type": "object",
            "required": ["token", "messages"],
            "properties": {
                "token": {"type": "string", "pattern": _B64},
                "messages": {"type": "array", "items": message},
            },
        },
        "MailboxPost": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "messages": {
                    "type": "array",
                    "items": message,
                    "minItems": 1,
                    "maxItems": MAX_MESSAGES_PER_SIDE,
                }
            },
        },
        "MailboxMessages": {
            "type": "object",
            "required": ["messages", "claimed"],
            "properties": {
                "messages": {"type": "array", "items": message},
                "claimed": {"type": "boolean"},
            },
        },
    }


def nameplate_paths(
    config: ServerConfig,
    responses: Any,
    ref: Any,
    json_body: Any,
    basic: list[dict[str, list[str]]],
) -> dict[str, Any]:
    """``responses(ok_schema, *statuses)``, ``ref(name)`` and ``json_body(name)`` are
    openapi.py's own helpers, so both parts describe errors the same way."""
    nameplate = {
        "name": "nameplate",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[1-9][0-9]{0,5}$"},
        "description": "the number at the start of a short code",
    }
    token = {
        "name": "X-Nameplate-Token",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": _B64},
        "description": "the side's token (from allocating or from claiming)",
    }
    off = "; 404 when the server offers no short codes"
    return {
        "/v1/capabilities": {
            "get": {
                "summary": "What this server offers beyond §4 (short codes)",
                "operationId": "capabilities",
                "responses": responses(ref("Capabilities")),
            }
        },
        "/v1/nameplates": {
            "post": {
                "summary": "A nameplate for an open temp channel (the new device)",
                "operationId": "allocateNameplate",
                "description": "No auth, as the channel itself. The nameplate lives as long as "
                f"the channel (at most {config.channel_ttl_s:g} s){off}.",
                "requestBody": json_body("NameplateRequest"),
                "responses": responses(ref("Nameplate"), 400, 404, 409, 413, 429, 503),
            }
        },
        "/v1/nameplates/{nameplate}/claim": {
            "put": {
                "summary": "Claim a nameplate: the master's one attempt",
                "operationId": "claimNameplate",
                "description": "A second claim is 409; a burned nameplate 410. Rate limited "
                f"per address and per account{off}.",
                "security": basic,
                "parameters": [nameplate],
                "responses": responses(ref("NameplateClaim"), 400, 401, 404, 409, 410, 429, 503),
            }
        },
        "/v1/nameplates/{nameplate}/messages": {
            "put": {
                "summary": "Post to the nameplate's mailbox (this side's list)",
                "operationId": "postNameplateMessages",
                "description": f"At most {MAX_MESSAGES_PER_SIDE} messages per side, "
                f"{MAX_MESSAGE_BYTES} bytes each{off}.",
                "parameters": [nameplate, token],
                "requestBody": json_body("MailboxPost"),
                "responses": responses(ref("Empty"), 400, 401, 404, 410, 413, 503),
            },
            "get": {
                "summary": "The other side's messages from ?after=K on, waiting up to ?wait=S",
                "operationId": "readNameplateMessages",
                "parameters": [
                    nameplate,
                    token,
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 99},
                    },
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0},
                        "description": f"seconds, clamped to {config.max_wait_s:g}",
                    },
                ],
                "responses": responses(ref("MailboxMessages"), 400, 401, 404, 410, 503),
            },
        },
        "/v1/nameplates/{nameplate}/burn": {
            "post": {
                "summary": "Burn the nameplate: a key confirmation failed (either side)",
                "operationId": "burnNameplate",
                "parameters": [nameplate, token],
                "responses": responses(ref("Empty"), 400, 401, 404, 503),
            }
        },
    }
