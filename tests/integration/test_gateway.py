"""The gateway end to end: real gateway processes, real upstreams (stdio, OAuth streamable HTTP, SSE) on sockets."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from mcprelay.testing.asgi import ThreadedServer, serve_in_thread
from mcprelay.testing.sse_server import build_sse_app
from tests.conftest import Servers
from tests.integration.gateway_helpers import (
    Notifications,
    api_client,
    auth_headers,
    cli_env,
    error_payload,
    http_gateway,
    mcp_client,
    mcprelay,
    stdio_server,
    text,
    wait_for_tools,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def sse_server() -> Iterator[ThreadedServer]:
    with serve_in_thread(build_sse_app()) as server:
        yield server


async def test_stdio_gateway_aggregates_three_transports_and_refreshes_once(
    strict_servers: Callable[..., Servers], sse_server: ThreadedServer, tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server(), "b": {"url": servers.mcp_url}, "c": {"url": f"{sse_server.url}/sse"}})
    login = mcprelay(home, config, "auth", "login", "--server", "b", "--json")
    assert login.returncode == 0, login.stderr

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"],
        env=cli_env(home),
    )
    async with Client(params, mode="legacy") as client:
        names = await wait_for_tools(client, {"a__echo", "b__echo", "c__echo"})
        assert {"a__upper", "b__sleep", "c__add"} <= names
        assert text(await client.call_tool("a__echo", {"text": "via stdio"})) == "via stdio"
        assert text(await client.call_tool("b__add", {"a": 2, "b": 3})) == "5"
        assert text(await client.call_tool("c__echo", {"text": "via sse"})) == "via sse"

        # The token expires; ten concurrent calls share one refresh and overlap at the upstream.
        servers.auth.expire_access_tokens()
        servers.auth.counters.reset()
        async with anyio.create_task_group() as tg:
            results: list[types.CallToolResult] = []

            async def sleep_call() -> None:
                results.append(await client.call_tool("b__sleep", {"seconds": 1}))

            for _ in range(10):
                tg.start_soon(sleep_call)
        assert [text(r) for r in results] == ["slept"] * 10
        assert servers.auth.counters.refresh_total == 1
        assert servers.auth.counters.tool_in_flight_peak == 10

        unknown = error_payload(await client.call_tool("nope__echo", {}))
        assert unknown["error_type"] == "usage_error"

    log = home / "logs" / "upstreams" / "a.log"
    assert "stdio test server starting" in log.read_text()
    logs = mcprelay(home, config, "upstream", "logs", "a", "--tail", "5")
    assert logs.returncode == 0 and "stdio test server starting" in logs.stdout


async def test_http_gateway_login_required_then_login_and_live_config(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server(), "b": {"url": servers.mcp_url}})
    notes = Notifications()
    async with http_gateway(home, config) as base, mcp_client(
        base, home, mode="legacy", message_handler=notes
    ) as client:
        await wait_for_tools(client, {"a__echo"})
        rest = httpx2.get(f"{base}/api/v1/servers", headers=auth_headers(home), timeout=10).json()
        rows = {row["name"]: row for row in rest["servers"]}
        assert rows["a"]["state"] == "ready" and rows["a"]["tool_count"] == 5
        deadline = time.monotonic() + 20
        while rows["b"]["state"] != "login_required":
            assert time.monotonic() < deadline, rows["b"]
            await anyio.sleep(0.2)
            listed = httpx2.get(f"{base}/api/v1/servers", headers=auth_headers(home), timeout=10).json()
            rows = {r["name"]: r for r in listed["servers"]}
        assert rows["b"]["auth_state"] == "login_required"

        # A call to the server that needs a login answers at once, with the structured error.
        with anyio.fail_after(10):
            payload = error_payload(await client.call_tool("b__echo", {"text": "x"}))
        assert payload["error_type"] == "login_required" and payload["server_name"] == "b"
        assert "mcprelay auth login --server b" in payload["suggestion"]
        assert payload["request_id"] and payload["correlation_id"]

        # The CLI asks the running gateway rather than connecting itself.
        listed = mcprelay(home, config, "upstream", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {r["name"]: r["state"] for r in json.loads(listed.stdout)["servers"]}["b"] == "login_required"

        # Log in from "another terminal": the gateway notices, connects, and tells the client.
        before = notes.tools_changed()
        login = await anyio.to_thread.run_sync(
            lambda: mcprelay(home, config, "auth", "login", "--server", "b", "--json")
        )
        assert login.returncode == 0, login.stderr
        await wait_for_tools(client, {"b__echo", "b__sleep"})
        with anyio.fail_after(5):
            while notes.tools_changed() <= before:
                await anyio.sleep(0.05)
        assert text(await client.call_tool("b__echo", {"text": "after login"})) == "after login"

        tools = mcprelay(home, config, "tools", "list", "--json")
        assert tools.returncode == 0, tools.stderr
        assert {"a__echo", "b__echo"} <= {t["name"] for t in json.loads(tools.stdout)["tools"]}

        # Config edits apply live: an invalid file is ignored, then a new server appears.
        config.write_text("{ not json")
        await anyio.sleep(1.5)
        assert "a__echo" in {t.name for t in (await client.list_tools(cache_mode="bypass")).tools}
        before = notes.tools_changed()
        write_config(config, {"a": stdio_server(), "b": {"url": servers.mcp_url}, "d": stdio_server("d_")})
        await wait_for_tools(client, {"d__d_echo", "a__echo", "b__echo"})
        with anyio.fail_after(5):
            while notes.tools_changed() <= before:
                await anyio.sleep(0.05)
        assert text(await client.call_tool("d__d_upper", {"text": "live"})) == "LIVE"


def test_listen_beyond_loopback_needs_an_api_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", {})
    result = mcprelay(tmp_path / "home", config, "serve", "--listen", "0.0.0.0:0", timeout=30)
    assert result.returncode == 2
    assert "config_invalid" in result.stdout + result.stderr


async def test_rest_login_returns_the_url_and_the_server_connects(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"b": {"url": servers.mcp_url}, "a": stdio_server(), "dead": {"url": "http://127.0.0.1:9/mcp"}})
    async with http_gateway(home, config) as base:
        async with api_client(base, home, timeout=30) as api:
            refused = await api.post("/servers/a/login")
            assert refused.status_code == 409 and refused.json()["error_type"] == "usage_error"
            # A login that fails through the API is remembered like one that fails in a terminal.
            failed = await api.post("/servers/dead/login")
            assert failed.status_code >= 400, failed.text
            status = mcprelay(home, config, "auth", "status", "--server", "dead", "--json")
            last_error = json.loads(status.stdout)[0]["last_error"]
            assert last_error and last_error["error_type"] == failed.json()["error_type"]
            assert last_error["correlation_id"] == failed.json()["correlation_id"]
            started = await api.post("/servers/b/login")
            assert started.status_code == 202, started.text
            body = started.json()
            assert body["authorization_url"].startswith(servers.base) and body["correlation_id"]
            with anyio.fail_after(20):
                while (await api.get("/servers/b")).json()["server"]["state"] != "ready":
                    await anyio.sleep(0.2)
            row = (await api.get("/servers/b")).json()["server"]
            assert row["auth_state"] == "authenticated" and row["tool_count"] == 4
            status = mcprelay(home, config, "auth", "status", "--server", "b", "--json")
            (b_row,) = json.loads(status.stdout)
            assert b_row["state"] == "authenticated" and b_row["last_error"] is None
