"""Scenario 1 — refresh storm: N concurrent callers right after the access token expired.

Every row starts a fresh strict authorization server (refresh-token rotation + reuse detection) with
a 5-second access token, logs the client in, makes one warm call, lets the token expire (by the
client's own clock), then starts N concurrent ``sleep(0.5 s)`` calls at once. Refreshed tokens live
an hour, so every refresh counted belongs to the storm. ``mcprelay (P processes)`` starts P
``mcprelay call`` processes together on one file store instead.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import anyio.to_thread
from mcp.client.client import Client

from bench.clients import naive_session, relay_login, relay_session, sdk_expiry, sdk_provider, sdk_session
from bench.common import MCPRELAY, Table
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.mcpserver import build_app

TTL = 5.0
TOOL_SECONDS = 0.5
CALL_TIMEOUT = 120.0


class Row:
    def __init__(self, client: str, n: int) -> None:
        self.client, self.n = client, n
        self.ok = 0
        self.warm_refreshes = 0
        self.refreshes = 0
        self.revoked = 0
        self.wall = 0.0
        self.error = ""

    def cells(self) -> list[object]:
        return [self.client, self.n, f"{self.ok}/{self.n}", self.refreshes, "yes" if self.revoked else "no",
                round(self.wall, 3), self.error or "–"]


def _server() -> tuple[StrictAuthServer, ThreadedServer]:
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=TTL))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    return auth, server


async def _sleep_until(expires_at: float | None) -> None:
    assert expires_at is not None
    await anyio.sleep(max(0.0, expires_at - time.time()) + 0.1)


async def _storm(row: Row, auth: StrictAuthServer, client: Client) -> None:
    before, revoked_before = auth.counters.refresh_total, auth.counters.grants_revoked
    errors: list[str] = []

    async def one() -> None:
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                result = await client.call_tool("sleep", {"seconds": TOOL_SECONDS})
            row.ok += not result.is_error
        except Exception as exc:
            errors.append(type(exc).__name__)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(row.n):
            tg.start_soon(one)
    row.wall = time.monotonic() - started
    row.refreshes = auth.counters.refresh_total - before
    row.revoked = auth.counters.grants_revoked - revoked_before
    if errors:
        row.error = f"{len(errors)}× {errors[0]}"


async def _with_client(
    row: Row, auth: StrictAuthServer, session: Callable[[], AbstractAsyncContextManager[Client]],
    expiry: Callable[[], float | None],
) -> None:
    try:
        async with session() as client:
            before = auth.counters.refresh_total
            await client.call_tool("echo", {"text": "warm"})
            row.warm_refreshes = auth.counters.refresh_total - before
            auth.settings.access_token_ttl = 3600
            await _sleep_until(expiry())
            await _storm(row, auth, client)
    except Exception as exc:  # a client whose session died in the storm: keep the counts
        row.error = row.error or type(exc).__name__
        row.refreshes = row.refreshes or auth.counters.refresh_total
        row.revoked = auth.counters.grants_revoked


async def relay_row(n: int) -> Row:
    row = Row("mcprelay", n)
    auth, server = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            relay = await relay_login(f"{server.url}/mcp", Path(tmp))
            await _with_client(row, auth, lambda: relay_session(relay), lambda: relay.grant().tokens.expires_at)
    finally:
        server.stop()
    return row


async def sdk_row(n: int) -> Row:
    row = Row("SDK OAuthClientProvider", n)
    auth, server = _server()
    try:
        provider = sdk_provider(f"{server.url}/mcp")
        await _with_client(row, auth, lambda: sdk_session(f"{server.url}/mcp", provider),
                           lambda: sdk_expiry(provider))
    finally:
        server.stop()
    return row


async def naive_row(n: int) -> Row:
    row = Row("naive (refresh per call)", n)
    auth, server = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            relay = await relay_login(f"{server.url}/mcp", Path(tmp))
            grant = relay.grant()
            await _with_client(row, auth, lambda: naive_session(relay.cfg.url, grant),
                               lambda: grant.tokens.expires_at)
    finally:
        server.stop()
    return row


def _start_together(command: list[str], count: int) -> list[int]:
    procs = [subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(count)]
    return [proc.wait(timeout=300) for proc in procs]


async def process_row(p: int) -> Row:
    row = Row("mcprelay (processes)", p)
    auth, server = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            relay = await relay_login(f"{server.url}/mcp", home)
            auth.settings.access_token_ttl = 3600
            await _sleep_until(relay.grant().tokens.expires_at)
            config = home / "config.json"
            config.write_text(json.dumps({"token_store": "file", "mcpServers": {"bench": {"url": relay.cfg.url}}}))
            command = [MCPRELAY, "--home", str(home), "--config", str(config), "call", "bench", "sleep",
                       "--args", json.dumps({"seconds": TOOL_SECONDS}), "--json"]
            before = auth.counters.refresh_total
            started = time.monotonic()
            codes = await anyio.to_thread.run_sync(_start_together, command, p)
            row.wall = time.monotonic() - started
            row.ok = codes.count(0)
            row.refreshes = auth.counters.refresh_total - before
            row.revoked = auth.counters.grants_revoked
    finally:
        server.stop()
    return row


async def run(quick: bool) -> list[Table]:
    ns = (1, 10, 50)
    rows: list[Row] = []
    for make in (relay_row, sdk_row, naive_row):
        for n in ns:
            rows.append(await make(n))
    for p in (1, 4) if quick else (1, 4, 8):
        rows.append(await process_row(p))
    table = Table(
        "1. Refresh storm",
        f"N concurrent `sleep({TOOL_SECONDS} s)` calls started together right after a {TTL:.0f}-second access "
        "token expired, against the strict server (rotation + reuse detection). `refreshes` = refresh requests "
        "the server received during the storm; `revoked` = the server revoked the grant (reuse detected). "
        "Target: exactly 1 refresh for every N and P, no grant revoked.",
        ["client", "N / P", "calls ok", "refreshes", "grant revoked", "wall s", "errors"],
        [r.cells() for r in rows],
    )
    warm = [f"{r.client} N={r.n}: {r.warm_refreshes}" for r in rows if r.warm_refreshes]
    table.notes.append(
        "Refreshes during the warm call made right after login with the 5-second token (a client that treats a "
        "short token as expired at birth refreshes here): " + ("; ".join(warm) if warm else "none for any client.")
    )
    table.notes.append("Processes rows: wall time includes each process's Python start-up "
                       "(see scenario 4) on this machine's cores.")
    return [table]
