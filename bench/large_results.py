"""Large results: peak memory of the gateway while two 50 MB tool results pass through it at once.

``.venv/bin/python bench/large_results.py [--size BYTES] [--calls N]`` starts ``mcprelay serve --stdio``
and ``mcprelay serve --listen`` in front of ``mcprelay.testing.big_stdio_server`` and sends N
concurrent ``big`` calls of SIZE bytes each (default 2 × 50 MB), once with ``max_result_bytes``
raised so they pass (64 MiB) and once with the default cap (16 MiB: they are refused). It prints
the gateway process's peak resident memory (``VmHWM``), its memory before the calls and after
them, and how long the calls took. Nothing is asserted: these are the figures for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import MCPRELAY, PYTHON, Table, free_port
from mcprelay.stdio_transport import stdio_transport

MiB = 1024 * 1024


def _status(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _gateway_pid(parent: int) -> int:
    """The ``mcprelay serve`` process among the children of ``parent`` (our client spawned it over stdio)."""
    for task in Path(f"/proc/{parent}/task").glob("*"):
        for pid in (task / "children").read_text().split():
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise RuntimeError("no gateway process found")


async def _calls(client: Client, size: int, calls: int) -> tuple[int, list[str]]:
    ok, errors = 0, []

    async def one() -> None:
        nonlocal ok
        result = await client.call_tool("big__big", {"size": size})
        text = result.content[0].text  # type: ignore[union-attr]
        if result.is_error:
            errors.append(json.loads(text)["message"][:120])
        elif len(text) == size:
            ok += 1

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one)
    return ok, errors


async def _wait_for(client: Client, tool: str) -> None:
    with anyio.fail_after(60):
        while tool not in {t.name for t in (await client.list_tools()).tools}:  # noqa: ASYNC110 - polling a peer
            await anyio.sleep(0.1)


async def measure(mode: str, cap: int, size: int, calls: int) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home, config = Path(tmp) / "home", Path(tmp) / "config.json"
        config.write_text(json.dumps({"token_store": "memory", "max_result_bytes": cap, "mcpServers": {
            "big": {"command": PYTHON, "args": ["-m", "mcprelay.testing.big_stdio_server"]}}}))
        args = ["--home", str(home), "--config", str(config)]
        async with AsyncExitStack() as stack:
            if mode == "stdio":
                transport = stdio_transport(MCPRELAY, [*args, "serve", "--stdio"], dict(os.environ),
                                            max_message_bytes=size * 2 + MiB)
                client = await stack.enter_async_context(Client(transport, mode="legacy"))
                pid = _gateway_pid(os.getpid())
            else:
                port = free_port()
                process = await stack.enter_async_context(await anyio.open_process(
                    [MCPRELAY, *args, "serve", "--listen", f"127.0.0.1:{port}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                stack.push_async_callback(process.wait)
                stack.callback(process.terminate)
                pid = process.pid
                with anyio.fail_after(30):
                    while not (home / "state" / "gateway.json").exists():  # noqa: ASYNC110 - polling a file
                        await anyio.sleep(0.1)
                key = (home / "gateway.key").read_text().strip()
                http = await stack.enter_async_context(httpx2.AsyncClient(
                    headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(60, read=600)))
                client = await stack.enter_async_context(
                    Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="legacy"))
            await _wait_for(client, "big__big")
            before = _status(pid, "VmRSS")
            started = time.monotonic()
            ok, errors = await _calls(client, size, calls)
            seconds = time.monotonic() - started
            await anyio.sleep(1)
            return [f"serve --{'stdio' if mode == 'stdio' else 'listen'}", f"{cap // MiB} MiB",
                    f"{ok}/{calls}", round(before), round(_status(pid, "VmHWM")), round(_status(pid, "VmRSS")),
                    round(seconds, 1), errors[0] if errors else ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000_000)
    parser.add_argument("--calls", type=int, default=2)
    options = parser.parse_args()
    table = Table(
        f"Large results: {options.calls} concurrent results of {options.size / 1e6:.0f} MB through the gateway",
        "A stdio upstream (mcprelay.testing.big_stdio_server); the gateway process's memory in MB "
        "(VmRSS before the calls, peak VmHWM, VmRSS 1 s after), and the wall time of the calls.",
        ["gateway", "max_result_bytes", "ok", "RSS before", "peak RSS", "RSS after", "seconds", "error"],
    )
    for mode in ("stdio", "listen"):
        for cap in (64 * MiB, 16 * MiB):
            table.rows.append(anyio.run(measure, mode, cap, options.size, options.calls))
    print(table.markdown())


if __name__ == "__main__":
    main()
