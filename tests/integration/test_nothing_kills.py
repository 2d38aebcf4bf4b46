"""No single input ends a running gateway (issue 10, items 2 and 10): real gateway processes, real upstreams.

* malformed JSON-RPC lines on ``serve --stdio`` and bodies on ``serve --listen``'s ``/mcp`` are
  answered with JSON-RPC errors (``gateway/serving/framing.py``), and the gateway keeps serving;
* a config edit of any kind that cannot be loaded is logged and the running config kept
  (``gateway/control/watch.py``), and the same files given to a command are exit 2 naming the file;
* SIGTERM and SIGINT end both serve modes with exit 0 and no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process

from tests.conftest import log_events
from tests.integration.gateway_helpers import (
    auth_headers,
    cli_env,
    http_gateway,
    mcprelay,
    stdio_server,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hardening", "version": "1"}}

#: Lines that killed or silenced the gateway before framing.py, with the error code each must get.
KILLERS: list[tuple[bytes, int, str]] = [
    (b'{"jsonrpc":"2.0","id":90,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":'
     + b"[" * 100_000, -32700, "nested"),
    (b'{"jsonrpc":"2.0","id":91,"method":"tools/call","params":{"name":"a__echo","arguments":{"n":'
     + b"7" * 5000 + b"}}}", -32700, "digits"),
    (b'{"jsonrpc":"2.0","id":92,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":NaN}}}',
     -32700, "NaN"),
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}', -32600, '"id" must be'),
    (b'{"jsonrpc":"2.0","id":NaN,"method":"tools/list"}', -32700, "NaN"),
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', -32600, '"id" must be'),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', -32600, '"id" must be'),
    (b'{"jsonrpc":"2.0","id":93,"method":"tools/list","params":["x"]}', -32600, '"params" must be'),
    (b'{"jsonrpc":"2.0","id":94,"method":"tools/ca\xffll"}', -32700, "UTF-8"),
    (b"[1,2,3]", -32600, "batch"),
    (b"{not json at all", -32700, "not valid JSON"),
]


def children_of(pid: int) -> set[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as fh:
            found.update(int(p) for p in fh.read().split())
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


class Lines:
    """JSON-RPC lines to and from a ``serve --stdio`` process."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.buffer = b""

    async def send_raw(self, line: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(line + b"\n")

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message).encode())

    async def receive(self, timeout: float = 20) -> dict[str, Any]:
        assert self.process.stdout is not None
        with anyio.fail_after(timeout):
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    async def reply(self) -> dict[str, Any]:
        """The next response or error, skipping the notifications the gateway sends meanwhile."""
        while True:
            message = await self.receive()
            if "method" not in message:
                return message

    async def call(self, request_id: int | str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            message = await self.receive()
            if message.get("id") == request_id:
                return message


@asynccontextmanager
async def stdio_lines(home: Path, config: Path) -> AsyncIterator[Lines]:
    command = [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"]
    async with await anyio.open_process(command, env=cli_env(home), stderr=subprocess.PIPE) as process:
        lines = Lines(process)
        try:
            assert "result" in await lines.call(0, "initialize", INIT)
            await lines.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            with anyio.fail_after(30):
                while "a__echo" not in {t["name"] for t in (await lines.call("l", "tools/list", {}))["result"][
                        "tools"]}:
                    await anyio.sleep(0.1)
            yield lines
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(15):
                await process.wait()
            assert process.stderr is not None
            stderr = (await process.stderr.receive(1 << 20)).decode(errors="replace") if process.returncode else ""
            assert process.returncode == 0, stderr


async def test_serve_stdio_answers_every_malformed_line_and_keeps_serving(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    async with stdio_lines(home, config) as lines:
        for line, code, words in KILLERS:
            await lines.send_raw(line)
            answer = await lines.reply()
            assert answer.get("error", {}).get("code") == code, (line[:80], answer)
            assert words in answer["error"]["message"]
            # A request refused for its envelope keeps its usable id; everything else is answered with null.
            assert answer["id"] == (93 if b'"id":93' in line else None)
            # ...and the gateway still serves: a real call right after each one.
            echo = await lines.call("after", "tools/call", {"name": "a__echo", "arguments": {"text": "alive"}})
            assert echo["result"]["content"][0]["text"] == "alive"


def test_serve_stdio_frames_lines_that_do_not_come_through_a_pipe(tmp_path: Path) -> None:
    """stdin a regular file (as a terminal, or Windows, where the wire is read on worker threads): the same
    framing answers every malformed line, and the well-formed ones reach the server."""
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    wire = tmp_path / "wire.jsonl"
    init = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT}).encode()
    wire.write_bytes(b"\n".join([init, *(line for line, _code, _words in KILLERS)]) + b"\n")
    with wire.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"],
            stdin=stdin, capture_output=True, timeout=60, env=cli_env(home),
        )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(a.get("id") == 0 and "result" in a for a in answers)
    codes = sorted(a["error"]["code"] for a in answers if "error" in a)
    assert codes == sorted(code for _line, code, _words in KILLERS)


async def test_serve_listen_answers_every_malformed_body_and_keeps_serving(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with http_gateway(home, config) as base, httpx2.AsyncClient(
        base_url=base, timeout=30, headers={**headers, **auth_headers(home)}
    ) as http:
        init = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
        assert init.status_code == 200
        session = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        for body, code, words in KILLERS:
            response = await http.post("/mcp", headers=session, content=body)
            assert response.status_code == 400, (body[:80], response.status_code, response.text[:300])
            answer = response.json()
            assert answer["error"]["code"] == code and words in answer["error"]["message"]
        # Too large: refused before it is read whole (413), with a JSON-RPC error.
        big = b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{"s":"' + b"x" * (5 * 1024 * 1024) + b'"}}'
        response = await http.post("/mcp", headers=session, content=big)
        assert response.status_code == 413 and "at most 4,194,304 bytes" in response.json()["error"]["message"]
        # The gateway still serves: a plain call on the same session.
        with anyio.fail_after(30):
            while True:
                call = await http.post("/mcp", headers=session, json={
                    "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "a__echo", "arguments": {"text": "alive"}}})
                payload = call.json() if call.headers.get("content-type", "").startswith("application/json") else {}
                if payload.get("result", {}).get("isError") is False:
                    break
                await anyio.sleep(0.2)
        assert payload["result"]["content"][0]["text"] == "alive"


# ---- config files: exit 2 for a command, logged-and-kept for a running gateway ----------------------


def _huge(path: Path) -> None:
    with path.open("wb") as fh:
        fh.write(b'{"mcpServers": {}, "x": "')
        fh.truncate(47 * 1024 * 1024)


BAD_CONFIGS: dict[str, Any] = {
    "deep": b'{"mcpServers": ' + b"[" * 100_000,
    "not-utf8": b'{"mcpServers": {"a": {"url": "https://h\xff"}}}',
    "huge-integer": b'{"mcpServers": {}, "max_result_bytes": ' + b"9" * 5000 + b"}",
    "bad-ipv6-url": b'{"mcpServers": {"a": {"url": "http://[::1"}}}',
    "47-MB": _huge,
    "fifo": os.mkfifo,
}


def _put(path: Path, how: Any) -> None:
    """Replace ``path`` in one step (as editors do) with a file made by ``how``."""
    tmp = path.with_name("next.tmp")
    if tmp.exists():
        tmp.unlink()
    if isinstance(how, bytes):
        tmp.write_bytes(how)
    else:
        how(tmp)
    os.replace(tmp, path)


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_a_command_given_a_bad_config_exits_2_naming_the_file(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.json"
    _put(config, BAD_CONFIGS[kind])
    started = time.monotonic()
    result = mcprelay(tmp_path / "home", config, "auth", "status", timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "config_invalid" in result.stderr
    assert str(config) in result.stderr.replace("\n", "")
    assert time.monotonic() - started < 25  # a FIFO does not block, a 47 MB file is not read


async def test_a_running_gateway_keeps_its_config_through_every_bad_edit(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    async with stdio_lines(home, config) as lines:
        for kind, how in BAD_CONFIGS.items():
            before = len([e for e in log_events(home) if e["event"] == "config_reload_failed"])
            _put(config, how)
            with anyio.fail_after(15):
                while len([e for e in log_events(home) if e["event"] == "config_reload_failed"]) <= before:
                    await anyio.sleep(0.2)
            failed = [e for e in log_events(home) if e["event"] == "config_reload_failed"][-1]
            assert failed["error_type"] == "config_invalid" and str(config) in failed["message"], (kind, failed)
            echo = await lines.call(kind, "tools/call", {"name": "a__echo", "arguments": {"text": kind}})
            assert echo["result"]["content"][0]["text"] == kind
        # The watcher is still alive: a valid edit applies.
        write_config(config, {"a": stdio_server(), "b": stdio_server("b_")})
        with anyio.fail_after(30):
            while "b__b_echo" not in {t["name"] for t in (await lines.call("l", "tools/list", {}))["result"]["tools"]}:
                await anyio.sleep(0.2)


# ---- signals ---------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals; Windows: Ctrl-C / Ctrl-Break, see cli/serve.py")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", ["--listen", "--stdio"])
def test_a_signal_ends_serve_with_exit_0_and_no_traceback(tmp_path: Path, signum: int, mode: str) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    args = ["serve", "--listen", "127.0.0.1:0"] if mode == "--listen" else ["serve", "--stdio"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(home),
    )
    try:
        deadline = time.monotonic() + 30
        upstreams: set[int] = set()
        while not upstreams or (mode == "--listen" and not (home / "state" / "gateway.json").exists()):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
            upstreams = children_of(process.pid)
        time.sleep(0.5)  # the upstream is up and serving
        process.send_signal(signum)
        _out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stderr = err.decode(errors="replace")
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "aborted" not in stderr
    assert not (home / "state" / "gateway.json").exists()
    assert not [pid for pid in upstreams if alive(pid)], "the upstream outlived the gateway"
