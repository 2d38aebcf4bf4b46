"""Refresh under load: how many refresh requests and how long, for N coroutines and P processes.

Run: ``.venv/bin/python bench/refresh.py`` (prints a table; nothing is asserted).
Each row starts a fresh strict authorization server (rotation + reuse detection), logs in, lets the
access token expire, then makes N concurrent tool calls in one process, or starts P ``mcprelay call``
processes at once. A correct client sends exactly one refresh per row and revokes no grant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.to_thread

from mcprelay import diaglog
from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.connect import token_manager
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.auth import OAuth
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.file import FileStore
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.browser import follow
from mcprelay.testing.mcpserver import build_app
from mcprelay.transport import open_session

TTL = 2.0


async def _setup(home: Path) -> tuple[StrictAuthServer, ThreadedServer, ServerConfig, FileStore]:
    diaglog.configure(home)
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=TTL))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    cfg = ServerConfig(name="bench", url=f"{server.url}/mcp", oauth=OAuthConfig())
    store = FileStore(home)
    async with new_http_client() as http:
        await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
    auth.settings.access_token_ttl = 3600
    return auth, server, cfg, store


async def _until_expired(store: FileStore) -> None:
    grant = load_grant(store, "bench")
    assert grant and grant.tokens.expires_at
    await anyio.sleep(max(0.0, grant.tokens.expires_at - time.time()) + 0.1)


async def coroutines(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        auth, server, cfg, store = await _setup(home)
        try:
            async with new_http_client() as http:
                oauth = OAuth(token_manager(cfg, store, http, home))
                async with open_session(cfg.url, auth=oauth) as client:
                    await client.call_tool("echo", {"text": "warm"})
                    await _until_expired(store)
                    before = auth.counters.refresh_total
                    auth.counters.tool_in_flight_peak = 0
                    ok = 0
                    started = time.monotonic()

                    async def one() -> None:
                        nonlocal ok
                        result = await client.call_tool("sleep", {"seconds": 0.5})
                        ok += not result.is_error

                    async with anyio.create_task_group() as tg:
                        for _ in range(n):
                            tg.start_soon(one)
                    wall = time.monotonic() - started
            return {"mode": "coroutines", "n": n, "ok": ok, "refreshes": auth.counters.refresh_total - before,
                    "revoked": auth.counters.grants_revoked, "peak_in_flight": auth.counters.tool_in_flight_peak,
                    "wall_s": round(wall, 3)}
        finally:
            server.stop()


def _start_together(command: list[str], count: int) -> list[int]:
    procs = [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    return [proc.wait(timeout=300) for proc in procs]


async def processes(p: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        auth, server, cfg, store = await _setup(home)
        try:
            await _until_expired(store)
            config = home / "config.json"
            config.write_text(json.dumps({"token_store": "file", "mcpServers": {"bench": {"url": cfg.url}}}))
            command = [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "call",
                       "bench", "echo", "--args", '{"text": "b"}', "--json"]
            started = time.monotonic()
            codes = await anyio.to_thread.run_sync(_start_together, command, p)
            wall = time.monotonic() - started
            return {"mode": "processes", "n": p, "ok": codes.count(0), "refreshes": auth.counters.refresh_total,
                    "revoked": auth.counters.grants_revoked, "peak_in_flight": "-", "wall_s": round(wall, 3)}
        finally:
            server.stop()


async def main() -> None:
    rows = [await coroutines(n) for n in (1, 10, 50)] + [await processes(p) for p in (1, 4, 8)]
    header = f"{'mode':<11} {'N/P':>4} {'ok':>4} {'refreshes':>9} {'revoked':>7} {'peak':>5} {'wall s':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['mode']:<11} {r['n']:>4} {r['ok']:>4} {r['refreshes']:>9} {r['revoked']:>7} "
              f"{r['peak_in_flight']!s:>5} {r['wall_s']:>7}")
    print("\ncoroutines: N concurrent sleep(0.5 s) calls on one session after expiry; "
          "processes: P `mcprelay call` started together after expiry (wall includes Python start-up).")


if __name__ == "__main__":
    anyio.run(main)
