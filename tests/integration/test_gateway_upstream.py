"""One upstream supervisor in process: what keeps a healthy session alive."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from mcprelay.activity import ActivityLog
from mcprelay.config import parse_config
from mcprelay.gateway.catalog.origin import NoClient
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.upstreams.supervisor import UpstreamEnv
from mcprelay.httpclient import new_http_client
from mcprelay.store.memory import MemoryStore
from tests.conftest import log_events

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_a_ping_answered_with_an_error_keeps_the_session(home: Path) -> None:
    """SDK 2.3 servers answer ``ping`` with "method not found" on a server/discover session. That answer
    proves the peer alive; treating it as a failure used to drop every session every ping interval."""
    loaded = parse_config(
        {"mcpServers": {"a": {"command": sys.executable, "args": ["-m", "mcprelay.testing.stdio_server"]}}},
        "<test>",
    )
    store = MemoryStore()
    async with new_http_client() as http:
        env = UpstreamEnv(store=store, http=http, home=home, ping_interval=0.2)
        gateway = Gateway(loaded, home=home, store=store, http=http, activity=ActivityLog(home / "activity.db"),
                          env=env)
        async with anyio.create_task_group() as tg:
            await tg.start(gateway.run)
            with anyio.fail_after(30):
                while (gateway.get_server("a") or {}).get("state") != "ready":
                    await anyio.sleep(0.05)
            await anyio.sleep(2.0)  # about ten pings
            result = await gateway.forward.call_tool("a__echo", {"text": "still here"}, NoClient())
            tg.cancel_scope.cancel()
    assert not result.get("isError")
    events = [e["event"] for e in log_events(home) if e.get("server") == "a"]
    assert events.count("upstream_ready") == 1, events
    assert "upstream_failed" not in events


async def test_the_listener_gets_tcp_nodelay_on_accepted_connections() -> None:
    """A listening socket made with protocol 0 makes asyncio skip TCP_NODELAY on accepted sockets; every
    response written in two parts then waits for Nagle and the peer's delayed ACK (about 40 ms a call)."""
    import asyncio
    import socket

    from mcprelay.gateway.serving.http import bind

    sock = bind("127.0.0.1", 0)
    seen: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    try:
        port = sock.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        writer.close()
    finally:
        server.close()
    assert seen == [1]
