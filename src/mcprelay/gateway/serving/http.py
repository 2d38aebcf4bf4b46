"""The HTTP door: streamable HTTP at ``/mcp``, the REST API at ``/api/v1`` and the page at ``/ui``, behind the guard.

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
from starlette.types import ASGIApp, Receive, Scope, Send

from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.gateway.control.health import health_routes
from mcprelay.gateway.control.rest import API_PREFIX, GatewayControl, rest_routes
from mcprelay.gateway.control.webui import page_routes
from mcprelay.gateway.serving import framing
from mcprelay.gateway.serving.browsersession import BrowserSessions
from mcprelay.gateway.serving.fastpath import HttpFastPath, replay_body
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
    sessions = BrowserSessions(port)
    routes: list[BaseRoute] = [
        Route("/mcp", FramedPost(HttpFastPath(StreamableHTTPASGIApp(manager), manager, downstream)
                                 if downstream.gateway.config.fast_path else StreamableHTTPASGIApp(manager))),
        *page_routes(sessions),
        Mount(API_PREFIX, routes=rest_routes(control)),
        *health_routes(downstream.gateway.store),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    return guard(app, host=host, port=port, api_key=api_key, sessions=sessions), manager


class FramedPost:
    """Every POST body to ``/mcp`` passes :func:`framing.check` before anything else reads it.

    The body is read here with the size cap applied while it streams (a body over the cap is
    refused as soon as it is known to be, and not kept), checked, and either answered with the
    JSON-RPC error (400, or 413 for the size) or replayed to ``inner`` unchanged. Other methods
    (GET streams, DELETE) carry no message and pass.
    """

    def __init__(self, inner: ASGIApp, max_bytes: int = framing.MAX_MESSAGE_BYTES) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, framing.too_large(declared, self.max_bytes))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its request was complete
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:  # answered before the rest arrives; the server closes the connection
                await _answer(send, framing.too_large(size, self.max_bytes, at_least=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        checked = framing.check(body, max_bytes=self.max_bytes)
        if isinstance(checked, framing.Refusal):
            await _answer(send, checked)
            return
        await self.inner(scope, replay_body(body, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _answer(send: Send, refusal: framing.Refusal) -> None:
    body = refusal.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


