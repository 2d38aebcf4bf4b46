"""The test tools over the legacy HTTP+SSE transport (the SDK's SSE server transport), without auth.

Some upstreams still speak only SSE; this lets the gateway's tests cover that transport on a real
socket. Serve ``build_sse_app()`` with :func:`mcprelay.testing.asgi.serve_in_thread`; the endpoint is
``<base>/sse``.
"""

from __future__ import annotations

from starlette.applications import Starlette

from mcprelay.testing.authserver import AuthServerCounters
from mcprelay.testing.mcpserver import build_mcp


def build_sse_app(counters: AuthServerCounters | None = None) -> Starlette:
    """The same tools as the strict server (echo, sleep, whoami, add) at ``/sse``; counters on app.state."""
    counters = counters or AuthServerCounters()
    app = build_mcp(counters).sse_app(sse_path="/sse", message_path="/messages/", host="127.0.0.1")
    app.state.counters = counters
    return app
