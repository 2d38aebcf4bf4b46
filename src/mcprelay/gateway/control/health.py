"""What a fleet's load balancer and monitoring ask each replica: ``/healthz``, ``/readyz``, ``/metrics``.

- ``GET /healthz`` — the process serves requests: always 200 ``{"status": "ok"}``.
- ``GET /readyz`` — this replica can do its job: the config is loaded and the token store answers
  (Redis: a PING; the local stores: a read). 200 with the checks, else 503 with what failed, so a
  load balancer takes a replica out while Redis is unreachable from it.
- ``GET /metrics`` — Prometheus text format (see :mod:`mcprelay.metrics`).

They sit behind the same guard as ``/mcp`` and ``/api/v1``: with an ``api_key`` configured they need
``Authorization: Bearer <key>`` too (probes can send headers), and the ``Host`` check applies.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcprelay import metrics
from mcprelay.errors import McpRelayError
from mcprelay.store.base import TokenStore

_READY_TIMEOUT_S = 5.0


def _store_check(store: TokenStore) -> dict[str, Any]:
    started = time.monotonic()
    try:
        ping = getattr(store, "ping", None)
        if callable(ping):
            ping()
        else:
            store.get("health/probe")
    except McpRelayError as exc:
        return {"ok": False, "store": store.name, "error": exc.message}
    return {"ok": True, "store": store.name, "ms": round((time.monotonic() - started) * 1000, 2)}


def health_routes(store: TokenStore, *, config_loaded: bool = True) -> list[BaseRoute]:
    metrics.enable()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        check: dict[str, Any] = {"ok": False, "store": store.name, "error": "no answer within 5 s"}
        with anyio.move_on_after(_READY_TIMEOUT_S):
            check = await anyio.to_thread.run_sync(_store_check, store, abandon_on_cancel=True)
        ready = config_loaded and bool(check["ok"])
        body = {"status": "ready" if ready else "not_ready", "checks": {"config": config_loaded, "token_store": check}}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
