"""The fixture MCP server's own logic, over real sockets and a real stdio subprocess.

2026-07-28 requests are raw HTTP (the wire the conformance suite checks); handshake-era behaviour
is driven through the SDK's ``ClientSession`` over stdio, the way the gateway spawns the fixture.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from mcprelay.testing.asgi import ThreadedServer, serve_in_thread
from mcprelay.testing.fixture_server import http_app

pytestmark = pytest.mark.integration

MODERN = "2026-07-28"
SUB = "io.modelcontextprotocol/subscriptionId"


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    with serve_in_thread(http_app()) as running:
        yield running


def envelope(capabilities: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities if capabilities is not None else {},
        **meta,
    }


def headers_for(method: str, params: dict[str, Any]) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, "Accept": "application/json, text/event-stream"}
    name = params.get("uri") if method == "resources/read" else params.get("name")
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def frames(response: httpx2.Response) -> list[dict[str, Any]]:
    """Every JSON-RPC message of a JSON or SSE answer."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        return [response.json()]
    return [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
    ]


def post(server: ThreadedServer, method: str, params: dict[str, Any], **meta: Any) -> tuple[int, list[dict[str, Any]]]:
    capabilities = meta.pop("capabilities", {"elicitation": {}, "sampling": {}, "roots": {}})
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": envelope(capabilities, **meta)}}
    response = httpx2.post(f"{server.url}/mcp", json=body, headers=headers_for(method, params), timeout=10)
    return response.status_code, frames(response)


def call(server: ThreadedServer, name: str, **params: Any) -> tuple[int, dict[str, Any]]:
    status, messages = post(server, "tools/call", {"name": name, "arguments": {}, **params.pop("extra", {})}, **params)
    return status, messages[-1]


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


# ---- 2026-07-28: input_required rounds and their state -------------------------------------------
def test_multi_round_state_carries_round_one_into_round_two_and_changes_every_round(server: ThreadedServer) -> None:
    _, first = call(server, "test_input_required_result_multi_round")
    one = first["result"]
    assert one["resultType"] == "input_required" and list(one["inputRequests"]) == ["step1"]
    assert one["requestState"]

    extra = {"inputResponses": {"step1": accept(name="Alice")}, "requestState": one["requestState"]}
    _, second = call(server, "test_input_required_result_multi_round", extra=extra)
    two = second["result"]
    assert two["resultType"] == "input_required" and list(two["inputRequests"]) == ["step2"]
    assert two["requestState"] != one["requestState"]

    extra = {"inputResponses": {"step2": accept(color="blue")}, "requestState": two["requestState"]}
    _, third = call(server, "test_input_required_result_multi_round", extra=extra)
    assert third["result"]["resultType"] == "complete"
    assert third["result"]["content"][0]["text"] == "Multi-round complete for Alice who likes blue"


def test_round_two_without_round_ones_state_asks_again(server: ThreadedServer) -> None:
    extra = {"inputResponses": {"confirm": accept(ok=True)}}
    _, answer = call(server, "test_input_required_result_request_state", extra=extra)
    assert answer["result"]["resultType"] == "input_required"  # the state is what round two is checked against


def test_a_tampered_request_state_is_refused_before_the_tool_runs(server: ThreadedServer) -> None:
    _, first = call(server, "test_input_required_result_tampered_state")
    state = first["result"]["requestState"]
    extra = {"inputResponses": {"confirm": accept(ok=True)}, "requestState": state + "-TAMPERED"}
    status, answer = call(server, "test_input_required_result_tampered_state", extra=extra)
    assert status == 400 and answer["error"]["code"] == types.INVALID_PARAMS
    extra = {"inputResponses": {"confirm": accept(ok=True)}, "requestState": state}
    _, answer = call(server, "test_input_required_result_tampered_state", extra=extra)
    assert answer["result"]["content"][0]["text"] == "integrity-ok: state verified"


def test_state_minted_for_one_tool_is_refused_by_another(server: ThreadedServer) -> None:
    _, first = call(server, "test_input_required_result_request_state")
    extra = {"inputResponses": {"confirm": accept(ok=True)}, "requestState": first["result"]["requestState"]}
    status, answer = call(server, "test_input_required_result_tampered_state", extra=extra)
    assert status == 400 and answer["error"]["code"] == types.INVALID_PARAMS


def test_questions_follow_the_capabilities_this_request_declares(server: ThreadedServer) -> None:
    _, answer = call(server, "test_input_required_result_capabilities", capabilities={"sampling": {}})
    assert list(answer["result"]["inputRequests"]) == ["sample_input"]
    _, answer = call(server, "test_input_required_result_capabilities", capabilities={})
    assert answer["result"]["content"][0]["text"] == "No supported capabilities declared"


def test_an_undeclared_capability_is_32021_with_http_400(server: ThreadedServer) -> None:
    status, answer = call(server, "test_missing_capability", capabilities={})
    assert status == 400
    assert answer["error"]["code"] == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert answer["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
    status, answer = call(server, "test_sampling", capabilities={"elicitation": {}})  # needs sampling too
    assert status == 400 and answer["error"]["data"]["requiredCapabilities"] == {"sampling": {}}


def test_extra_input_responses_are_ignored_and_missing_ones_asked_for(server: ThreadedServer) -> None:
    extra = {"inputResponses": {"user_name": accept(name="Bo"), "unrelated": accept(x=1)}}
    _, answer = call(server, "test_input_required_result_elicitation", extra=extra)
    assert answer["result"]["content"][0]["text"] == "Hello, Bo!"
    _, answer = call(server, "test_input_required_result_elicitation", extra={"inputResponses": {"wrong": accept()}})
    assert list(answer["result"]["inputRequests"]) == ["user_name"]


def test_logs_reach_a_2026_request_only_when_it_asks_for_them(server: ThreadedServer) -> None:
    _, messages = post(server, "tools/call", {"name": "test_logging_tool", "arguments": {}})
    assert [m.get("method") for m in messages] == [None]
    _, messages = post(
        server,
        "tools/call",
        {"name": "test_logging_tool", "arguments": {}},
        **{"io.modelcontextprotocol/logLevel": "info"},
    )
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    _, messages = post(
        server,
        "tools/call",
        {"name": "test_logging_tool", "arguments": {}},
        **{"io.modelcontextprotocol/logLevel": "error"},
    )
    assert [m.get("method") for m in messages] == [None]


def test_an_unknown_resource_is_invalid_params_naming_the_uri(server: ThreadedServer) -> None:
    status, messages = post(server, "resources/read", {"uri": "test://nothing-here"})
    assert status == 400
    assert messages[-1]["error"]["code"] == types.INVALID_PARAMS
    assert messages[-1]["error"]["data"] == {"uri": "test://nothing-here"}


def test_lists_are_fixed_ordered_and_keep_raw_schemas(server: ThreadedServer) -> None:
    listings = [post(server, "tools/list", {})[1][-1]["result"] for _ in range(2)]
    names = [t["name"] for t in listings[0]["tools"]]
    assert names == [t["name"] for t in listings[1]["tools"]]
    assert names[0] == "test_simple_text"
    schema = next(t for t in listings[0]["tools"] if t["name"] == "json_schema_2020_12_tool")["inputSchema"]
    assert schema["$defs"]["address"]["$anchor"] == "addressDef" and schema["additionalProperties"] is False
    assert listings[0]["ttlMs"] == 300_000 and listings[0]["cacheScope"] == "public"


def test_the_change_triggers_really_change_a_listing_but_no_name_or_order(server: ThreadedServer) -> None:
    def snapshot() -> tuple[list[str], str, str]:
        tools = post(server, "tools/list", {})[1][-1]["result"]["tools"]
        prompts = post(server, "prompts/list", {})[1][-1]["result"]["prompts"]
        tool = next(t["description"] for t in tools if t["name"] == "test_dynamic_tool")
        prompt = next(p["description"] for p in prompts if p["name"] == "test_dynamic_prompt")
        return [t["name"] for t in tools] + [p["name"] for p in prompts], tool, prompt

    names, tool, prompt = snapshot()
    call(server, "test_trigger_tool_change")
    call(server, "test_trigger_prompt_change")
    after = snapshot()
    assert after[0] == names
    assert after[1] != tool and after[2] != prompt


@pytest.mark.anyio
async def test_a_listen_stream_is_acknowledged_then_told_of_list_changes(server: ThreadedServer) -> None:
    params = {"notifications": {"toolsListChanged": True}, "_meta": envelope()}
    body = {"jsonrpc": "2.0", "id": 77, "method": "subscriptions/listen", "params": params}
    seen: list[dict[str, Any]] = []
    async with httpx2.AsyncClient(timeout=10) as client:
        async with client.stream(
            "POST", f"{server.url}/mcp", json=body, headers=headers_for("subscriptions/listen", params)
        ) as stream:
            lines = stream.aiter_lines()
            with anyio.fail_after(10):
                while not seen:
                    line = await anext(lines)
                    if line.startswith("data:"):
                        seen.append(json.loads(line[5:]))
                await anyio.to_thread.run_sync(lambda: call(server, "test_trigger_prompt_change"))  # not asked for
                await anyio.to_thread.run_sync(lambda: call(server, "test_trigger_tool_change"))
                while len(seen) < 2:
                    line = await anext(lines)
                    if line.startswith("data:"):
                        seen.append(json.loads(line[5:]))
    assert seen[0]["method"] == "notifications/subscriptions/acknowledged"
    assert seen[1]["method"] == "notifications/tools/list_changed"
    assert all(frame["params"]["_meta"][SUB] == 77 for frame in seen)


# ---- 2025-11-25: the same asks as server-to-client requests, over stdio ---------------------------
def fixture_stdio() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcprelay.testing.fixture_server", "--stdio"])


async def answer_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Hello there!"), model="test-model"
    )


async def answer_elicitation(context: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Alice"})


async def answer_roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/root", name="root")])


@pytest.mark.anyio
async def test_handshake_era_asks_the_client_with_requests_during_the_call() -> None:
    async with stdio_client(fixture_stdio()) as (read, write):
        session = ClientSession(
            read,
            write,
            sampling_callback=answer_sampling,
            elicitation_callback=answer_elicitation,
            list_roots_callback=answer_roots,
        )
        async with session:
            await session.initialize()
            result = await session.call_tool("test_input_required_result_multiple_inputs", {})
            assert result.content[0].text == "Name: Alice; Greeting: Hello there!; Roots: 1"  # type: ignore[union-attr]
            result = await session.call_tool("test_input_required_result_multi_round", {})
            assert not result.is_error


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # deprecated in 2026, served in 2025
async def test_handshake_era_logging_follows_set_level_and_subscriptions_get_updates() -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    updated: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(message.params.uri)

    async with stdio_client(fixture_stdio()) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log, message_handler=on_message) as session:
            await session.initialize()
            await session.set_logging_level("warning")
            await session.call_tool("test_tool_with_logging", {})
            assert logs == []
            await session.set_logging_level("info")
            await session.call_tool("test_tool_with_logging", {})
            assert [entry.data for entry in logs] == [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ]
            await session.subscribe_resource("test://watched-resource")
            await session.call_tool("test_touch_watched_resource", {})
            with anyio.fail_after(5):
                while not updated:
                    await anyio.sleep(0.02)
            assert updated == ["test://watched-resource"]
            contents = await session.read_resource("test://watched-resource")
            assert "version 1" in contents.contents[0].text  # type: ignore[union-attr]
