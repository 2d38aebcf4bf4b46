"""Scenario 6: a fleet — R gateway replicas sharing one Redis store, N concurrent callers on each.

Every replica is a separate ``mcprelay serve --listen 127.0.0.1:0`` process with its own home; only a
real redis-server (started here, append-only persistence) is shared. Against the strict authorization
server (rotation + reuse detection): log in, let the 6-second access token expire, then N concurrent
``sleep(0.5 s)`` calls on every replica at once. Measured: refresh requests the server saw, whether it
revoked the grant, wall time of the storm, the lease waits the replicas logged, and the Redis commands
the storm cost. Then the Redis commands of calls made with a fresh token, and the gateway's per-call
latency with the Redis store against the file store (echo, sequential calls, one replica).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import Table, cpu_seconds, median, percentile
from mcprelay.config import ServerConfig
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.redis import RedisStore
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.browser import follow
from mcprelay.testing.mcpserver import build_app
from mcprelay.transport import open_session

TTL = 6.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Redis:
    def __init__(self, directory: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def command(self, *args: str) -> bytes:
        payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            time.sleep(0.02)
            return sock.recv(1 << 20)

    def commands(self) -> int:
        """Round trips clients made: every mcprelay operation is one EVALSHA, a MULTI/EXEC or a PING
        (``total_commands_processed`` would also count the commands inside the scripts)."""
        total = 0
        for line in self.command("INFO", "commandstats").decode().splitlines():
            name, _, rest = line.partition(":")
            if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_exec", "cmdstat_ping",
                        "cmdstat_script|load"):
                total += int(rest.split(",")[0].split("=")[1])
        return total

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class _Replica:
    def __init__(self, home: Path, config: Path, env: dict[str, str]) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--listen",
             "127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        self.url = ""
        self.headers: dict[str, str] = {}

    async def started(self) -> None:
        runfile = self.home / "state" / "gateway.json"
        with anyio.fail_after(60):
            while not runfile.exists():  # noqa: ASYNC110 - another process writes it
                await anyio.sleep(0.05)
        self.url = str(json.loads(runfile.read_text())["url"])
        key = self.home / "gateway.key"  # a loopback listener serves only its owner: present the key
        if key.exists():
            self.headers = {"Authorization": f"Bearer {key.read_text().strip()}"}

    async def ready(self) -> None:
        import httpx2

        async with httpx2.AsyncClient(timeout=10, headers=self.headers) as http:
            with anyio.fail_after(60):
                while (await http.get(f"{self.url}/api/v1/servers/strict")).json()["server"]["state"] != "ready":  # noqa: ASYNC110
                    await anyio.sleep(0.05)

    def lease_waits(self, since: float) -> list[float]:
        log = self.home / "logs" / "mcprelay.log"
        waits = []
        for line in log.read_text().splitlines() if log.exists() else []:
            record = json.loads(line)
            if record["event"] == "refresh_lease_acquired" and record["ts"] >= since:
                waits.append(float(record["waited_ms"]))
        return waits

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _login(cfg: ServerConfig, store: RedisStore) -> float:
    async with new_http_client() as http:
        outcome = await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
    assert outcome.grant
    return outcome.grant.tokens.expires_at or time.time()


async def _storm(replica: _Replica, n: int, results: list[bool]) -> None:
    async with open_session(f"{replica.url}/mcp", headers=replica.headers) as client:

        async def one() -> None:
            result = await client.call_tool("strict__sleep", {"seconds": 0.5})
            results.append(not result.is_error)

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)


async def _fleet_rows(r: int, ns: list[int], root: Path, table: Table, calls_table: Table) -> None:
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=TTL))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    redis = _Redis(root)
    url = f"{redis.url}?prefix=bench:"
    config = root / "fleet.json"
    config.write_text(json.dumps({"token_store": url, "mcpServers": {"strict": {"url": f"{server.url}/mcp"}}}))
    env = {**os.environ}
    store = RedisStore(url)
    cfg = ServerConfig(name="strict", url=f"{server.url}/mcp")
    replicas = [_Replica(root / f"replica-{i}", config, env) for i in range(r)]
    try:
        expires = await _login(cfg, store)
        for replica in replicas:
            await replica.started()
        for replica in replicas:
            await replica.ready()
        for n in ns:
            # Every refresh issues another 6-second token: wait until the one the replicas hold has expired.
            grant = load_grant(store, "strict")
            expires = grant.tokens.expires_at if grant and grant.tokens.expires_at else expires
            await anyio.sleep(max(0.0, expires - time.time()) + 0.3)
            auth.counters.reset()
            before, since = redis.commands(), time.time()
            results: list[bool] = []
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for replica in replicas:
                    tg.start_soon(_storm, replica, n, results)
            wall = time.monotonic() - started
            commands = redis.commands() - before
            waits = [w for replica in replicas for w in replica.lease_waits(since)]
            table.rows.append([r, n, r * n, f"{sum(results)}/{r * n}", auth.counters.refresh_total,
                               "yes" if auth.counters.grants_revoked else "no", wall, len(waits),
                               max(waits) if waits else None, commands,
                               round(commands / r, 1)])
        # Fresh tokens: how many Redis commands do 100 calls per replica cost?
        before = redis.commands()
        fresh: list[bool] = []
        for replica in replicas:
            async with open_session(f"{replica.url}/mcp", headers=replica.headers) as client:
                for _ in range(100):
                    fresh.append(not (await client.call_tool("strict__echo", {"text": "x"})).is_error)
        calls_table.rows.append([r, len(fresh), sum(fresh), redis.commands() - before])
    finally:
        for replica in replicas:
            replica.stop()
        store.close()
        redis.stop()
        server.stop()


async def _latency(store_kind: str, root: Path, calls: int, cpu_ms: list[float]) -> list[float]:
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=3600))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    redis = _Redis(root) if store_kind == "redis" else None
    token_store = f"{redis.url}?prefix=lat:" if redis else "file"
    config = root / f"{store_kind}.json"
    config.write_text(json.dumps({"token_store": token_store, "mcpServers": {"strict": {"url": f"{server.url}/mcp"}}}))
    home = root / f"home-{store_kind}"
    home.mkdir(mode=0o700)
    cfg = ServerConfig(name="strict", url=f"{server.url}/mcp")
    if redis is not None:
        store: Any = RedisStore(token_store)
    else:
        from mcprelay.store.file import FileStore

        store = FileStore(home)  # the file store lives in the replica's own home
    replica = None
    try:
        await _login(cfg, store)
        replica = _Replica(home, config, {**os.environ})
        await replica.started()
        await replica.ready()
        samples: list[float] = []
        async with open_session(f"{replica.url}/mcp", headers=replica.headers) as client:
            for _ in range(20):
                await client.call_tool("strict__echo", {"text": "warm"})
            cpu = cpu_seconds(replica.proc.pid)
            for _ in range(calls):
                t = time.perf_counter()
                await client.call_tool("strict__echo", {"text": "x"})
                samples.append((time.perf_counter() - t) * 1000)
            cpu_ms.append((cpu_seconds(replica.proc.pid) - cpu) * 1000 / calls)
        return samples
    finally:
        if replica is not None:
            replica.stop()
        if redis is not None:
            store.close()
            redis.stop()
        server.stop()


async def run(quick: bool) -> list[Table]:
    base = Path(tempfile.mkdtemp(prefix="mcprelay-bench-fleet-"))
    os.environ.setdefault("MCPRELAY_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    storms = Table(
        "6. Fleet: refresh storms across replicas",
        "R replicas (separate `serve --listen` processes, each its own home) share one redis-server; after a "
        "6-second access token expired, N concurrent `sleep(0.5 s)` calls start on every replica at once, "
        "against the strict server (rotation + reuse detection). `lease waits` = replicas that logged waiting "
        "for the grant's lease (max in ms); `Redis round trips` = EVALSHA, MULTI/EXEC and PING commands Redis "
        "got during the storm from all replicas.",
        ["R", "N per replica", "calls", "ok", "refreshes", "grant revoked", "wall s", "lease waits",
         "max lease wait ms", "Redis round trips", "per replica"],
    )
    fresh = Table(
        "6b. Fleet: Redis commands of calls with a fresh token",
        "100 sequential echo calls per replica right after the storms (the token is fresh).",
        ["R", "calls", "ok", "Redis round trips"],
    )
    latency = Table(
        "6c. Fleet: per-call latency, Redis store vs file store",
        "One `serve --listen` replica, sequential echo calls through it to the strict MCP server with a fresh "
        "token (ms).",
        ["store", "calls", "p50 ms", "p90 ms", "p99 ms", "replica CPU ms per call"],
    )
    rs = [1, 3] if quick else [1, 3, 5]
    ns = [10] if quick else [10, 50]
    for r in rs:
        root = base / f"r{r}"
        root.mkdir()
        await _fleet_rows(r, ns, root, storms, fresh)
    calls = 100 if quick else 500
    for kind in ("file", "redis"):
        root = base / f"lat-{kind}"
        root.mkdir()
        cpu: list[float] = []
        samples = await _latency(kind, root, calls, cpu)
        latency.rows.append([kind, len(samples), median(samples), percentile(samples, 90), percentile(samples, 99),
                             cpu[0] if cpu else None])
    storms.notes.append("One refresh per storm is the target for every R and N; a revoked grant would fail every call.")
    shutil.rmtree(base, ignore_errors=True)
    return [storms, fresh, latency]
