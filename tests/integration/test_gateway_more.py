"""The gateway end to end, continued: search mode, live config edits, a dying upstream, activity, REST, concurrency.

Every test runs a real ``mcprelay serve --listen 127.0.0.1:0`` process with the stdio test server as
its upstream (no auth, so nothing but the gateway itself is under test), and talks to it over real
sockets like an agent, a script and the CLI would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from mcprelay.gateway.control.rest import OPENAPI_DOCUMENT
from tests.conftest import log_events
from tests.integration.gateway_helpers import (
    Notifications,
    api_client,
    error_payload,
    http_gateway,
    mcp_client,
    mcprelay,
    stdio_server,
    text,
    tool_names,
    wait_for_tools,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ERROR_FIELDS = {"success", "error_type", "server_name", "message", "suggestion", "correlation_id", "request_id",
                "details"}


def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "home", tmp_path / "config.json"


async def wait_for_state(api: httpx2.AsyncClient, server: str, state: str, timeout: float = 20) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            row: dict[str, Any] = (await api.get(f"/servers/{server}")).json()["server"]
            if row["state"] == state:
                return row
            await anyio.sleep(0.1)


def retrieved(result: types.CallToolResult) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(text(result))["tools"]
    return found


def check_schema(schema_name: str, value: Any) -> None:
    """Validate ``value`` against a schema of the OpenAPI document (the REST contract)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = {**OPENAPI_DOCUMENT["components"]["schemas"][schema_name], "components": OPENAPI_DOCUMENT["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


async def test_search_mode_exposes_two_tools_that_find_and_call_upstream_tools(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server(), "b": stdio_server("b_")}, routing_mode="search")
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client, \
            api_client(base, home, timeout=10) as api:
        assert await tool_names(client) == {"retrieve_tools", "call_tool"}
        await wait_for_state(api, "a", "ready")
        await wait_for_state(api, "b", "ready")

        # Found by the words of its description ("Return the text in capitals."), not by its name.
        found = retrieved(await client.call_tool("retrieve_tools", {"query": "capital letters", "limit": 3}))
        assert found, "nothing found"
        best = found[0]
        assert best["name"] in {"a__upper", "b__b_upper"}
        assert best["input_schema"]["properties"]["text"]["type"] == "string"
        assert best["input_schema"]["required"] == ["text"]
        assert best["description"] == "Return the text in capitals."
        only = retrieved(await client.call_tool("retrieve_tools", {"query": "process id of the server", "limit": 1}))
        assert [t["name"] for t in only] in (["a__pid"], ["b__b_pid"])

        called = await client.call_tool("call_tool", {"name": best["name"], "args": {"text": "found it"}})
        assert text(called) == "FOUND IT"

        unknown = error_payload(await client.call_tool("call_tool", {"name": "nope__upper", "args": {"text": "x"}}))
        assert unknown["error_type"] == "usage_error" and unknown["request_id"]
        assert "nope__upper" in unknown["message"] and "configured: a, b" in unknown["message"]
        assert "retrieve_tools" in unknown["suggestion"]
        not_a_tool = await client.call_tool("call_tool", {"name": "a__nope", "args": {}})
        assert not_a_tool.is_error and "nope" in str(not_a_tool.content[0])  # the upstream's own answer
        # The real tools are not callable directly in search mode: only through call_tool.
        direct = error_payload(await client.call_tool("a__upper", {"text": "x"}))
        assert direct["error_type"] == "usage_error" and "retrieve_tools" in direct["message"]
        missing = error_payload(await client.call_tool("call_tool", {"args": {}}))
        assert "call_tool needs name" in missing["message"]


async def test_config_edits_change_and_remove_servers_live(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    # Pinning off: renamed tools of the same server would be held as new (tests/integration/test_pins.py).
    write_config(config, {"a": stdio_server(), "d": stdio_server("d_")}, tool_pinning="off")
    notes = Notifications()
    async with http_gateway(home, config) as base, mcp_client(
        base, home, mode="legacy", message_handler=notes
    ) as client, api_client(base, home, timeout=10) as api:
        await wait_for_tools(client, {"a__echo", "d__d_echo"})
        d_pid = int(text(await client.call_tool("d__d_pid", {})))

        # Changing a server restarts it with the new settings: here its tools get new names.
        before = notes.tools_changed()
        write_config(config, {"a": stdio_server("x_"), "d": stdio_server("d_")}, tool_pinning="off")
        names = await wait_for_tools(client, {"a__x_echo", "a__x_upper"}, absent=frozenset({"a__echo"}))
        assert "d__d_echo" in names
        await notes.wait_tools_changed(before)
        assert text(await client.call_tool("a__x_upper", {"text": "changed"})) == "CHANGED"
        assert {t["tool"] for t in (await api.get("/tools", params={"server": "a"})).json()["tools"]} == {
            "x_echo", "x_upper", "x_pid", "x_sleep", "x_sleep_stats"}

        # An edit that breaks a server drops its tools at once, and the clients hear of it although the
        # restarted server never comes up to announce anything.
        before = notes.tools_changed()
        write_config(config, {"a": stdio_server("x_"), "d": {**stdio_server("d_"), "command": str(tmp_path / "none")}},
                     tool_pinning="off")
        await wait_for_tools(client, {"a__x_echo"}, absent=frozenset({"d__d_echo"}))
        await notes.wait_tools_changed(before)
        write_config(config, {"a": stdio_server("x_"), "d": stdio_server("d_")}, tool_pinning="off")
        await wait_for_tools(client, {"a__x_echo", "d__d_echo"})
        d_pid = int(text(await client.call_tool("d__d_pid", {})))

        # Removing a server drops its tools, tells the clients, and ends its process.
        before = notes.tools_changed()
        write_config(config, {"a": stdio_server("x_")}, tool_pinning="off")
        await wait_for_tools(client, {"a__x_echo"}, absent=frozenset({"d__d_echo"}))
        await notes.wait_tools_changed(before)
        assert (await api.get("/servers/d")).status_code == 404
        assert [s["name"] for s in (await api.get("/servers")).json()["servers"]] == ["a"]
        payload = error_payload(await client.call_tool("d__d_echo", {"text": "x"}))
        assert payload["error_type"] == "usage_error"
        with anyio.fail_after(10):
            while True:
                try:
                    os.kill(d_pid, 0)
                except ProcessLookupError:
                    break
                await anyio.sleep(0.1)


async def test_a_stdio_upstream_that_dies_is_reconnected(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server()})
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client, \
            api_client(base, home, timeout=10) as api:
        await wait_for_tools(client, {"a__pid"})
        first = int(text(await client.call_tool("a__pid", {})))
        os.kill(first, signal.SIGKILL)

        # No call is needed to notice: the supervisor sees the process go, backs off, and starts a new one.
        states: list[str] = []
        with anyio.fail_after(10):
            while True:
                state = (await api.get("/servers/a")).json()["server"]["state"]
                if not states or states[-1] != state:
                    states.append(state)
                if state == "ready" and len(states) > 1:
                    break
                await anyio.sleep(0.05)
        assert {"error", "connecting"} & set(states), states
        second = int(text(await client.call_tool("a__pid", {})))
        assert second != first
        assert text(await client.call_tool("a__echo", {"text": "back"})) == "back"

    failed = [e for e in log_events(home) if e["event"] == "upstream_failed" and e["server"] == "a"]
    assert failed and "closed" in failed[0]["message"]
    assert sum(e["event"] == "upstream_ready" for e in log_events(home)) == 2


async def test_activity_through_rest_and_cli(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server(), "b": stdio_server("b_")})
    secret = "do-not-record-this-argument"
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client, \
            api_client(base, home, timeout=10) as api:
        await wait_for_tools(client, {"a__echo", "b__b_echo"})
        assert text(await client.call_tool("a__echo", {"text": secret})) == secret
        assert text(await client.call_tool("b__b_echo", {"text": secret})) == secret
        assert text(await client.call_tool("a__upper", {"text": secret})) == secret.upper()
        assert (await client.call_tool("a__echo", {})).is_error  # the upstream refuses: a tool error
        failed = error_payload(await client.call_tool("zz__echo", {"text": secret}))  # refused by the gateway

        response = await api.get("/activity", params={"server": "a", "limit": "2"})
        assert response.status_code == 200
        assert secret not in response.text
        rows = response.json()["activity"]
        for row in rows:
            check_schema("Activity", row)
        assert [(r["tool"], r["status"]) for r in rows] == [("echo", "tool_error"), ("upper", "ok")]
        all_a = (await api.get("/activity", params={"server": "a"})).json()["activity"]
        assert [(r["tool"], r["status"]) for r in all_a] == [("echo", "tool_error"), ("upper", "ok"), ("echo", "ok")]
        for row in all_a:
            assert row["server"] == "a" and row["request_id"] and row["arguments"] is None
            assert row["duration_ms"] >= 0 and row["request_bytes"] > 0 and row["response_bytes"] > 0
        assert len({r["request_id"] for r in all_a}) == 3

        # A call the gateway refused carries its request id; that id finds exactly that call.
        by_id = (await api.get("/activity", params={"request_id": failed["request_id"]})).json()["activity"]
        assert len(by_id) == 1
        assert by_id[0]["server"] == "zz" and by_id[0]["status"] == "error"
        assert by_id[0]["error_type"] == "usage_error"
        # A successful call's id comes from the list, and finds exactly that call too.
        ok_id = all_a[1]["request_id"]
        assert [r["tool"] for r in (await api.get("/activity", params={"request_id": ok_id})).json()["activity"]] == [
            "upper"]

        # The CLI reads the same log, also while the gateway runs.
        listed = await anyio.to_thread.run_sync(
            lambda: mcprelay(home, config, "activity", "list", "--server", "a", "--json")
        )
        assert listed.returncode == 0, listed.stderr
        assert secret not in listed.stdout
        assert json.loads(listed.stdout) == all_a
        one = await anyio.to_thread.run_sync(
            lambda: mcprelay(home, config, "activity", "list", "--request-id", ok_id, "--json")
        )
        assert [r["request_id"] for r in json.loads(one.stdout)] == [ok_id]


async def test_rest_errors_and_rebinding_protection_on_the_real_gateway(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server()})
    async with http_gateway(home, config) as base, api_client(base, home, timeout=10) as api:
        port = urlsplit(base).port

        missing = await api.get("/servers/nope")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/json")
        body = missing.json()
        assert set(body) == ERROR_FIELDS
        assert body["success"] is False and body["error_type"] == "config_invalid" and body["server_name"] == "nope"
        check_schema("OAuthFlowError", body)
        assert (await api.get("/tools", params={"server": "nope"})).status_code == 404

        # A page that rebinds its own name to 127.0.0.1 sends its own Host: refused.
        rebound = await api.get("/servers", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403
        assert rebound.json()["error_type"] == "usage_error"
        assert rebound.json()["details"]["reason"] == "host_not_allowed"
        # A cross-origin request from a page: refused, on the REST API and on the MCP endpoint.
        cross = await api.get("/servers", headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and cross.json()["details"]["reason"] == "origin_not_allowed"
        mcp = await api.post(f"{base}/mcp", headers={"Origin": "http://evil.example"}, json={})
        assert mcp.status_code == 403 and "error" in mcp.json() and mcp.json()["jsonrpc"] == "2.0"
        # Our own names and loopback origins pass.
        local = await api.get("/servers", headers={"Host": f"localhost:{port}", "Origin": f"http://127.0.0.1:{port}"})
        assert local.status_code == 200

        # The tools endpoint (moved into the REST API) answers in its documented shape.
        await wait_for_state(api, "a", "ready")
        tools = (await api.get("/tools")).json()
        assert tools["success"] is True
        assert {t["name"] for t in tools["tools"]} == {"a__echo", "a__upper", "a__pid", "a__sleep", "a__sleep_stats"}
        for tool in tools["tools"]:
            check_schema("Tool", tool)


async def test_concurrent_calls_to_one_upstream_overlap(tmp_path: Path) -> None:
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server()})
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client:
        await wait_for_tools(client, {"a__sleep", "a__sleep_stats"})
        results: list[types.CallToolResult] = []

        async def sleep_call() -> None:
            results.append(await client.call_tool("a__sleep", {"seconds": 1}))

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(sleep_call)
        elapsed = time.monotonic() - started
        assert [text(r) for r in results] == ["slept"] * 10
        stats = json.loads(text(await client.call_tool("a__sleep_stats", {})))
        assert stats == {"now": 0, "peak": 10, "total": 10}
        assert elapsed < 8, elapsed  # ten in a row would take ten seconds


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")  # SEP-2577, still served
async def test_resources_prompts_and_logging_pass_through(tmp_path: Path) -> None:
    """Resources keep their upstream URI behind ``mcprelay://SERVER/``; prompts get the tool-style prefix."""
    home, config = paths(tmp_path)
    write_config(config, {"a": stdio_server()})
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client:
        await wait_for_tools(client, {"a__echo"})
        resources = (await client.list_resources()).resources
        uris = {str(r.uri) for r in resources}
        assert "mcprelay://a/memo://greeting" in uris
        read = await client.read_resource("mcprelay://a/memo://greeting")
        assert any(getattr(c, "text", None) == "hello from stdio" for c in read.contents)

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "a__summarize" in prompts
        prompt = await client.get_prompt("a__summarize", {"topic": "relays"})
        assert "Summarize relays" in json.dumps([m.model_dump(mode="json") for m in prompt.messages])

        await client.set_logging_level("warning")  # accepted, not an error

        with pytest.raises(MCPError):
            await client.read_resource("mcprelay://nope/memo://greeting")
