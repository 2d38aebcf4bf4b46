"""Gateway replicas for the fleet tests: separate ``mcprelay serve --listen`` processes, each with its own
home, sharing nothing but one real redis-server (and the strict authorization + MCP servers)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2

from tests.integration.gateway_helpers import auth_headers, cli_env


def fleet_config(path: Path, mcp_url: str, redis_url: str, **store_params: Any) -> Path:
    params = {"prefix": f"fleet-{secrets.token_hex(3)}:", **store_params}
    query = "&".join(f"{k}={v}" for k, v in params.items())
    path.write_text(json.dumps({"token_store": f"{redis_url}?{query}", "mcpServers": {"strict": {"url": mcp_url}}}))
    return path


def run_cli(home: Path, config: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=cli_env(home),
    )


@dataclass
class Replica:
    home: Path
    process: subprocess.Popen[bytes]
    url: str = ""
    stderr_path: Path = field(default_factory=Path)
    headers: dict[str, str] = field(default_factory=dict)

    async def server(self) -> dict[str, Any]:
        async with httpx2.AsyncClient(timeout=10, headers=self.headers) as http:
            response = await http.get(f"{self.url}/api/v1/servers/strict")
        body: dict[str, Any] = response.json()["server"]
        return body

    async def wait_state(self, state: str, timeout: float = 30) -> float:
        """Until the upstream is in ``state``; returns how long that took."""
        started = time.monotonic()
        with anyio.fail_after(timeout):
            while (await self.server())["state"] != state:
                await anyio.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def log_text(self) -> str:
        """The replica's diagnostic log."""
        path = self.home / "logs" / "mcprelay.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


@asynccontextmanager
async def replica(home: Path, config: Path, env: dict[str, str] | None = None) -> AsyncIterator[Replica]:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    stderr_path = home.parent / f"{home.name}.stderr"
    with open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config),
             "serve", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env={**cli_env(home), **(env or {})},
        )
    node = Replica(home, process, stderr_path=stderr_path)
    runfile = home / "state" / "gateway.json"
    try:
        deadline = time.monotonic() + 60
        while not runfile.exists():
            assert process.poll() is None, node.log()
            assert time.monotonic() < deadline, "the replica did not start"
            await anyio.sleep(0.05)
        node.url = str(json.loads(runfile.read_text())["url"])
        if (home / "gateway.key").exists():  # the loopback listener serves only its owner: present the key
            node.headers = auth_headers(home)
        yield node
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@asynccontextmanager
async def replicas(root: Path, config: Path, count: int) -> AsyncIterator[list[Replica]]:
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(replica(root / f"replica-{i}", config)) for i in range(count)]
        yield nodes


def store_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MCPRELAY_")}
