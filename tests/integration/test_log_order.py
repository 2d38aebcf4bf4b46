"""Log messages an upstream sends during a call reach the agent before the call's result, attributed to it.

The SDK's client hands notifications to their callbacks from queues on tasks of their own, apart from
responses; a relay that is slow to pass a log message on (a loaded machine, a slow agent) would otherwise
see the result first — and the request's stream closed, or the call no longer in flight to attribute the
late message to. Here the relay takes 0.1 s per message and the fixture server logs three times within
0.1 s before it answers: every message must have been relayed, with the call's origin, when the request
returns. (Found as a flaky conformance row, tools-call-with-logging through serve --listen.)
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup
from mcp.shared.exceptions import MCPError

from mcprelay.config import parse_config
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamEnv, UpstreamHooks
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.asgi import serve_in_thread
from mcprelay.testing.fixture_server import http_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STDIO_FIXTURE = {"command": sys.executable, "args": ["-m", "mcprelay.testing.fixture_server", "--stdio"]}
OnLog = Callable[[Upstream, object | None, dict[str, Any]], Awaitable[None]]


@asynccontextmanager
async def ready_upstream(
    tmp_path: Path, entry: dict[str, Any], on_log: OnLog
) -> AsyncIterator[tuple[Upstream, TaskGroup]]:
    """A supervised upstream for the fixture server, connected, with ``on_log`` as its log relay; stopped after."""

    async def on_input(*_args: Any) -> dict[str, Any]:
        raise MCPError(-32601, "no input here")

    hooks = UpstreamHooks(on_input=on_input, on_log=on_log, on_elicitation_complete=lambda _u, _id: None)
    server = parse_config({"mcpServers": {"f": entry}}).config.server("f")
    async with httpx2.AsyncClient() as http:
        upstream = Upstream(server, UpstreamEnv(store=MemoryStore(), http=http, home=tmp_path),
                            lambda _u, _c: None, hooks)
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            with anyio.fail_after(30):
                while upstream.state != "ready":
                    await anyio.sleep(0.05)
            yield upstream, tg
            upstream.stop()


@pytest.mark.parametrize("wire", ["stdio", "http"])
async def test_every_log_message_is_relayed_before_the_request_returns(tmp_path: Path, wire: str) -> None:
    relayed: list[tuple[object | None, str]] = []

    async def on_log(_upstream: Upstream, origin: object | None, params: dict[str, Any]) -> None:
        await anyio.sleep(0.1)  # a slow relay
        relayed.append((origin, str(params.get("data"))))

    with serve_in_thread(http_app()) as site:
        entry = STDIO_FIXTURE if wire == "stdio" else {"url": f"{site.url}/mcp"}
        async with ready_upstream(tmp_path, entry, on_log) as (upstream, _tg):
            for call in range(3):
                relayed.clear()
                origin = f"call-{call}"
                result, _version = await upstream.request(
                    "tools/call", {"name": "test_tool_with_logging", "arguments": {}},
                    request_id=origin, what="tool test_tool_with_logging", origin=origin, log_level="debug",
                )
                assert result["content"][0]["text"] == "Tool with logging executed successfully"
                assert relayed == [(origin, "Tool execution started"), (origin, "Tool processing data"),
                                   (origin, "Tool execution completed")], relayed


async def test_a_log_message_is_never_given_to_another_connections_call(tmp_path: Path) -> None:
    """Over stdio nothing says which request a log message belongs to. While calls of two downstream
    connections are in flight, a log line is the server's own (for every agent), never the newer call's:
    here connection B's logging call starts first and connection A's slow call starts after B's first line."""
    relayed: list[tuple[object | None, str]] = []
    first = anyio.Event()

    async def on_log(_upstream: Upstream, origin: object | None, params: dict[str, Any]) -> None:
        relayed.append((origin, str(params.get("data"))))
        first.set()

    group_a, group_b = object(), object()
    async with ready_upstream(tmp_path, STDIO_FIXTURE, on_log) as (upstream, tg):
        a_done = anyio.Event()

        async def slow_call_of_a() -> None:
            await first.wait()
            await upstream.request("tools/call", {"name": "test_slow", "arguments": {"seconds": 0.5}},
                                   request_id="a", what="tool test_slow", origin="A", group=group_a,
                                   log_level="debug")
            a_done.set()

        tg.start_soon(slow_call_of_a)
        await upstream.request("tools/call", {"name": "test_tool_with_logging", "arguments": {}},
                               request_id="b", what="tool test_tool_with_logging", origin="B", group=group_b,
                               log_level="debug")
        assert [message for _origin, message in relayed] == [
            "Tool execution started", "Tool processing data", "Tool execution completed"]
        assert relayed[0][0] == "B"  # B's call alone was in flight
        assert "A" not in {origin for origin, _message in relayed}, relayed
        with anyio.fail_after(10):
            await a_done.wait()
