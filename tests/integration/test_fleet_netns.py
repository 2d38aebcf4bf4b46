"""The fleet on hosts of their own: Redis and every replica in a network namespace, one link cut mid-refresh.

The namespaces, veth pairs and the bridge (addresses 10.231.77.0/24, all inside this machine) are made
by the test and removed afterwards. Skipped where ``ip netns`` is not available or not allowed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.mcpserver import build_app
from mcprelay.transport import open_session
from tests.integration.gateway_helpers import cli_env
from tests.redis_helpers import REDIS_SERVER, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SUBNET = "10.231.77"
KEY = "netns-fleet-key"

# The strict servers speak plain http, which mcprelay accepts only on loopback; so inside each replica's
# namespace 127.0.0.1:PORT is forwarded over that namespace's own link to the servers on the bridge.
FORWARDER = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(sys.argv[2], int(sys.argv[1]))
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Hosts:
    """A bridge on this side (``.1``) and one namespace per host, each behind its own veth pair."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.bridge = f"mrbr{self.tag}"
        self.names: list[str] = []

    def setup(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def host(self, index: int) -> tuple[str, str]:
        """A new namespace at ``SUBNET.(10+index)``; returns (namespace, address)."""
        ns, outside, inside = f"mr{self.tag}h{index}", f"mr{self.tag}o{index}", f"mr{self.tag}i{index}"
        address = f"{SUBNET}.{10 + index}"
        _ip("netns", "add", ns)
        self.names.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns, address

    def cut(self, index: int, up: bool = False) -> None:
        _ip("link", "set", f"mr{self.tag}o{index}", "up" if up else "down")

    def teardown(self) -> None:
        for ns in self.names:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if sys.platform != "linux" or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("network namespaces need Linux, iproute2 and root")
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    probe = f"mrprobe{secrets.token_hex(2)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        pytest.skip(f"ip netns is not allowed here: {made.stderr.strip()}")
    _ip("netns", "del", probe, check=False)
    net = Hosts()
    try:
        net.setup()
    except subprocess.CalledProcessError as exc:
        net.teardown()
        pytest.skip(f"cannot make a bridge here: {exc.stderr.strip()}")
    try:
        yield net
    finally:
        net.teardown()


def _in_ns(ns: str, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)


async def _wait_http(url: str, state: str, timeout: float = 60) -> None:
    async with httpx2.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {KEY}"}) as http:
        with anyio.fail_after(timeout):
            while True:
                try:
                    if (await http.get(f"{url}/api/v1/servers/strict")).json()["server"]["state"] == state:
                        return
                except (httpx2.HTTPError, KeyError, ValueError):
                    pass
                await anyio.sleep(0.1)


async def test_a_replica_cut_off_during_its_refresh_never_leads_to_a_revoked_grant(
    hosts: Hosts, store_key: str, tmp_path: Path
) -> None:
    ttl = 14.0
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=ttl))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The same servers on loopback (for the laptop that logs in) and on the bridge (for the replicas).
    servers = [ThreadedServer(AppFactory(lambda _b: build_app(base, auth=auth)), host=host, port=port).start()
               for host in ("127.0.0.1", f"{SUBNET}.1")]
    forwarder = tmp_path / "forward.py"
    forwarder.write_text(FORWARDER)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_ns, redis_ip = hosts.host(0)
        redis_port = free_port()
        redis_dir = tmp_path / "redis"
        redis_dir.mkdir()
        assert REDIS_SERVER is not None
        procs.append(_in_ns(redis_ns, [REDIS_SERVER, "--port", str(redis_port), "--bind", redis_ip, "--dir",
                                       str(redis_dir), "--save", "", "--appendonly", "yes", "--protected-mode", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        config = tmp_path / "fleet.json"
        store = f"redis://{redis_ip}:{redis_port}/0?prefix=netns:&lease_ttl=2&wait=20"
        config.write_text(json.dumps({"token_store": store, "api_key": KEY,
                                      "mcpServers": {"strict": {"url": f"{base}/mcp"}}}))
        urls: list[str] = []
        homes: list[Path] = []
        for index in (1, 2, 3):
            ns, address = hosts.host(index)
            home = tmp_path / f"replica-{index}"
            home.mkdir(mode=0o700)
            homes.append(home)
            listen_port = free_port()
            procs.append(_in_ns(ns, [sys.executable, str(forwarder), str(port), f"{SUBNET}.1"]))
            procs.append(_in_ns(ns, [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config),
                                     "serve", "--listen", f"{address}:{listen_port}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"replica-{index}.stderr", "wb"),
                                env=cli_env(home)))
            urls.append(f"http://{address}:{listen_port}")
        for url in urls:
            await _wait_http(url, "login_required")
        laptop = tmp_path / "laptop"
        logged_in = time.time()
        done = subprocess.run([sys.executable, "-m", "mcprelay", "--home", str(laptop), "--config", str(config),
                               "auth", "login", "--server", "strict"], capture_output=True, text=True, timeout=90,
                              env=cli_env(laptop), stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        for url in urls:
            await _wait_http(url, "ready", timeout=15)
        assert time.time() < logged_in + ttl, "replicas took too long to connect"
        auth.settings.token_delay = 3.0
        await anyio.sleep(max(0.0, logged_in + ttl - time.time()) + 0.3)
        auth.counters.reset()
        outcomes: list[str | None] = []
        ended: dict[str, float] = {}
        key = {"Authorization": f"Bearer {KEY}"}

        async def call(url: str) -> None:
            try:
                await _call(url)
            finally:
                ended[url] = time.monotonic()

        async def _call(url: str) -> None:
            try:
                with anyio.fail_after(15):  # the cut holder's own caller never hears back
                    async with open_session(f"{url}/mcp", headers=key) as client:
                        result = await client.call_tool("strict__echo", {"text": "cut"})
                block = result.content[0]
                outcomes.append(json.loads(getattr(block, "text", "{}")).get("error_type") if result.is_error else None)
            except Exception as exc:  # the cut replica's own caller may lose its connection
                outcomes.append(f"lost: {type(exc).__name__}")

        async with anyio.create_task_group() as tg:
            for url in urls:
                tg.start_soon(call, url)
            with anyio.fail_after(20):
                while auth.counters.token_in_flight == 0:
                    await anyio.sleep(0.02)
            holders = [i for i, home in enumerate(homes)
                       if '"refresh_lease_acquired"' in (home / "logs" / "mcprelay.log").read_text()]
            assert len(holders) == 1, holders
            hosts.cut(holders[0] + 1)  # the holder's link goes down while its refresh is on the wire
            cut_at = time.monotonic()
        hosts.cut(holders[0] + 1, up=True)
        survivors = [ended[u] - cut_at for i, u in enumerate(urls) if i != holders[0]]
        print(f"\nnetns: holder's link cut mid-refresh; outcomes {outcomes}; the other replicas' calls ended "
              f"{', '.join(f'{t:.1f}' for t in survivors)} s after the cut")
        assert all(t < 2 + 15 for t in survivors), survivors  # lease TTL plus a margin
        assert all(o in (None, "login_required") or str(o).startswith("lost") for o in outcomes), outcomes
        assert auth.counters.refresh_total == 1, auth.counters.refresh_total  # never presented a second time
        assert auth.counters.grants_revoked == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in servers:
            server.stop()
