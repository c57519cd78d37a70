"""Operator endpoints: ``/health``, ``/metrics``, ``/openapi.json``."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from textsecure_provision import __version__
from textsecure_provision.errors import ProvisionError
from textsecure_provision.server.handlers import json_response
from textsecure_provision.server.openapi import openapi_document
from textsecure_provision.server.services import services

HEALTH_CHECK_TIMEOUT_S = 2.0


async def _probe(check: Any, describe: str) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"status": "down", "backend": describe, "error": "no answer in time"}
    except ProvisionError as exc:
        return {"status": "down", "backend": describe, "error": exc.message}
    return {"status": "ok", "backend": describe}


def _describe(backend: object) -> str:
    describe = getattr(backend, "describe", None)
    return str(describe()) if callable(describe) else type(backend).__name__


async def health(request: Request) -> Response:
    """200 when every dependency answers, else 503; each one reported by name. Load
    balancers take a node out on 503, and it comes back by itself once this is 200."""
    svc = services(request)
    storage, fanout, limiter = await asyncio.gather(
        _probe(svc.storage.check, svc.storage.describe()),
        _probe(svc.fanout.check, svc.fanout.describe()),
        _probe(svc.limits.limiter.check, _describe(svc.limits.limiter)),
    )
    ok = all(d["status"] == "ok" for d in (storage, fanout, limiter))
    return json_response(
        {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "dependencies": {"storage": storage, "fanout": fanout, "ratelimiter": limiter},
        },
        200 if ok else 503,
    )


async def metrics(request: Request) -> Response:
    svc = services(request)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    # Built once per app: generating it costs ~10 ms of CPU, too much for an open endpoint.
    state = request.app.state
    if getattr(state, "openapi_document", None) is None:
        state.openapi_document = openapi_document(services(request).config, request.app.routes)
    return json_response(state.openapi_document)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
