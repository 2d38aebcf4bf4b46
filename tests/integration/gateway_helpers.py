"""Helpers shared by the gateway's end-to-end tests: config files, CLI runs, a gateway process, waiting.

They live here rather than in a test module so that test modules import helpers, never each other.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client


def cli_env(home: Path) -> dict[str, str]:
    """The environment for mcprelay processes: a BROWSER that follows the authorization URL headlessly."""
    script = home.parent / "follow.sh"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m mcprelay.testing.browser "$1"\n')
    script.chmod(0o700)
    return {**os.environ, "BROWSER": str(script), "MCPRELAY_HEADLESS": ""}


def auth_headers(home: Path) -> dict[str, str]:
    """The ``Authorization`` header a client of the gateway serving ``home`` must send (its owner key)."""
    key = (home / "gateway.key").read_text().strip()
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def mcp_client(base: str, home: Path, **kwargs: Any) -> AsyncIterator[Client]:
    """An SDK client of ``serve --listen`` at ``base`` that presents the gateway's owner key, as an agent would."""
    async with httpx2.AsyncClient(headers=auth_headers(home), timeout=httpx2.Timeout(30, read=300)) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http), **kwargs) as client:
        yield client


def api_client(base: str, home: Path, **kwargs: Any) -> httpx2.AsyncClient:
    """An HTTP client of the gateway's REST API (``/api/v1``) that presents the owner key."""
    return httpx2.AsyncClient(base_url=f"{base}/api/v1", headers=auth_headers(home), **kwargs)


def mcprelay(home: Path, config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=cli_env(home),
    )


def stdio_server(prefix: str = "") -> dict[str, Any]:
    """A config entry for the stdio test server; ``prefix`` renames its tools."""
    env = {"MCPRELAY_TEST_TOOL_PREFIX": prefix} if prefix else {}
    return {"command": sys.executable, "args": ["-m", "mcprelay.testing.stdio_server"], "env": env}


def write_config(path: Path, servers: dict[str, Any], **top: Any) -> Path:
    """Replace the file in one step, so the gateway's watcher never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"token_store": "file", "mcpServers": servers, **top}))
    tmp.replace(path)
    return path


class Notifications:
    """Collects what the gateway pushes to a client, so tests can wait for list_changed."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def __call__(self, message: Any) -> None:
        self.seen.append(message)

    def tools_changed(self) -> int:
        return sum(isinstance(m, types.ToolListChangedNotification) for m in self.seen)

    async def wait_tools_changed(self, after: int, timeout: float = 5) -> None:
        """Until more than ``after`` tools/list_changed notifications have arrived."""
        with anyio.fail_after(timeout):
            while self.tools_changed() <= after:
                await anyio.sleep(0.05)


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools(cache_mode="bypass")).tools}


async def wait_for_tools(
    client: Client, wanted: set[str], timeout: float = 30, *, absent: frozenset[str] = frozenset()
) -> set[str]:
    """Until every name in ``wanted`` is listed and none in ``absent`` is; returns the names listed."""
    with anyio.fail_after(timeout):
        while True:
            names = await tool_names(client)
            if wanted <= names and not names & absent:
                return names
            await anyio.sleep(0.2)


def error_payload(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    payload: dict[str, Any] = json.loads(block.text)
    return payload


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result.content
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@asynccontextmanager
async def http_gateway(home: Path, config: Path, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """``serve --listen 127.0.0.1:0`` in a subprocess; yields its base URL from ``state/gateway.json``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config),
         "serve", "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or cli_env(home),
    )
    runfile = home / "state" / "gateway.json"
    try:
        deadline = time.monotonic() + 30
        while not runfile.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the gateway did not start"
            await anyio.sleep(0.1)
        yield str(json.loads(runfile.read_text())["url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
    assert not runfile.exists()
