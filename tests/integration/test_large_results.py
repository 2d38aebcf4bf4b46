"""Large results (issue 10, item 7): a big answer in transit keeps its upstream alive; one over the cap is a
clear ``upstream_error`` and nothing else breaks. Real upstream processes (``mcprelay.testing.big_stdio_server``,
an SDK server over streamable HTTP), the real supervisor and real ``serve --stdio`` gateways.

Peak memory is measured by ``bench/large_results.py`` (it is a figure, not a test assertion).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mcprelay.config import parse_config
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamEnv
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.asgi import AppFactory, serve_in_thread
from mcprelay.testing.mcpserver import build_big_result_app
from tests.integration.gateway_helpers import cli_env, write_config

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BIG = {"command": sys.executable, "args": ["-m", "mcprelay.testing.big_stdio_server"]}
MiB = 1024 * 1024


async def _ready(upstream: Upstream, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while upstream.state != "ready":
            await anyio.sleep(0.05)


async def test_a_big_result_in_transit_does_not_fail_the_ping(tmp_path: Path) -> None:
    """The ping's answer waits behind a 6 MB line the server writes over 3 s; with a ping every 0.2 s that
    times out after 0.4 s, the session would be torn down (and the call with it) if silence were measured
    by the ping's answer instead of by bytes arriving."""
    server = parse_config({"mcpServers": {"big": BIG}}).config.server("big")
    async with httpx2.AsyncClient() as http:
        env = UpstreamEnv(store=MemoryStore(), http=http, home=tmp_path, ping_interval=0.2, ping_timeout=0.4)
        upstream = Upstream(server, env, lambda _u, _c: None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            await _ready(upstream)
            connected = upstream.connected_at
            result, _version = await upstream.request(
                "tools/call", {"name": "big", "arguments": {"size": 6_000_000, "seconds": 3}},
                request_id="r1", what="tool big",
            )
            assert len(result["content"][0]["text"]) == 6_000_000
            # Pings went on meanwhile and afterwards, and the session is the same one.
            await anyio.sleep(1)
            assert upstream.state == "ready" and upstream.connected_at == connected
            echo, _ = await upstream.request(
                "tools/call", {"name": "echo", "arguments": {"text": "still here"}}, request_id="r2", what="tool echo"
            )
            assert echo["content"][0]["text"] == "still here"
            upstream.stop()


async def test_a_silent_upstream_still_fails_its_ping(tmp_path: Path) -> None:
    """The other half: a server that sends nothing at all while the ping waits is taken for dead."""
    hang = {"command": sys.executable, "args": ["-c", (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    if m.get('method') == 'initialize':\n"
        "        r = {'protocolVersion': m['params']['protocolVersion'], 'capabilities': {},\n"
        "             'serverInfo': {'name': 'hang', 'version': '1'}}\n"
        "        print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'result': r}), flush=True)\n"
        "    elif m.get('method') == 'server/discover':\n"
        "        print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'error': {'code': -32601, 'message': 'no'}}),"
        " flush=True)\n"
    )]}
    server = parse_config({"mcpServers": {"hang": hang}}).config.server("hang")
    async with httpx2.AsyncClient() as http:
        env = UpstreamEnv(store=MemoryStore(), http=http, home=tmp_path, ping_interval=0.2, ping_timeout=0.4)
        upstream = Upstream(server, env, lambda _u, _c: None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            await _ready(upstream)
            with anyio.fail_after(10):
                while upstream.state == "ready":
                    await anyio.sleep(0.05)
            assert upstream.last_error is not None and "answered no ping" in upstream.last_error.message
            upstream.stop()


class Lines:
    def __init__(self, process: Any) -> None:
        self.process = process
        self.buffer = b""

    async def call(self, request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.process.stdin.send(json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode() + b"\n")
        with anyio.fail_after(60):
            while True:
                while b"\n" not in self.buffer:
                    self.buffer += await self.process.stdout.receive()
                line, _, self.buffer = self.buffer.partition(b"\n")
                message: dict[str, Any] = json.loads(line)
                if message.get("id") == request_id:
                    return message


def _error(answer: dict[str, Any]) -> dict[str, Any]:
    result = answer["result"]
    assert result["isError"] is True
    payload: dict[str, Any] = json.loads(result["content"][0]["text"])
    return payload


@pytest.mark.parametrize("id_last", [False, True], ids=["id-first (Python SDK)", "id-last (TypeScript SDK)"])
async def test_a_result_over_max_result_bytes_is_a_clear_upstream_error(tmp_path: Path, id_last: bool) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"big": BIG}, max_result_bytes=MiB)
    command = [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"]
    async with await anyio.open_process(command, env=cli_env(home)) as process:
        lines = Lines(process)
        await lines.call(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                           "clientInfo": {"name": "big", "version": "1"}})
        await process.stdin.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        with anyio.fail_after(30):
            while "big__big" not in {t["name"] for t in (await lines.call(1, "tools/list", {}))["result"]["tools"]}:
                await anyio.sleep(0.1)
        under = await lines.call(2, "tools/call", {"name": "big__big", "arguments": {"size": MiB - 1000}})
        assert len(under["result"]["content"][0]["text"]) == MiB - 1000

        over = await lines.call(3, "tools/call", {"name": "big__big", "arguments": {"size": 3 * MiB,
                                                                                   "id_last": id_last}})
        error = _error(over)
        assert error["error_type"] == "upstream_error"
        assert "1,048,576 bytes (max_result_bytes)" in error["message"]
        assert "is 3,145,8" in error["message"]  # the size it had (the text and its envelope)

        # An oversized notification is dropped; the call that caused it is answered; the session lives on.
        sent = await lines.call(4, "tools/call", {"name": "big__notify_big", "arguments": {"size": 2 * MiB}})
        assert sent["result"]["content"][0]["text"] == "sent"
        echo = await lines.call(5, "tools/call", {"name": "big__echo", "arguments": {"text": "after"}})
        assert echo["result"]["content"][0]["text"] == "after"
        await process.stdin.aclose()
        with anyio.fail_after(20):
            await process.wait()
    upstream_log = (home / "logs" / "upstreams" / "big.log")
    assert "Traceback" not in (upstream_log.read_text() if upstream_log.exists() else "")


@pytest.mark.parametrize("shape", ["json", "event-stream", "sse"])
async def test_an_http_upstream_result_over_the_cap(tmp_path: Path, shape: str) -> None:
    """Over streamable HTTP, both response shapes: the answer is cut at the cap while it streams. Over the
    legacy HTTP+SSE transport, which carries every answer as an event on one stream, the cap is per event
    and an error event takes the oversized one's place. Either way the call fails with the cap named, the
    session stays up, and results above the SDK's 1 MiB event limit and under the cap pass."""
    from mcprelay.connect import open_upstream
    from mcprelay.testing.mcpserver import build_big_result_sse_app

    if shape == "sse":
        app: Any = build_big_result_sse_app()
        entry: dict[str, Any] = {"url": "{base}/sse", "protocol": "sse"}
    else:
        app = AppFactory(lambda base: build_big_result_app(base, json_response=shape == "json"))
        entry = {"url": "{base}/mcp"}
    with serve_in_thread(app) as site:
        entry["url"] = entry["url"].format(base=site.url)
        server = parse_config({"max_result_bytes": 4 * MiB, "mcpServers": {"h": entry}}).config
        async with httpx2.AsyncClient() as http, open_upstream(
            server.server("h"), store=MemoryStore(), http=http, home=tmp_path
        ) as (client, _auth):
            # 1.5 MiB of text, sent twice (content and structuredContent): over the SDK's 1 MiB event limit.
            fine = await client.call_tool("big", {"size": 3 * MiB // 2})
            assert len(fine.content[0].text) == 3 * MiB // 2  # type: ignore[union-attr]
            with pytest.raises(Exception) as info:
                await client.call_tool("big", {"size": 5 * MiB})
            assert "4,194,304 bytes" in str(info.value) and "max_result_bytes" in str(info.value)
            assert (await client.call_tool("echo", {"text": "alive"})).content[0].text == "alive"  # type: ignore[union-attr]
