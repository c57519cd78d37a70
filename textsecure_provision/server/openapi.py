"""The OpenAPI 3.1 document served at ``/openapi.json``, generated from the routes and the
bodies they read and answer.

Schemas come from the declarations in ``protocol/bodies.py`` (the ones the
server decodes with and the client uses), so a field's type, range or length
cannot differ between the document and the code. Paths come from the served
routes: every route must have an ``Operation`` below (or building the
document fails), so an undocumented route cannot be served. What an
operation adds is what the code cannot tell: its summary, its path
parameters and the statuses it may answer. Limits the operator configures
(body size, prekeys per upload, messages per send) are filled in from the
running server's config. The hardening suite runs schemathesis against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.routing import BaseRoute, Route

from textsecure_provision import __version__
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.bodies import E164_PATTERN
from textsecure_provision.server.config import ServerConfig

_STATUS_TEXT = {
    200: "OK",
    101: "Switching Protocols: the channel is open (§4.1)",
    400: "Malformed input (JSON, types, base64, key lengths, number, signature)",
    401: "Missing, malformed or wrong credentials",
    403: "Forbidden, or wrong / expired / used code",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Stale devices: a registration id changed; or a burned nameplate",
    411: "Device limit reached",
    413: "Too large",
    426: "A websocket upgrade is needed",
    429: "Rate limited; see Retry-After",
    500: "Internal error (no details)",
    503: "A dependency (database, fan-out) is unavailable",
}
_AUTHED = (400, 401, 429, 503)  # every authenticated endpoint may answer these
_REF = "#/components/schemas/{name}"


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    where: str = "path"
    required: bool = True


@dataclass(frozen=True)
class Operation:
    """What the document says of one method on one path, beyond the bodies."""

    operation_id: str
    summary: str
    answer: type[msgspec.Struct] | None  # the 200 body; None: the operation says it itself
    errors: tuple[int, ...] = ()
    body: type[msgspec.Struct] | None = None
    basic_auth: bool = True
    params: tuple[Param, ...] = ()
    description: str | None = None
    responses: dict[str, Any] | None = None  # non-JSON or several 2xx answers


_NUMBER = Param("number", "E.164 number", {"type": "string", "pattern": E164_PATTERN})


def wait_param(config: ServerConfig) -> Param:
    """``?wait=S`` of the long polls (messages and nameplate mailboxes): one clamp for both."""
    return Param(
        "wait",
        f"seconds, clamped to {config.max_wait_s:g}",
        {"type": "number", "minimum": 0},
        where="query",
        required=False,
    )


def _operations(config: ServerConfig) -> dict[tuple[str, str], Operation]:
    """(documented path, method) → operation. Path parameter names are the document's."""
    from textsecure_provision.server.openapi_nameplates import nameplate_operations

    return {
        **nameplate_operations(config),  # links by short code (routes/nameplates.py)
        ("/v1/accounts/sms/code/{number}", "GET"): Operation(
            "requestRegistrationCode",
            "Ask for a registration code to be delivered",
            bodies.Empty,
            (400, 429, 503),
            basic_auth=False,
            params=(_NUMBER,),
        ),
        ("/v1/accounts/code/{code}", "PUT"): Operation(
            "registerAccount",
            "Register the master (device 1) with a registration code",
            bodies.DeviceIdAnswer,
            (400, 401, 403, 413, 429, 503),
            body=bodies.DeviceAttributes,
            params=(Param("code", "registration code"),),
            description="Basic number:password (the new master's credentials). "
            "An existing account of that number is replaced.",
        ),
        ("/v1/devices/provisioning_code", "GET"): Operation(
            "getProvisioningCode",
            "A fresh single-use provisioning code (10 minutes)",
            bodies.ProvisioningCode,
            (*_AUTHED, 411),
        ),
        ("/v1/devices/", "GET"): Operation(
            "listDevices", "The account's devices", bodies.DeviceList, _AUTHED
        ),
        ("/v1/devices/{code}", "PUT"): Operation(
            "linkDevice",
            "Link a new device with a provisioning code",
            bodies.DeviceIdAnswer,
            (400, 401, 403, 411, 413, 429, 503),
            body=bodies.DeviceAttributes,
            params=(Param("code", "provisioning code"),),
            description="Basic number:password (the new device's credentials). "
            "Guesses are rate limited per number and per address.",
        ),
        ("/v1/devices/{code}", "DELETE"): Operation(
            "removeDevice",
            "Unlink a device (not device 1)",
            bodies.Empty,
            (*_AUTHED, 403, 404),
            params=(Param("code", "device id"),),
            description="The path segment is the device id.",
        ),
        ("/v1/keys", "PUT"): Operation(
            "uploadKeys",
            "Upload identity key, signed prekey and one-time prekeys",
            bodies.Empty,
            (*_AUTHED, 409, 413),
            body=bodies.KeysUpload,
        ),
        ("/v1/keys/", "GET"): Operation(
            "countPreKeys",
            "How many one-time prekeys this device has left",
            bodies.PreKeyCount,
            _AUTHED,
        ),
        ("/v1/keys/{number}/{device}", "GET"): Operation(
            "fetchKeys",
            "Key bundles of one device or of every device ('*')",
            bodies.KeyBundles,
            (*_AUTHED, 404),
            params=(
                _NUMBER,
                Param(
                    "device",
                    "a device id or *",
                    {"type": "string", "pattern": r"^(\*|[1-9][0-9]{0,9})$"},
                ),
            ),
        ),
        ("/v1/messages/", "GET"): Operation(
            "fetchMessages",
            "Pending messages; waits up to ?wait=S seconds for the first",
            bodies.IncomingMessages,
            _AUTHED,
            params=(wait_param(config),),
        ),
        ("/v1/messages/{destination}", "PUT"): Operation(
            "sendMessages",
            "Send to a number's devices, or one DeviceInit to a temp channel",
            bodies.Empty,
            (*_AUTHED, 404, 409, 410, 413),
            body=bodies.OutgoingMessages,
            params=(Param("destination", "an E.164 number or a temp channel uuid"),),
            description="To a temp channel uuid: exactly one message, of which only body is used.",
        ),
        ("/v1/messages/{destination}", "DELETE"): Operation(
            "acknowledgeMessage",
            "Acknowledge (delete) a message; the path segment is its guid",
            bodies.Empty,
            (*_AUTHED, 404),
            params=(Param("destination", "message guid"),),
        ),
        ("/v1/temp_websocket", "GET"): Operation(
            "openTempChannel",
            "Open a temp channel (websocket, §4.1)",
            None,
            (426, 429),
            basic_auth=False,
            description='With a websocket upgrade: 101, then the frame {"uuid": U}; the '
            'first PUT /v1/messages/U arrives as {"message": b64} and the socket closes '
            f"1000; after {config.channel_ttl_s:g} s it closes 1001; anything the client "
            "sends closes it 1008. Without an upgrade: 426.",
            responses={"101": {"description": _STATUS_TEXT[101]}},
        ),
        ("/health", "GET"): Operation(
            "health",
            "Each dependency's state",
            None,
            basic_auth=False,
            responses={
                "200": {"description": "all up", "content": _json(_ref("Health"))},
                "503": {"description": "degraded", "content": _json(_ref("Health"))},
            },
        ),
        ("/metrics", "GET"): Operation(
            "metrics",
            "Prometheus metrics (text format 0.0.4)",
            None,
            basic_auth=False,
            responses={
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        ("/openapi.json", "GET"): Operation(
            "openapi",
            "This document",
            None,
            basic_auth=False,
            responses={"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
        ),
    }


# Declared in no operation's body or answer, but referenced by the error answers.
_ALWAYS = (bodies.Error, bodies.MismatchedDevices, bodies.StaleDevices, bodies.Health)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_responses(errors: Iterable[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in sorted({*errors, 405, 500}):
        entry: dict[str, Any] = {"description": _STATUS_TEXT[status]}
        if status == 409:
            entry["content"] = _json({"anyOf": [_ref("MismatchedDevices"), _ref("Error")]})
        elif status == 410:  # stale devices (messages), or a burned nameplate (short codes)
            entry["content"] = _json({"anyOf": [_ref("StaleDevices"), _ref("Error")]})
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


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _operation_doc(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "operationId": op.operation_id}
    if op.description:
        doc["description"] = op.description
    if op.basic_auth:
        doc["security"] = [{"basic": []}]
    if op.params:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "schema": p.schema,
                "description": p.description,
            }
            for p in op.params
        ]
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": _json(_ref(op.body.__name__))}
    responses: dict[str, Any] = dict(op.responses or {})
    if op.answer is not None:
        responses["200"] = {
            "description": _STATUS_TEXT[200],
            "content": _json(_ref(op.answer.__name__)),
        }
    doc["responses"] = {**responses, **_error_responses(op.errors)}
    return doc


def _paths(
    routes: Iterable[BaseRoute], operations: dict[tuple[str, str], Operation]
) -> dict[str, Any]:
    by_template = {(_template(path), method): (path, method) for path, method in operations}
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            key = by_template.get((_template(route.path), method))
            if key is None:
                raise LookupError(f"{method} {route.path} is served but has no Operation")
            path, _ = key
            item = paths.setdefault(path, {})
            item[method.lower()] = _operation_doc(operations[key])
    return paths


def _schemas(operations: Iterable[Operation], config: ServerConfig) -> dict[str, Any]:
    kinds: list[type[msgspec.Struct]] = list(_ALWAYS)
    for op in operations:
        kinds += [k for k in (op.body, op.answer) if k is not None and k not in kinds]
    _, schemas = msgspec.json.schema_components(kinds, ref_template=_REF)
    # The limits the operator sets; more prekeys → 413, more messages → 400.
    schemas["KeysUpload"]["properties"]["preKeys"]["maxItems"] = config.max_prekeys
    schemas["OutgoingMessages"]["properties"]["messages"]["maxItems"] = config.max_messages_per_send
    return schemas


def openapi_document(config: ServerConfig, routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for these served routes (``app.routes``)."""
    operations = _operations(config)
    paths = _paths(routes, operations)
    documented = {(p, m.upper()) for p, item in paths.items() for m in item}
    unserved = sorted(set(operations) - documented)
    if unserved:
        raise LookupError(f"operations without a served route: {unserved}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "textsecure-provision relay server",
            "version": __version__,
            "description": "The server API of PROTOCOL.md §4. Errors are JSON "
            '{"error", "code"}. Bodies over '
            f"{config.max_body_bytes // 1024} KiB are refused with 413 before they are "
            "parsed. Body schemas are generated from textsecure_provision/protocol/bodies.py.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(operations.values(), config),
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "number:password (device 1) or number.deviceId:password",
                }
            },
        },
    }
