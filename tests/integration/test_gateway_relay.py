"""The whole protocol through the gateway, in every combination of eras and wires.

A real client (the official Python SDK, ``Client(mode="legacy")`` for the 2025-11-25 handshake or
``Client(mode="auto")`` for 2026-07-28) talks to a real ``mcprelay serve`` process (``--stdio`` or
``--listen``) in front of a real upstream (``mcprelay.testing.relay_server``, handshake-only or
dual-era, spawned over stdio or serving streamable HTTP). One session per combination exercises what
a gateway must relay: the first list complete, a call, elicitation, sampling and roots reaching the
client whose call caused them, log messages with the server in ``logger``, URIs rewritten in tool
results and prompts and readable back, completion by prompt and by template, progress, and a cancel
that reaches the upstream.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

from tests.integration.gateway_helpers import http_gateway, mcp_client, text, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RELAY = [sys.executable, "-m", "mcprelay.testing.relay_server"]
ROOT_URI = "file:///work/project"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_upstream(request: pytest.FixtureRequest) -> Iterator[str]:
    """The relay server over streamable HTTP (its era from the test's parameter); yields its URL."""
    era = request.param
    port = _free_port()
    process = subprocess.Popen([*RELAY, "--era", era, "--http", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the relay server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Agent:
    """What the client side answers and records."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, str | None, Any]] = []
        self.asked: list[str] = []

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sample(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.asked.append("sampling")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(text="four"), model="m")

    async def roots(self, context: Any) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="project")])

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append((params.level, params.logger, params.data))


@asynccontextmanager
async def _client(tmp_path: Path, wire: str, mode: str, upstream: dict[str, Any], agent: Agent | None,
                  **client: Any) -> AsyncIterator[Client]:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"r": upstream}, token_store="memory")
    callbacks: dict[str, Any] = {}
    if agent is not None:
        callbacks = {"elicitation_callback": agent.elicit, "sampling_callback": agent.sample,
                     "list_roots_callback": agent.roots, "logging_callback": agent.log}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's deprecation notes for logging/sampling/roots
        if wire == "stdio":
            server = StdioServerParameters(
                command=sys.executable,
                args=["-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"],
            )
            async with Client(server, mode=mode, **callbacks, **client) as session:
                yield session
            return
        async with http_gateway(home, config) as url, mcp_client(
            url, home, mode=mode, **callbacks, **client
        ) as session:
            yield session


def _upstream(kind: str, http_url: str | None) -> dict[str, Any]:
    era, _, wire = kind.partition("-")
    if wire == "http":
        assert http_url is not None
        return {"url": http_url, "protocol": "http"}
    return {"command": RELAY[0], "args": [*RELAY[1:], "--era", era]}


COMBINATIONS = [
    pytest.param(mode, wire, upstream, id=f"{mode}-{wire}-{upstream}")
    for mode in ("legacy", "auto")
    for wire in ("stdio", "listen")
    for upstream in ("handshake-stdio", "dual-stdio", "handshake-http", "dual-http")
]


@pytest.mark.parametrize("http_upstream", ["handshake"], indirect=True)
@pytest.mark.parametrize(("mode", "wire", "kind"), [c for c in COMBINATIONS if c.values[2] == "handshake-http"])
async def test_everything_relayed_handshake_http_upstream(
    tmp_path: Path, http_upstream: str, mode: str, wire: str, kind: str
) -> None:
    await _everything(tmp_path, mode, wire, _upstream(kind, http_upstream))


@pytest.mark.parametrize("http_upstream", ["dual"], indirect=True)
@pytest.mark.parametrize(("mode", "wire", "kind"), [c for c in COMBINATIONS if c.values[2] == "dual-http"])
async def test_everything_relayed_dual_http_upstream(
    tmp_path: Path, http_upstream: str, mode: str, wire: str, kind: str
) -> None:
    await _everything(tmp_path, mode, wire, _upstream(kind, http_upstream))


@pytest.mark.parametrize(("mode", "wire", "kind"), [c for c in COMBINATIONS if c.values[2].endswith("stdio")])
async def test_everything_relayed_stdio_upstream(tmp_path: Path, mode: str, wire: str, kind: str) -> None:
    await _everything(tmp_path, mode, wire, _upstream(kind, None))


async def _everything(tmp_path: Path, mode: str, wire: str, upstream: dict[str, Any]) -> None:
    agent = Agent()
    modern = mode == "auto"
    async with _client(tmp_path, wire, mode, upstream, agent, log_level="debug" if modern else None) as client:
        assert client.protocol_version == ("2026-07-28" if modern else "2025-11-25")
        # The very first list, right after connecting: every tool, not an empty catalogue.
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"r__echo", "r__ask_name", "r__links", "r__slow"} <= names, names

        assert text(await client.call_tool("r__echo", {"text": "hi"})) == "hi"
        # Input the upstream needs reaches this client, in whichever era it speaks.
        assert text(await client.call_tool("r__ask_name", {})) == "hello Ada"
        assert text(await client.call_tool("r__ask_model", {"question": "2+2"})) == "the model said: four"
        assert text(await client.call_tool("r__my_roots", {})) == f"roots: {ROOT_URI}"
        assert agent.asked == ["elicitation", "sampling", "roots"]

        # Log messages, named after the server; a handshake client gets what its level admits.
        if not modern:
            await client.set_logging_level("info")
        assert text(await client.call_tool("r__chatter", {})) == "chattered"
        with anyio.fail_after(5):
            while not any(level == "error" for level, _, _ in agent.logs):
                await anyio.sleep(0.05)
        levels = [level for level, logger, _ in agent.logs if logger == "r/chatter"]
        assert levels == (["debug", "info", "warning", "error"] if modern else ["info", "warning", "error"])

        # URIs a tool returns are the gateway's, and readable through it.
        links = await client.call_tool("r__links", {})
        link = next(b for b in links.content if isinstance(b, types.ResourceLink))
        embedded = next(b for b in links.content if isinstance(b, types.EmbeddedResource))
        assert link.uri == "mcprelay://r/memo://note/1"
        assert embedded.resource.uri == "mcprelay://r/memo://note/2"
        read = await client.read_resource(link.uri)
        assert read.contents[0].uri == link.uri
        assert isinstance(read.contents[0], types.TextResourceContents) and read.contents[0].text == "the first note"

        prompt = await client.get_prompt("r__greet", {"name": "Ada"})
        attached = prompt.messages[1].content
        assert isinstance(attached, types.EmbeddedResource) and attached.resource.uri == "mcprelay://r/memo://note/1"

        # Completion, routed by the prompt's name and by the template's URI.
        done = await client.complete(types.PromptReference(name="r__greet"), {"name": "name", "value": "al"})
        assert done.completion.values == ["alice", "albert"]
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["mcprelay://r/memo://note/{id}"]
        done = await client.complete(types.ResourceTemplateReference(uri=templates[0].uri_template),
                                     {"name": "id", "value": ""})
        assert done.completion.values == ["1", "2", "3"]

        # Progress reaches the caller, and cancelling the call cancels it upstream.
        progressed = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            progressed.set()

        with anyio.move_on_after(20) as waited:
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    await client.call_tool("r__slow", {"seconds": 30}, progress_callback=on_progress)

                tg.start_soon(slow)
                await progressed.wait()
                tg.cancel_scope.cancel()
        assert not waited.cancelled_caught, "no progress arrived"
        with anyio.fail_after(10):
            while json.loads(text(await client.call_tool("r__stats", {})))["cancelled"] < 1:
                await anyio.sleep(0.1)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("era", ["handshake", "dual"])
async def test_a_client_without_the_capability_gets_an_error_at_once_not_a_hang(
    tmp_path: Path, mode: str, era: str
) -> None:
    upstream = {"command": RELAY[0], "args": [*RELAY[1:], "--era", era]}
    async with _client(tmp_path, "stdio", mode, upstream, None) as client:
        outcomes = []
        for tool in ("r__ask_name", "r__my_roots"):
            with anyio.fail_after(10):
                try:
                    result = await client.call_tool(tool, {})
                except MCPError as exc:  # the upstream's tool failed on the refusal: its error, passed on
                    outcomes.append(exc.message)
                else:
                    assert result.is_error, result.content
                    outcomes.append(" ".join(getattr(b, "text", "") for b in result.content))
    # The handshake-era upstream asked and was refused with the protocol's error (its tool then failed); the
    # 2026-era one asked although the client's capabilities said no, and the gateway told the client so
    # instead of passing on a request it cannot answer. Either way the call ends at once and says why.
    assert "does not support elicitation" in outcomes[0], outcomes
    assert "does not support roots" in outcomes[1], outcomes


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("era", ["handshake", "dual"])
@pytest.mark.parametrize("wire", ["stdio", "listen"])
async def test_resource_subscriptions_reach_the_upstream_and_updates_come_back_rewritten(
    tmp_path: Path, mode: str, era: str, wire: str
) -> None:
    upstream = {"command": RELAY[0], "args": [*RELAY[1:], "--era", era]}
    exposed = "mcprelay://r/memo://note/1"
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async with _client(tmp_path, wire, mode, upstream, None, message_handler=on_message) as client:
        if mode == "legacy":
            await client.subscribe_resource(exposed)
            with anyio.fail_after(10):
                while not updates:  # the upstream's subscription is set up in the background
                    await client.call_tool("r__touch", {"uri": "memo://note/1"})
                    await anyio.sleep(0.2)
            assert set(updates) == {exposed}
            if era == "handshake":  # (a dual upstream is asked over subscriptions/listen, which it does not report)
                # Unsubscribing reaches the upstream: it stops holding a subscription for the note.
                touched = text(await client.call_tool("r__touch", {"uri": "memo://note/1"}))
                assert touched.endswith("(subscribed)"), touched
                await client.unsubscribe_resource(exposed)
                with anyio.fail_after(10):
                    while text(await client.call_tool("r__touch", {"uri": "memo://note/1"})).endswith("(subscribed)"):
                        await anyio.sleep(0.1)
            return
        async with client.listen(resource_subscriptions=[exposed]) as subscription:
            async with anyio.create_task_group() as tg:

                async def touch() -> None:
                    while True:
                        await client.call_tool("r__touch", {"uri": "memo://note/1"})
                        await anyio.sleep(0.2)

                tg.start_soon(touch)
                with anyio.fail_after(10):
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            assert event.uri == exposed
                            break
                tg.cancel_scope.cancel()


@pytest.mark.parametrize("wire", ["stdio", "listen"])
async def test_a_url_elicitation_and_its_completion_reach_the_client_that_was_asked(tmp_path: Path, wire: str) -> None:
    upstream = {"command": RELAY[0], "args": [*RELAY[1:], "--era", "handshake"]}
    agent = Agent()
    completed: list[str] = []
    seen: list[types.ElicitRequestParams] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen.append(params)
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            completed.append(message.params.elicitation_id)

    agent.elicit = elicit  # type: ignore[method-assign]
    async with _client(tmp_path, wire, "legacy", upstream, agent, message_handler=on_message) as client:
        assert text(await client.call_tool("r__ask_url", {})) == "url elicitation: accept"
        with anyio.fail_after(5):
            while not completed:
                await anyio.sleep(0.05)
    assert isinstance(seen[0], types.ElicitRequestURLParams) and seen[0].url == "https://example.com/sign-in"
    assert completed == ["relay-url-1"]
