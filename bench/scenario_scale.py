"""Scenario 5 — scale: one gateway (``mcprelay serve --stdio``) in front of 1, 10 and 100 stdio upstreams.

Two upstream kinds: ``bench/tiny_stdio_server.py`` (standard library only: the gateway's own cost)
and the SDK stdio test server (``python -m mcprelay.testing.stdio_server``: what real Python
upstreams cost, dominated by their own imports). Start-up is measured from spawning the gateway
to (a) its answer to the handshake and (b) the aggregated ``tools/list`` holding every upstream's
tools (upstreams connect in the background). Then ``tools/list`` is timed repeatedly.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.common import (
    BENCH,
    MCPRELAY,
    PYTHON,
    Table,
    children,
    cpu_seconds,
    devnull,
    hwm_mb,
    median,
    percentile,
    rss_mb,
    tree_rss_mb,
)

KINDS = {
    "tiny (stdlib)": ([PYTHON, str(BENCH / "tiny_stdio_server.py")], 1),
    "SDK stdio server": ([PYTHON, "-m", "mcprelay.testing.stdio_server"], 2),
}


async def measure(kind: str, n: int, reps: int) -> list[object]:
    command, tools_each = KINDS[kind]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        servers = {f"s{i:03d}": {"command": command[0], "args": command[1:]} for i in range(n)}
        config = home / "config.json"
        config.write_text(json.dumps({"token_store": "file", "mcpServers": servers}))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
        params = StdioServerParameters(
            command=MCPRELAY, args=["--home", str(home), "--config", str(config), "serve", "--stdio"], env=env
        )
        before = set(children(os.getpid()))
        with devnull() as errlog:
            started = time.perf_counter()
            async with Client(stdio_client(params, errlog=errlog), mode="auto") as client:
                t_init = time.perf_counter() - started
                pid = next(p for p in children(os.getpid()) if p not in before)
                want = n * tools_each
                with anyio.fail_after(600):
                    while True:
                        if len((await client.list_tools()).tools) >= want:
                            break
                        await anyio.sleep(0.02)
                t_ready = time.perf_counter() - started
                cpu = cpu_seconds(pid)
                rss, tree = rss_mb(pid), tree_rss_mb(pid)
                latencies = []
                fewest = want
                for _ in range(reps):
                    t = time.perf_counter()
                    listed = await client.list_tools()
                    latencies.append((time.perf_counter() - t) * 1000)
                    fewest = min(fewest, len(listed.tools))
                hwm = hwm_mb(pid)
    return [kind, n, want, round(t_init, 3), round(t_ready, 3), round(cpu, 2), round(rss, 1), round(hwm, 1),
            round(tree), round(median(latencies), 2), round(percentile(latencies, 99), 2), fewest]


async def run(quick: bool) -> list[Table]:
    reps = 10 if quick else 50
    rows: list[list[object]] = []
    for n in (1, 10, 100):
        rows.append(await measure("tiny (stdlib)", n, reps))
    for n in (1, 10) if quick else (1, 10, 100):
        rows.append(await measure("SDK stdio server", n, reps))
    return [Table(
        "5. Scale: stdio upstreams behind one gateway",
        f"`mcprelay serve --stdio` with N stdio upstreams. `init s` = spawn → handshake answered; `all tools s` = "
        f"spawn → aggregated tools/list complete; gateway CPU s = its utime+stime at that point; RSS = the "
        f"gateway's VmRSS then, peak = its VmHWM at the end, tree = gateway + upstreams; tools/list = median and "
        f"p99 of {reps} calls after start-up (answered from the gateway's cache); `fewest tools seen` < `tools` means "
        "upstreams dropped out of the catalog while it was being listed.",
        ["upstream", "N", "tools", "init s", "all tools s", "gateway CPU s", "gateway RSS MB", "gateway peak MB",
         "tree RSS MB", "tools/list p50 ms", "tools/list p99 ms", "fewest tools seen after start"],
        rows,
    )]
