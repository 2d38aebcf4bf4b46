"""The agent's HTTP door: streamable HTTP at ``/mcp`` and the REST API at ``/api/v1``, behind the guard.

``build_http_app`` assembles the routes (the tool-call fast path in front of the SDK's endpoint);
``bind`` opens the listening socket before the server starts, so port 0 works and the real port is
known before anything is published.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.streamable_http_manager import (
    DEFAULT_SESSION_IDLE_TIMEOUT,
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.gateway.control.rest import API_PREFIX, GatewayControl, rest_routes
from mcprelay.gateway.serving.fastpath import HttpFastPath
from mcprelay.gateway.serving.security import guard
from mcprelay.gateway.serving.server import Downstream


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); port 0 picks a free one."""
    host, sep, port = value.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise config_error(
            f"listen address {value!r} is not HOST:PORT",
            suggestion="use e.g. --listen 127.0.0.1:8765 (or [::1]:8765)",
            field="listen",
        )
    return host, int(port)


def build_http_app(
    downstream: Downstream, control: GatewayControl, *, host: str, port: int, api_key: str | None,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
) -> tuple[ASGIApp, Any]:
    """The guarded Starlette app and the session manager whose ``run()`` must wrap serving."""
    manager = StreamableHTTPSessionManager(app=downstream.server, session_idle_timeout=session_idle_timeout)
    routes: list[BaseRoute] = [
        Route("/mcp", HttpFastPath(StreamableHTTPASGIApp(manager), manager, downstream)
              if downstream.gateway.config.fast_path else StreamableHTTPASGIApp(manager)),
        Mount(API_PREFIX, routes=rest_routes(control)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    return guard(app, host=host, port=port, api_key=api_key), manager


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only for that protocol, and without
    # it every two-write response waits for Nagle + delayed ACK (~40 ms a call).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"cannot listen on {host}:{port}: {exc.strerror}",
            suggestion="pick another address with --listen HOST:PORT (port 0 picks a free one)",
            details={"errno": exc.errno},
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


