"""The OpenAPI 3.1 document served at ``/openapi.json``, written by hand to match the routes.

Every path, method, parameter, request schema and response code the server
really produces is here (the hardening issue runs schemathesis against it).
Limits that are configurable (body size, prekeys per upload, device limit) are
filled in from the running server's config.
"""

from __future__ import annotations

from typing import Any

from textsecure_provision import __version__
from textsecure_provision.server.config import ServerConfig

E164 = r"^\+[0-9]{8,15}$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
B64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
INT31_POS = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

_STATUS_TEXT = {
    200: "OK",
    101: "Switching Protocols: the channel is open (§4.1)",
    400: "Malformed input (JSON, types, base64, key lengths, number, signature)",
    401: "Missing, malformed or wrong credentials",
    403: "Forbidden, or wrong / expired / used code",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Stale devices: a registration id changed",
    411: "Device limit reached",
    413: "Too large",
    426: "A websocket upgrade is needed",
    429: "Rate limited; see Retry-After",
    500: "Internal error (no details)",
    503: "A dependency (database, fan-out) is unavailable",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any] | None, *errors: int, ok_status: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        out[str(ok_status)] = {"description": _STATUS_TEXT[ok_status], "content": _json(ok)}
    for status in sorted({*errors, 405, 500}):
        entry: dict[str, Any] = {"description": _STATUS_TEXT[status]}
        if status == 409:
            entry["content"] = _json({"anyOf": [_ref("MismatchedDevices"), _ref("Error")]})
        elif status == 410:
            entry["content"] = _json(_ref("StaleDevices"))
        else:
            entry["content"] = _json(_ref("Error"))
        if status == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[str(status)] = entry
    return out


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_BASIC: list[dict[str, list[str]]] = [{"basic": []}]
_EMPTY = {"type": "object", "additionalProperties": False, "properties": {}}
_AUTHED = (400, 401, 429, 503)  # every authenticated endpoint may answer these


def openapi_document(config: ServerConfig) -> dict[str, Any]:
    body_limit = config.max_body_bytes
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "integer"}},
        },
        "MismatchedDevices": {
            "type": "object",
            "required": ["error", "code", "missingDevices", "extraDevices"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer", "const": 409},
                "missingDevices": {"type": "array", "items": {"type": "integer"}},
                "extraDevices": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "StaleDevices": {
            "type": "object",
            "required": ["error", "code", "staleDevices"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer", "const": 410},
                "staleDevices": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "Empty": _EMPTY,
        "DeviceAttributes": {
            "type": "object",
            "required": ["registrationId"],
            "properties": {
                "registrationId": UINT32,
                "fetchesMessages": {"type": "boolean", "default": True},
                "name": {"type": ["string", "null"], "maxLength": 256},
            },
        },
        "DeviceId": {
            "type": "object",
            "required": ["deviceId"],
            "properties": {"deviceId": INT31_POS},
        },
        "ProvisioningCode": {
            "type": "object",
            "required": ["verificationCode"],
            "properties": {"verificationCode": {"type": "string", "pattern": "^[1-9][0-9]{5,8}$"}},
        },
        "DeviceList": {
            "type": "object",
            "required": ["devices"],
            "properties": {
                "devices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "created", "lastSeen"],
                        "properties": {
                            "id": INT31_POS,
                            "name": {"type": ["string", "null"]},
                            "created": {"type": "integer", "description": "ms since the epoch"},
                            "lastSeen": {"type": "integer", "description": "ms since the epoch"},
                        },
                    },
                }
            },
        },
        "PublicKey": {
            "type": "string",
            "pattern": B64,
            "description": "base64 of a 33-byte key, 0x05 first (§2)",
        },
        "PreKey": {
            "type": "object",
            "required": ["keyId", "publicKey"],
            "properties": {"keyId": UINT32, "publicKey": _ref("PublicKey")},
        },
        "SignedPreKey": {
            "type": "object",
            "required": ["keyId", "publicKey", "signature"],
            "properties": {
                "keyId": UINT32,
                "publicKey": _ref("PublicKey"),
                "signature": {"type": "string", "pattern": B64, "description": "64 bytes"},
            },
        },
        "KeysUpload": {
            "type": "object",
            "required": ["identityKey", "signedPreKey", "preKeys"],
            "properties": {
                "identityKey": _ref("PublicKey"),
                "signedPreKey": _ref("SignedPreKey"),
                "preKeys": {
                    "type": "array",
                    "items": _ref("PreKey"),
                    "maxItems": config.max_prekeys,
                    "description": "more → 413; replaces the device's one-time prekeys",
                },
                "lastResortKey": {"oneOf": [_ref("PreKey"), {"type": "null"}]},
            },
        },
        "PreKeyCount": {
            "type": "object",
            "required": ["count"],
            "properties": {"count": {"type": "integer", "minimum": 0}},
        },
        "KeyBundles": {
            "type": "object",
            "required": ["identityKey", "devices"],
            "properties": {
                "identityKey": _ref("PublicKey"),
                "devices": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["deviceId", "registrationId", "signedPreKey"],
                        "properties": {
                            "deviceId": INT31_POS,
                            "registrationId": UINT32,
                            "signedPreKey": _ref("SignedPreKey"),
                            "preKey": _ref("PreKey"),
                        },
                    },
                },
            },
        },
        "OutgoingMessages": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": config.max_messages_per_send,
                    "items": {
                        "type": "object",
                        "required": ["type", "destinationDeviceId", "body"],
                        "properties": {
                            "type": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                            "destinationDeviceId": INT31_POS,
                            "destinationRegistrationId": UINT32,
                            "body": {"type": "string", "pattern": B64},
                            "timestamp": {"type": "integer", "minimum": 0},
                        },
                    },
                    "description": "to a channel uuid: exactly one message, only body is used",
                }
            },
        },
        "IncomingMessages": {
            "type": "object",
            "required": ["messages", "more"],
            "properties": {
                "messages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["guid", "type", "source", "sourceDevice", "timestamp", "body"],
                        "properties": {
                            "guid": {"type": "string", "format": "uuid"},
                            "type": {"type": "integer"},
                            "source": {"type": "string", "pattern": E164},
                            "sourceDevice": INT31_POS,
                            "timestamp": {"type": "integer"},
                            "body": {"type": "string", "pattern": B64},
                        },
                    },
                },
                "more": {"type": "boolean"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "version", "dependencies"],
            "properties": {
                "status": {"enum": ["ok", "degraded"]},
                "version": {"type": "string"},
                "dependencies": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"enum": ["ok", "down"]},
                            "backend": {"type": "string"},
                            "error": {"type": "string"},
                        },
                    },
                },
            },
        },
    }

    number_param = _path_param("number", {"type": "string", "pattern": E164}, "E.164 number")
    json_body = {"required": True, "content": _json({})}

    def body(schema: str) -> dict[str, Any]:
        return {**json_body, "content": _json(_ref(schema))}

    paths: dict[str, Any] = {
        "/v1/accounts/sms/code/{number}": {
            "get": {
                "summary": "Ask for a registration code to be delivered",
                "operationId": "requestRegistrationCode",
                "parameters": [number_param],
                "responses": _responses(_ref("Empty"), 400, 429, 503),
            }
        },
        "/v1/accounts/code/{code}": {
            "put": {
                "summary": "Register the master (device 1) with a registration code",
                "operationId": "registerAccount",
                "description": "Basic number:password (the new master's credentials). "
                "An existing account of that number is replaced.",
                "security": _BASIC,
                "parameters": [_path_param("code", {"type": "string"}, "registration code")],
                "requestBody": body("DeviceAttributes"),
                "responses": _responses(_ref("DeviceId"), 400, 401, 403, 413, 429, 503),
            }
        },
        "/v1/devices/provisioning_code": {
            "get": {
                "summary": "A fresh single-use provisioning code (10 minutes)",
                "operationId": "getProvisioningCode",
                "security": _BASIC,
                "responses": _responses(_ref("ProvisioningCode"), *_AUTHED, 411),
            }
        },
        "/v1/devices/": {
            "get": {
                "summary": "The account's devices",
                "operationId": "listDevices",
                "security": _BASIC,
                "responses": _responses(_ref("DeviceList"), *_AUTHED),
            }
        },
        "/v1/devices/{code}": {
            "put": {
                "summary": "Link a new device with a provisioning code",
                "operationId": "linkDevice",
                "description": "Basic number:password (the new device's credentials). "
                "Guesses are rate limited per number and per address.",
                "security": _BASIC,
                "parameters": [_path_param("code", {"type": "string"}, "provisioning code")],
                "requestBody": body("DeviceAttributes"),
                "responses": _responses(_ref("DeviceId"), 400, 401, 403, 411, 413, 429, 503),
            },
            "delete": {
                "summary": "Unlink a device (not device 1)",
                "operationId": "removeDevice",
                "description": "The path segment is the device id.",
                "security": _BASIC,
                "parameters": [_path_param("code", {"type": "string"}, "device id")],
                "responses": _responses(_ref("Empty"), *_AUTHED, 403, 404),
            },
        },
        "/v1/keys": {
            "put": {
                "summary": "Upload identity key, signed prekey and one-time prekeys",
                "operationId": "uploadKeys",
                "security": _BASIC,
                "requestBody": body("KeysUpload"),
                "responses": _responses(_ref("Empty"), *_AUTHED, 409, 413),
            }
        },
        "/v1/keys/": {
            "get": {
                "summary": "How many one-time prekeys this device has left",
                "operationId": "countPreKeys",
                "security": _BASIC,
                "responses": _responses(_ref("PreKeyCount"), *_AUTHED),
            }
        },
        "/v1/keys/{number}/{device}": {
            "get": {
                "summary": "Key bundles of one device or of every device ('*')",
                "operationId": "fetchKeys",
                "security": _BASIC,
                "parameters": [
                    number_param,
                    _path_param(
                        "device",
                        {"type": "string", "pattern": r"^(\*|[1-9][0-9]{0,9})$"},
                        "a device id or *",
                    ),
                ],
                "responses": _responses(_ref("KeyBundles"), *_AUTHED, 404),
            }
        },
        "/v1/messages/": {
            "get": {
                "summary": "Pending messages; waits up to ?wait=S seconds for the first",
                "operationId": "fetchMessages",
                "security": _BASIC,
                "parameters": [
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0},
                        "description": f"seconds, clamped to {config.max_wait_s:g}",
                    }
                ],
                "responses": _responses(_ref("IncomingMessages"), *_AUTHED),
            }
        },
        "/v1/messages/{destination}": {
            "put": {
                "summary": "Send to a number's devices, or one DeviceInit to a temp channel",
                "operationId": "sendMessages",
                "security": _BASIC,
                "parameters": [
                    _path_param(
                        "destination",
                        {"type": "string"},
                        "an E.164 number or a temp channel uuid",
                    )
                ],
                "requestBody": body("OutgoingMessages"),
                "responses": _responses(_ref("Empty"), *_AUTHED, 404, 409, 410, 413),
            },
            "delete": {
                "summary": "Acknowledge (delete) a message; the path segment is its guid",
                "operationId": "acknowledgeMessage",
                "security": _BASIC,
                "parameters": [_path_param("destination", {"type": "string"}, "message guid")],
                "responses": _responses(_ref("Empty"), *_AUTHED, 404),
            },
        },
        "/v1/temp_websocket": {
            "get": {
                "summary": "Open a temp channel (websocket, §4.1)",
                "operationId": "openTempChannel",
                "description": 'With a websocket upgrade: 101, then the frame {"uuid": U}; the '
                'first PUT /v1/messages/U arrives as {"message": b64} and the socket closes '
                f"1000; after {config.channel_ttl_s:g} s it closes 1001; anything the client "
                "sends closes it 1008. Without an upgrade: 426.",
                "responses": {
                    "101": {"description": _STATUS_TEXT[101]},
                    **_responses(None, 426, 429),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Each dependency's state",
                "operationId": "health",
                "responses": {
                    "200": {"description": "all up", "content": _json(_ref("Health"))},
                    "503": {"description": "degraded", "content": _json(_ref("Health"))},
                    **{k: v for k, v in _responses(None).items()},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format 0.0.4)",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_responses(None),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})},
                    **_responses(None),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "textsecure-provision relay server",
            "version": __version__,
            "description": "The server API of PROTOCOL.md §4. Errors are JSON "
            '{"error", "code"}. Bodies over '
            f"{body_limit // 1024} KiB are refused with 413.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "number:password (device 1) or number.deviceId:password",
                }
            },
        },
    }
