"""Open an MCP client session to a remote server over the SDK's transports, with our auth plugged in.

This is the far end of the data flow: it takes an ``httpx2.Auth`` and knows nothing of how the
token behind it is obtained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, TextIO

import httpx2
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcprelay.httpclient import USER_AGENT


@asynccontextmanager
async def open_session(
    url: str,
    *,
    transport: Literal["http", "sse"] = "http",
    auth: httpx2.Auth | None = None,
    headers: dict[str, str] | None = None,
    request_timeout: float = 60.0,
) -> AsyncIterator[Client]:
    """An initialized SDK ``Client``. ``auto`` asks ``server/discover`` first (servers of the 2026 spec
    refuse a bare ``initialize``) and falls back to the ``initialize`` handshake for older ones."""
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if transport == "sse":

        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth)

        async with Client(
            sse_client(url, headers=all_headers, auth=auth, httpx_client_factory=factory), mode="auto"
        ) as client:
            yield client
        return
    http = httpx2.AsyncClient(
        headers=all_headers, auth=auth, timeout=httpx2.Timeout(request_timeout, read=max(request_timeout, 300.0))
    )
    async with http, Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        yield client


@asynccontextmanager
async def open_stdio_session(
    command: str,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    errlog: TextIO | None = None,
) -> AsyncIterator[Client]:
    """An initialized SDK ``Client`` on a local server subprocess (stdin/stdout)."""
    import sys

    params = StdioServerParameters(command=command, args=list(args), env=env or None)
    async with Client(stdio_client(params, errlog=errlog or sys.stderr), mode="auto") as client:
        yield client
