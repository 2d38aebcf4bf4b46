"""The composition root: a running gateway, served over stdio (one agent) or HTTP (``/mcp`` + ``/api/v1``).

The rooms it wires together, each a package of its own:

* ``upstreams/`` supervises the upstream servers (connect, reconnect, list, capture stderr);
* ``catalog/`` aggregates what they offer and routes every request to the one that serves it;
* ``serving/`` is the agent's side: the MCP server, the stdio and HTTP wires, the listener's guard;
* ``control/`` is the control plane: REST API, logins, the config watcher, the run file.

The upstreams start in the background before the first client arrives and keep running across
client sessions. The HTTP listener binds its socket first (port 0 works), publishes its URL in
``<home>/state/gateway.json`` and removes it on exit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from mcprelay import diaglog
from mcprelay.activity import ActivityLog, activity_path
from mcprelay.config import LoadedConfig
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.control.plane import ControlPlane
from mcprelay.gateway.control.rest import API_PREFIX
from mcprelay.gateway.control.runfile import remove_runfile, write_runfile
from mcprelay.gateway.control.watch import watch_config
from mcprelay.gateway.serving.fastpath import StdioFastPath
from mcprelay.gateway.serving.http import bind, build_http_app, parse_listen
from mcprelay.gateway.serving.ownerkey import listener_key
from mcprelay.gateway.serving.security import require_api_key_for
from mcprelay.gateway.serving.server import Downstream
from mcprelay.gateway.serving.stdio import serve_stdio_streams
from mcprelay.gateway.upstreams.supervisor import UpstreamEnv
from mcprelay.httpclient import new_http_client
from mcprelay.store.base import TokenStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningGateway:
    """What a server entry point needs: the agent-facing MCP server and the control plane."""

    downstream: Downstream
    control: ControlPlane

    @property
    def gateway(self) -> Gateway:
        return self.downstream.gateway


@contextlib.asynccontextmanager
async def open_gateway(
    loaded: LoadedConfig, *, home: Path, store: TokenStore, env: dict[str, Any] | None = None
) -> AsyncIterator[RunningGateway]:
    """A running gateway: upstreams connecting in the background, config watched, logins hosted."""
    activity = ActivityLog(activity_path(home))
    try:
        async with new_http_client() as http, anyio.create_task_group() as tg:
            gateway = Gateway(
                loaded, home=home, store=store, http=http, activity=activity,
                env=UpstreamEnv(store=store, http=http, home=home, **(env or {})),
            )
            running = RunningGateway(Downstream(gateway), ControlPlane(gateway))
            await tg.start(gateway.run)
            await tg.start(running.control.run)
            if loaded.path is not None:
                tg.start_soon(watch_config, loaded.path, gateway.apply_config)
            try:
                yield running
            finally:
                tg.cancel_scope.cancel()
    finally:
        activity.close()


async def serve_stdio(loaded: LoadedConfig, *, home: Path, store: TokenStore) -> None:
    """One agent on stdin/stdout; ends when the agent closes stdin."""
    async with open_gateway(loaded, home=home, store=store) as running:
        downstream = running.downstream
        fast = StdioFastPath(downstream) if loaded.config.fast_path else None
        async with serve_stdio_streams(fast) as streams:
            read, write = streams
            await downstream.server.run(read, write, downstream.server.create_initialization_options())


async def serve_http(
    loaded: LoadedConfig, *, home: Path, store: TokenStore, listen: str, stop: anyio.Event | None = None
) -> None:
    """Streamable HTTP at ``/mcp`` and the REST API at ``/api/v1`` until ``stop`` is set (or cancelled)."""
    import uvicorn  # here, not at the top: serve --stdio has no use for it, and an agent waits for its start

    class Server(uvicorn.Server):
        """uvicorn's server without its own signal handling: ``mcprelay serve`` owns the signals (it stops
        the server through ``should_exit``), so uvicorn must not re-raise them after its shutdown."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    host, port = parse_listen(listen)
    require_api_key_for(host, loaded.config.api_key or None)
    api_key = listener_key(home, loaded.config.api_key, loaded.config.owner_only)
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}"
    try:
        async with open_gateway(loaded, home=home, store=store) as running:
            app, _manager = build_http_app(
                running.downstream, running.control, host=host, port=bound_port, api_key=api_key
            )
            config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
            server = Server(config)
            write_runfile(home, url, config=loaded.path)
            print(f"mcprelay: serving MCP at {url}/mcp (REST API at {url}{API_PREFIX}; the page: `mcprelay ui`)",
                  file=sys.stderr, flush=True)
            if api_key is None:
                print(
                    f"mcprelay: warning: owner_only is false and no api_key is set: every user of this machine "
                    f"can reach {url} and use this gateway's logins and tools", file=sys.stderr, flush=True,
                )
                diaglog.event("listener_open_to_all_local_users", server=None, correlation_id=None, level="warning",
                              url=url)
            elif not loaded.config.api_key:
                print("mcprelay: clients need the owner key: `mcprelay client-config` prints their settings",
                      file=sys.stderr, flush=True)
            try:
                async with anyio.create_task_group() as tg:
                    if stop is not None:

                        async def stop_when_asked() -> None:
                            await stop.wait()
                            running.control.closing.set()  # the page's event streams end, not after 2 s
                            server.should_exit = True

                        tg.start_soon(stop_when_asked)
                    await server.serve(sockets=[sock])
                    tg.cancel_scope.cancel()
            finally:
                remove_runfile(home)
    finally:
        sock.close()
