"""``serve --stdio`` answers plain ``tools/call`` itself (``gateway/serving/fastpath.py``): the wire, byte for byte.

A real gateway process and a real stdio upstream; the client here writes and reads JSON-RPC lines
directly, so the test sees exactly what an agent would: ids echoed as sent, progress under the
client's own token, a cancelled call that is never answered (and is cancelled upstream), results
shaped for the client's protocol version, and the SDK server still answering everything else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from anyio.abc import Process
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import log_events
from tests.integration.gateway_helpers import (
    auth_headers,
    cli_env,
    http_gateway,
    mcprelay,
    stdio_server,
    text,
    wait_for_tools,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Wire:
    """Newline-delimited JSON-RPC over a gateway process's stdin/stdout."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.buffer = b""
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            self.buffer += await self.process.stdout.receive()
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        self.seen.append(message)
        return message

    async def response(self, request_id: str | int, timeout: float = 20) -> dict[str, Any]:
        """The response to ``request_id``; notifications and other responses met on the way stay in ``seen``."""
        with anyio.fail_after(timeout):
            while True:
                message = await self.receive()
                if message.get("id") == request_id and ("result" in message or "error" in message):
                    return message

    async def call(self, request_id: str | int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return await self.response(request_id)


@asynccontextmanager
async def stdio_gateway(
    home: Path, config: Path, version: str = "2025-06-18", tool: str = "a__sleep"
) -> AsyncIterator[Wire]:
    command = [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"]
    async with await anyio.open_process(command, env=cli_env(home), stderr=None) as process:
        wire = Wire(process)
        try:
            init = await wire.call(0, "initialize", {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "wire-test", "version": "1"},
            })
            assert init["result"]["protocolVersion"] == version
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            with anyio.fail_after(30):
                while True:
                    listed = await wire.call("list", "tools/list", {})
                    if tool in {t["name"] for t in listed["result"]["tools"]}:
                        break
                    await anyio.sleep(0.1)
            yield wire
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(15):
                await process.wait()


async def test_tool_calls_are_answered_on_the_wire_with_ids_progress_and_cancellation(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    async with stdio_gateway(home, config) as wire:
        # A string id comes back as sent; the result is shaped for 2025-06-18: the upstream speaks
        # 2026-07-28, whose resultType and serverInfo stamp must not reach this client.
        echo = await wire.call("call-1", "tools/call", {"name": "a__echo", "arguments": {"text": "hé"}})
        assert echo["result"]["content"] == [{"type": "text", "text": "hé"}]
        assert echo["result"]["isError"] is False
        assert "resultType" not in echo["result"] and "_meta" not in echo["result"]

        # Progress reaches the client under its own token, before the result.
        wire.seen.clear()
        slept = await wire.call(2, "tools/call", {
            "name": "a__sleep", "arguments": {"seconds": 0.2}, "_meta": {"progressToken": "tok-9"},
        })
        assert slept["result"]["content"][0]["text"] == "slept"
        progress = [m["params"] for m in wire.seen if m.get("method") == "notifications/progress"]
        assert [p["progressToken"] for p in progress] == ["tok-9", "tok-9"]
        assert [p["progress"] for p in progress] == [0, 0.2] and progress[-1]["message"] == "awake"

        # Cancelled: never answered, and the upstream stops running it.
        await wire.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                         "params": {"name": "a__sleep", "arguments": {"seconds": 30}}})
        with anyio.fail_after(10):
            while True:
                stats = await wire.call("s", "tools/call", {"name": "a__sleep_stats", "arguments": {}})
                if stats["result"]["structuredContent"]["now"] == 1:
                    break
                await anyio.sleep(0.05)
        await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}})
        with anyio.fail_after(10):
            while True:
                stats = await wire.call("s", "tools/call", {"name": "a__sleep_stats", "arguments": {}})
                if stats["result"]["structuredContent"]["now"] == 0:
                    break
                await anyio.sleep(0.05)
        assert not [m for m in wire.seen if m.get("id") == 3]

        # Errors keep their shapes: a gateway error is a tool result, a malformed request (handed to
        # the SDK server) a JSON-RPC error.
        unknown = await wire.call(4, "tools/call", {"name": "nope__echo", "arguments": {}})
        payload = json.loads(unknown["result"]["content"][0]["text"])
        assert unknown["result"]["isError"] is True and payload["error_type"] == "usage_error"
        assert payload["request_id"]
        malformed = await wire.call(5, "tools/call", {"name": "a__echo", "arguments": ["not", "an", "object"]})
        assert "error" in malformed and malformed["error"]["code"] == -32602

        # Everything else is the SDK server's, on the same wire.
        assert "result" in await wire.call(6, "ping", {})

    # Those calls were answered by the passthrough (the SDK server got only the malformed one)...
    ended = [e for e in log_events(home) if e["event"] == "stdio_session_ended"]
    assert ended and ended[-1]["protocol_version"] == "2025-06-18"
    assert ended[-1]["tool_calls_passed_through"] >= 6

    # ...and are in the activity log like any other.
    activity = mcprelay(home, config, "activity", "list", "--json")
    assert activity.returncode == 0, activity.stderr
    rows = json.loads(activity.stdout)
    records = rows if isinstance(rows, list) else next(v for v in rows.values() if isinstance(v, list))
    by_tool = {(r["tool"], r["status"]) for r in records}
    assert ("echo", "ok") in by_tool and ("sleep", "ok") in by_tool
    assert any(r["status"] == "error" and r["error_type"] == "usage_error" for r in records)


async def test_a_2026_era_client_is_passed_through_with_mcprelays_stamp(tmp_path: Path) -> None:
    """A client that stamps every request (2026-07-28, no initialize): its calls are taken too, and the
    results carry what that era requires — resultType, and mcprelay's serverInfo, not the upstream's."""
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"],
        env=cli_env(home),
    )
    async with Client(params, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        await wait_for_tools(client, {"a__echo"})
        result = await client.call_tool("a__echo", {"text": "modern"})
        assert text(result) == "modern" and result.result_type == "complete"
        assert result.meta and result.meta["io.modelcontextprotocol/serverInfo"]["name"] == "mcprelay"
        failed = await client.call_tool("nope__echo", {})
        assert failed.is_error and failed.meta and "io.modelcontextprotocol/serverInfo" in failed.meta
    ended = [e for e in log_events(home) if e["event"] == "stdio_session_ended"]
    assert ended and ended[-1]["tool_calls_passed_through"] == 2 and ended[-1]["protocol_version"] is None


async def test_serve_listen_answers_plain_tool_calls_as_json_and_leaves_the_rest_to_the_sdk(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with http_gateway(home, config) as base, httpx2.AsyncClient(
        base_url=base, timeout=30, headers=auth_headers(home)
    ) as http:
        init = await http.post("/mcp", headers=accept, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "http-wire", "version": "1"},
            },
        })
        assert init.status_code == 200, init.text
        session = {**accept, "Mcp-Session-Id": init.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
        sent = await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert sent.status_code == 202

        async def post(message: dict[str, Any]) -> httpx2.Response:
            return await http.post("/mcp", headers=session, json=message)

        def events(response: httpx2.Response) -> list[dict[str, Any]]:
            return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]

        with anyio.fail_after(30):
            while True:  # the SDK answers listings, over its event stream
                listed = await post({"jsonrpc": "2.0", "id": "l", "method": "tools/list", "params": {}})
                assert listed.headers["content-type"].startswith("text/event-stream")
                if "a__sleep" in {t["name"] for t in events(listed)[-1]["result"]["tools"]}:
                    break
                await anyio.sleep(0.1)

        # A plain call is answered here, as JSON, shaped for 2025-06-18 (no resultType, no upstream stamp).
        echo = await post({"jsonrpc": "2.0", "id": "e1", "method": "tools/call",
                           "params": {"name": "a__echo", "arguments": {"text": "over http"}}})
        assert echo.status_code == 200 and echo.headers["content-type"] == "application/json"
        body = echo.json()
        assert body["id"] == "e1" and body["result"]["content"] == [{"type": "text", "text": "over http"}]
        assert "resultType" not in body["result"] and "_meta" not in body["result"]

        # With a progress token the SDK streams it: progress events, then the result.
        slept = await post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "a__sleep", "arguments": {"seconds": 0.1}, "_meta": {"progressToken": "p"}}})
        assert slept.headers["content-type"].startswith("text/event-stream")
        streamed = events(slept)
        assert [m["params"]["progressToken"] for m in streamed if m.get("method") == "notifications/progress"] == [
            "p", "p"]
        assert streamed[-1]["result"]["content"][0]["text"] == "slept"

        # A cancelled call (notifications/cancelled on another POST) stops upstream too.
        async def stats() -> dict[str, int]:
            answer = await post({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
                                 "params": {"name": "a__sleep_stats", "arguments": {}}})
            result: dict[str, int] = answer.json()["result"]["structuredContent"]
            return result

        async with anyio.create_task_group() as tg:
            outcome: list[httpx2.Response] = []

            async def long_call() -> None:
                outcome.append(await post({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                                           "params": {"name": "a__sleep", "arguments": {"seconds": 30}}}))

            tg.start_soon(long_call)
            with anyio.fail_after(10):
                while (await stats())["now"] != 1:
                    await anyio.sleep(0.05)
            cancel = await post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})
            assert cancel.status_code == 202
        assert outcome[0].status_code == 202 and outcome[0].content == b""  # no JSON-RPC answer
        with anyio.fail_after(10):
            while (await stats())["now"] != 0:
                await anyio.sleep(0.05)

        # A 2026-era request (no session; version, method and name in headers and _meta) is taken too...
        stamp = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities": {},
                 "io.modelcontextprotocol/clientInfo": {"name": "http-wire", "version": "1"}}
        modern = {**accept, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "a__echo"}
        request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "a__echo", "arguments": {"text": "2026"}, "_meta": stamp}}
        answered = await http.post("/mcp", headers=modern, json=request)
        assert answered.status_code == 200 and answered.headers["content-type"] == "application/json"
        result = answered.json()["result"]
        assert result["content"][0]["text"] == "2026" and result["resultType"] == "complete"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcprelay"
        # ...unless its headers disagree with its body: that is the SDK's to reject.
        mismatch = await http.post("/mcp", headers={**modern, "Mcp-Name": "a__upper"}, json=request)
        assert mismatch.json()["error"]["code"] == types.HEADER_MISMATCH

        # An unknown session still gets the SDK's 404.
        stale = await http.post("/mcp", headers={**session, "Mcp-Session-Id": "nope"}, json={
            "jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "a__echo", "arguments": {"text": "x"}},
        })
        assert stale.status_code == 404

    rows = json.loads(mcprelay(home, config, "activity", "list", "--json").stdout)
    records = rows if isinstance(rows, list) else next(v for v in rows.values() if isinstance(v, list))
    assert ("echo", "ok") in {(r["tool"], r["status"]) for r in records}


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18"])  # the upstream's own version, and another
async def test_malformed_upstream_results_become_clear_errors(tmp_path: Path, version: str) -> None:
    """Forwarded as received when the versions match, so the gateway's shape check is the one look a
    result gets; across versions the SDK's serializer judges it. Either way: a clear upstream_error."""
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"h": {"command": sys.executable, "args": ["-m", "mcprelay.testing.hostile_stdio_server"]}})
    async with stdio_gateway(home, config, version=version, tool="h__fine") as wire:
        fine = await wire.call(1, "tools/call", {"name": "h__fine", "arguments": {}})
        assert fine["result"]["content"] == [{"type": "text", "text": "fine"}]
        for i, tool in enumerate(["content_not_a_list", "content_without_type", "is_error_not_a_boolean",
                                  "structured_not_an_object"]):
            answer = await wire.call(10 + i, "tools/call", {"name": f"h__{tool}", "arguments": {}})
            assert answer["result"]["isError"] is True, (tool, answer)
            payload = json.loads(answer["result"]["content"][0]["text"])
            assert payload["error_type"] == "upstream_error", (tool, payload)
            assert f"tool {tool} on h returned a result that does not match" in payload["message"]

        # Not even a JSON-RPC response (the SDK's transport cannot parse it): answered at once, not after
        # the 120 s call timeout, saying what was wrong.
        with anyio.fail_after(10):
            answer = await wire.call(20, "tools/call", {"name": "h__not_an_object", "arguments": {}})
        payload = json.loads(answer["result"]["content"][0]["text"])
        assert payload["error_type"] == "upstream_error"
        assert "not a valid JSON-RPC response (result: Input should be an object)" in payload["message"]
        # A multi-round-trip answer (input_required) cannot be relayed: said so, not passed on.
        asks = await wire.call(22, "tools/call", {"name": "h__asks_for_input", "arguments": {}})
        payload = json.loads(asks["result"]["content"][0]["text"])
        assert payload["error_type"] == "upstream_error" and "asked for input" in payload["message"]
        # The session survives all of it.
        assert (await wire.call(21, "tools/call", {"name": "h__fine", "arguments": {}}))["result"]["isError"] is False


async def test_tool_calls_answered_here_keep_the_http_session_from_idling_out(tmp_path: Path) -> None:
    """The SDK reaps a session after its idle timeout, counting only the requests it serves itself; the
    passthrough holds the session the same way. In process, with a 2-second idle timeout."""
    import uvicorn

    from mcprelay.config import parse_config
    from mcprelay.gateway.app import open_gateway
    from mcprelay.gateway.serving.http import bind, build_http_app
    from mcprelay.store.memory import MemoryStore

    loaded = parse_config({"mcpServers": {"a": stdio_server()}})
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with open_gateway(loaded, home=tmp_path / "home", store=MemoryStore()) as running:
        downstream = running.downstream
        app, _manager = build_http_app(downstream, running.control, host="127.0.0.1", port=port, api_key=None,
                                       session_idle_timeout=2.0)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        async with anyio.create_task_group() as tg, httpx2.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30
        ) as http:
            tg.start_soon(server.serve, [sock])
            # The upstream first: the session's idle countdown must not run while it starts.
            with anyio.fail_after(30):
                while "a__sleep" not in {t.name for t in downstream.gateway.tools()}:
                    await anyio.sleep(0.05)
            accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
            with anyio.fail_after(10):
                while True:
                    try:
                        init = await http.post("/mcp", headers=accept, json={
                            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                                "protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "idle", "version": "1"}}})
                        break
                    except httpx2.ConnectError:
                        await anyio.sleep(0.05)
            session = {**accept, "Mcp-Session-Id": init.headers["mcp-session-id"],
                       "MCP-Protocol-Version": "2025-06-18"}
            await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            # 4 s of back-to-back 0.5-second calls answered by the passthrough: never 2 s without one.
            for i in range(8):
                answer = await http.post("/mcp", headers=session, json={
                    "jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                    "params": {"name": "a__sleep", "arguments": {"seconds": 0.5}}})
                assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
            # The SDK still knows the session...
            listed = await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "id": 99,
                                                                    "method": "tools/list", "params": {}})
            assert listed.status_code == 200, listed.text
            # ...and reaps it once it is really idle.
            await anyio.sleep(3.5)
            gone = await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "id": 100,
                                                                  "method": "tools/list", "params": {}})
            assert gone.status_code == 404
            server.should_exit = True
