"""What the upstreams offer when no gateway runs: connect to each once, list, disconnect.

Used by ``mcprelay upstream list`` and ``mcprelay tools list`` without a running gateway. It never
logs in (a listing command must not open a browser): a server that needs one is reported as
``login_required``. All servers are asked concurrently, each with its own timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from mcprelay.config import Config
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamEnv
from mcprelay.httpclient import new_http_client
from mcprelay.store.base import TokenStore


async def _probe_one(upstream: Upstream, limit: float, settled: anyio.Event) -> None:
    """Run the supervisor until the server is ready or has failed once, then stop it."""
    with anyio.move_on_after(limit + 1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            await settled.wait()
            upstream.stop()


async def snapshot(config: Config, *, store: TokenStore, home: Path, limit: float = 15.0) -> list[Upstream]:
    """One finished :class:`Upstream` per configured server: state, catalog and last error filled in."""
    settled = {server.name: anyio.Event() for server in config.mcp_servers}

    def changed(upstream: Upstream, _catalog: bool) -> None:
        if upstream.state != "connecting":
            settled[upstream.name].set()

    async with new_http_client() as http:
        env = UpstreamEnv(store=store, http=http, home=home, connect_timeout=limit)
        upstreams = [Upstream(server, env, changed) for server in config.mcp_servers]
        async with anyio.create_task_group() as tg:
            for upstream in upstreams:
                if upstream.config.enabled:
                    tg.start_soon(_probe_one, upstream, limit, settled[upstream.name])
    return upstreams


def tool_rows(upstreams: list[Upstream]) -> list[dict[str, Any]]:
    return [
        {"name": f"{u.name}__{t.name}", "server": u.name, "tool": t.name, "description": t.description or "",
         "input_schema": t.input_schema}
        for u in upstreams for t in u.catalog.tools
    ]
