"""Serving the gateway: over stdio (one agent) or streamable HTTP at ``/mcp`` with the REST API at ``/api/v1``.

The upstreams start in the background before the first client arrives and keep running across
client sessions, so an agent that connects gets whatever is ready at that moment and hears
``list_changed`` for the rest. The HTTP listener binds its socket first (port 0 works), publishes
its URL in ``<home>/state/gateway.json`` and removes it on exit.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.server.streamable_http_manager import (
    DEFAULT_SESSION_IDLE_TIMEOUT,
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from mcprelay.config import LoadedConfig
from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.gateway.activity import ActivityLog, activity_path
from mcprelay.gateway.core import Gateway
from mcprelay.gateway.passthrough import HttpToolCallPassthrough, ToolCallPassthrough
from mcprelay.gateway.rest import API_PREFIX, rest_routes
from mcprelay.gateway.runfile import remove_runfile, write_runfile
from mcprelay.gateway.security import guard, require_api_key_for
from mcprelay.gateway.server import Downstream
from mcprelay.gateway.stdio_pipes import serve_stdio_streams
from mcprelay.gateway.upstreams import UpstreamEnv
from mcprelay.gateway.watch import watch_config
from mcprelay.httpclient import new_http_client
from mcprelay.store.base import TokenStore

logger = logging.getLogger(__name__)


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


@contextlib.asynccontextmanager
async def open_gateway(
    loaded: LoadedConfig, *, home: Path, store: TokenStore, env: dict[str, Any] | None = None
) -> AsyncIterator[Downstream]:
    """A running gateway (upstreams connecting in the background, config watched) and its MCP server."""
    activity = ActivityLog(activity_path(home))
    try:
        async with new_http_client() as http, anyio.create_task_group() as tg:
            gateway = Gateway(
                loaded, home=home, store=store, http=http, activity=activity,
                env=UpstreamEnv(store=store, http=http, home=home, **(env or {})),
            )
            downstream = Downstream(gateway)
            await tg.start(gateway.run)
            if loaded.path is not None:
                tg.start_soon(watch_config, loaded.path, gateway.apply_config)
            try:
                yield downstream
            finally:
                tg.cancel_scope.cancel()
    finally:
        activity.close()


async def serve_stdio(loaded: LoadedConfig, *, home: Path, store: TokenStore) -> None:
    """One agent on stdin/stdout; ends when the agent closes stdin."""
    async with (
        open_gateway(loaded, home=home, store=store) as downstream,
        serve_stdio_streams(ToolCallPassthrough(downstream.gateway, downstream.server_info)) as (read, write),
    ):
        await downstream.server.run(read, write, downstream.server.create_initialization_options())


def build_http_app(
    downstream: Downstream, *, host: str, port: int, api_key: str | None,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
) -> tuple[ASGIApp, Any]:
    """The guarded Starlette app and the session manager whose ``run()`` must wrap serving."""
    manager = StreamableHTTPSessionManager(app=downstream.server, session_idle_timeout=session_idle_timeout)
    routes: list[BaseRoute] = [
        Route("/mcp", HttpToolCallPassthrough(
            StreamableHTTPASGIApp(manager), manager, downstream.gateway, downstream.server_info
        )),
        Mount(API_PREFIX, routes=rest_routes(downstream.gateway)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    return guard(app, host=host, port=port, api_key=api_key), manager


def _bind(host: str, port: int) -> socket.socket:
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


async def serve_http(loaded: LoadedConfig, *, home: Path, store: TokenStore, listen: str) -> None:
    """Streamable HTTP at ``/mcp`` and the REST API at ``/api/v1`` until interrupted."""
    host, port = parse_listen(listen)
    api_key = loaded.config.api_key or None
    require_api_key_for(host, api_key)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}"
    try:
        async with open_gateway(loaded, home=home, store=store) as downstream:
            app, _manager = build_http_app(downstream, host=host, port=bound_port, api_key=api_key)
            config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
            server = uvicorn.Server(config)
            write_runfile(home, url)
            print(f"mcprelay: serving MCP at {url}/mcp (REST API at {url}{API_PREFIX})", file=sys.stderr, flush=True)
            try:
                await server.serve(sockets=[sock])
            finally:
                remove_runfile(home)
    finally:
        sock.close()
