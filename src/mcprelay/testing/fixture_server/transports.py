"""Serving the fixture: over stdio (both eras on one pipe) and over streamable HTTP.

Streamable HTTP runs the SDK's session manager with an in-memory event store, so POST streams
start with a priming event carrying ``retry`` and a stream closed mid-call
(``test_reconnection``) can be resumed with ``Last-Event-ID``. Bound to loopback, the SDK's
DNS-rebinding protection (Host and Origin checks) is on.
"""

from __future__ import annotations

import itertools
import sys
from collections import OrderedDict

import anyio
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp_types import JSONRPCMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcprelay.testing.fixture_server.server import FixtureServer, build_server

RETRY_INTERVAL_MS = 1000


class MemoryEventStore(EventStore):
    """Every SSE event of the last ``limit`` kept, so a client that lost a stream can resume it.

    Event ids are ``<sequence>`` strings, unique across streams; replay sends, in order, the
    events stored after the given one on the same stream (priming events carry no message and
    are skipped).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._events: OrderedDict[str, tuple[str, int, JSONRPCMessage | None]] = OrderedDict()
        self._sequence = itertools.count(1)

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        sequence = next(self._sequence)
        event_id = str(sequence)
        self._events[event_id] = (stream_id, sequence, message)
        while len(self._events) > self._limit:
            self._events.popitem(last=False)
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        known = self._events.get(last_event_id)
        if known is None:
            return None
        stream_id, after, _ = known
        for event_id, (stream, sequence, message) in list(self._events.items()):
            if stream == stream_id and sequence > after and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def http_app(host: str = "127.0.0.1", server: FixtureServer | None = None) -> Starlette:
    """The fixture as an ASGI app: MCP at ``/mcp``, ``GET /health`` for readiness probes."""
    server = server or build_server()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name})

    return server.streamable_http_app(
        streamable_http_path="/mcp",
        event_store=MemoryEventStore(),
        retry_interval=RETRY_INTERVAL_MS,
        host=host,
        custom_starlette_routes=[Route("/health", health)],
    )


def serve_http(host: str, port: int) -> None:
    """Serve until interrupted; prints the endpoint URL on stderr once listening."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"fixture server listening on http://{shown}:{bound}/mcp", file=sys.stderr, flush=True)
    config = uvicorn.Config(http_app(host), log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[sock])


def serve_stdio() -> None:
    """Serve one client on stdin/stdout, in whichever era its first request opens."""
    print("fixture server on stdio", file=sys.stderr, flush=True)

    async def main() -> None:
        server = build_server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
