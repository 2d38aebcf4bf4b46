"""``mcprelay serve [--stdio | --listen HOST:PORT]``: run the gateway.

Without a flag it listens on the config's ``listen`` address. Listening beyond loopback without an
``api_key`` is refused before anything starts (config_invalid, exit 2): the gateway holds live
credentials for every upstream.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import anyio
import typer

from mcprelay.cli.runtime import get_runtime
from mcprelay.errors import ErrorType, McpRelayError


def serve(
    ctx: typer.Context,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve one agent on stdin/stdout.")] = False,
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT for streamable HTTP at /mcp (default: config listen).")
    ] = None,
) -> None:
    """Run the gateway: one MCP endpoint for all enabled upstreams."""
    from mcprelay.gateway.app import serve_http, serve_stdio
    from mcprelay.gateway.serving.http import parse_listen
    from mcprelay.gateway.serving.security import require_api_key_for

    runtime = get_runtime(ctx)
    if stdio and listen:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, "--stdio and --listen exclude each other", suggestion="pick one of them"
        )
    loaded = runtime.loaded
    if stdio:
        anyio.run(lambda: serve_stdio(loaded, home=runtime.home, store=runtime.store))
        return
    address = listen or loaded.config.listen
    host, _port = parse_listen(address)
    require_api_key_for(host, loaded.config.api_key or None)
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default action would
    # then kill the process before gateway.json is removed, so treat it like Ctrl-C instead.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        anyio.run(lambda: serve_http(loaded, home=runtime.home, store=runtime.store, listen=address))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
