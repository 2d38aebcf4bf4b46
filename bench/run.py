"""One command for all benchmarks: prints one markdown table per scenario (nothing is asserted).

    .venv/bin/python bench/run.py [--quick] [--only NAME[,NAME...]] [--out FILE]

Scenarios: refresh (1), concurrency (2), gateway (3), startup (4), scale (5), fleet (6: needs
redis-server). ``--quick`` uses fewer iterations and rounds. A header with the machine and the
versions is printed first; ``--out`` also writes everything to a file. mcp-proxy and mcp-remote
are measured when installed:

    python3 -m venv bench/.venvs/mcp-proxy && bench/.venvs/mcp-proxy/bin/pip install mcp-proxy
    npm install --prefix bench/.npm mcp-remote
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so the scenarios import as ``bench.*`` when run as a script

SCENARIOS = ("refresh", "concurrency", "gateway", "startup", "scale", "fleet")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def header(argv: list[str]) -> str:
    bench = ROOT / "bench"
    proxy_py = bench / ".venvs" / "mcp-proxy" / "bin" / "python"
    proxy = "not installed"
    if proxy_py.exists():
        code = "import importlib.metadata as m; print(m.version('mcp-proxy'), m.version('mcp'))"
        parts = _tool_version([str(proxy_py), "-c", code]).split()
        proxy = f"{parts[0]} (its own venv, mcp {parts[1]})" if len(parts) == 2 else "?"
    remote_pkg = bench / ".npm" / "node_modules" / "mcp-remote" / "package.json"
    remote = json.loads(remote_pkg.read_text())["version"] if remote_pkg.exists() else "not installed"
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    lines = [
        "## Machine and versions",
        "",
        f"- machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; mcprelay {_version('mcprelay')}, mcp {_version('mcp')}, "
        f"httpx2 {_version('httpx2')}, anyio {_version('anyio')}, uvicorn {_version('uvicorn')}, "
        f"starlette {_version('starlette')}, pydantic {_version('pydantic')}",
        f"- mcp-proxy {proxy}; mcp-remote {remote} on Node {_tool_version(['node', '--version'])}",
        f"- command: `{' '.join(['.venv/bin/python', 'bench/run.py', *argv])}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace, argv: list[str]) -> str:
    names = SCENARIOS if not args.only else tuple(n.strip() for n in args.only.split(","))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    out = [header(argv)]
    print(out[0], flush=True)
    for name in names:
        module: Any = importlib.import_module(f"bench.scenario_{name}")
        scenario: Callable[[bool], Awaitable[list[Any]]] = module.run
        started = time.monotonic()
        tables = await scenario(args.quick)
        for table in tables:
            text = table.markdown()
            out.append(text)
            print(text, flush=True)
        took = f"_({name}: {time.monotonic() - started:.0f} s)_\n"
        out.append(took)
        print(took, flush=True)
    return "\n".join(out)


def cli() -> None:
    parser = argparse.ArgumentParser(description="mcprelay benchmarks: one markdown table per scenario.")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and rounds")
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    text = anyio.run(main, args, argv)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    cli()
