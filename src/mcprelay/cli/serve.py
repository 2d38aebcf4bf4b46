"""``mcprelay serve [--stdio | --listen HOST:PORT]``: run the gateway.

Without a flag it listens on the config's ``listen`` address. Listening beyond loopback without an
``api_key`` is refused before anything starts (config_invalid, exit 2): the gateway holds live
credentials for every upstream.

Stopping: SIGTERM and SIGINT (Ctrl-C) end the gateway the same way, with exit code 0 and no
traceback — the HTTP listener stops accepting, finishes what is in flight (2 s at most), removes
``state/gateway.json``; both modes close their upstreams (stdio servers get their stdin closed, then
SIGTERM). A second signal while shutting down cuts it short. On Windows there is no SIGTERM:
Ctrl-C and Ctrl-Break end it the same way, and ``taskkill /F`` (TerminateProcess) cannot be caught
by any program.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Annotated

import anyio
import typer

from mcprelay.cli.runtime import get_runtime
from mcprelay.errors import ErrorType, McpRelayError

_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
if sys.platform == "win32":  # pragma: no cover - Ctrl-Break
    _SIGNALS += (signal.SIGBREAK,)


def serve(
    ctx: typer.Context,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve one agent on stdin and stdout.")] = False,
    listen: Annotated[
        str | None,
        typer.Option("--listen", metavar="HOST:PORT", help="Serve /mcp, /api/v1 and /ui here (default: config).",
                     show_default=False),
    ] = None,
) -> None:
    """Run the gateway: one MCP endpoint for every enabled server.

    --stdio serves the agent that started it (a desktop client's command); --listen serves
    streamable HTTP at /mcp, the REST API at /api/v1 and the web page at /ui, each behind the
    listener's key (`mcprelay client-config` prints it). SIGTERM or Ctrl-C stops it (exit 0).
    """
    from mcprelay.gateway.app import serve_http, serve_stdio
    from mcprelay.gateway.serving.http import parse_listen
    from mcprelay.gateway.serving.security import require_api_key_for

    runtime = get_runtime(ctx)
    if stdio and listen:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, "--stdio and --listen exclude each other", suggestion="pick one of them"
        )
    loaded = runtime.loaded
    store = runtime.store  # before the event loop: a store that cannot start (no MCPRELAY_STORE_KEY) exits 2 here
    if stdio:
        _run_until_signalled(lambda stop: serve_stdio(loaded, home=runtime.home, store=store), graceful=False)
        return
    address = listen or loaded.config.listen
    host, _port = parse_listen(address)
    require_api_key_for(host, loaded.config.api_key or None)
    _run_until_signalled(
        lambda stop: serve_http(loaded, home=runtime.home, store=store, listen=address, stop=stop),
        graceful=True,
    )


def _run_until_signalled(main: Callable[[anyio.Event], Awaitable[None]], *, graceful: bool) -> None:
    """Run ``main(stop)`` until it returns or a stop signal arrives; a signal is a normal end (exit 0).

    ``graceful``: the first signal sets ``stop`` and ``main`` winds down by itself (the HTTP server
    drains); otherwise, and on a second signal, ``main`` is cancelled. Inside the event loop signals
    arrive through anyio (POSIX); before it runs, and on Windows, a Python-level handler turns them
    into ``KeyboardInterrupt``, which ends the process the same quiet way.
    """

    async def run() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                try:
                    receiver = anyio.open_signal_receiver(*_SIGNALS)
                    with receiver as signals:
                        async for _signum in signals:
                            if graceful and not stop.is_set():
                                stop.set()
                            else:
                                tg.cancel_scope.cancel()
                except NotImplementedError:  # Windows: the handler installed below raises KeyboardInterrupt
                    await anyio.sleep_forever()

            tg.start_soon(watch_signals)
            await main(stop)
            tg.cancel_scope.cancel()

    previous = {sig: signal.signal(sig, _interrupt) for sig in _SIGNALS}
    try:
        anyio.run(run)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        # A signal that landed inside a task group surfaces wrapped; anything else is a real failure.
        rest = group.split(KeyboardInterrupt)[1]
        if rest is not None:
            raise rest from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
