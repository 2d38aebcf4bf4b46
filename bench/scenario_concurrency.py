"""Scenario 2 — concurrency under OAuth: 10 concurrent calls of a 1-second tool.

Three clients on one session each: no auth at all (the open server), mcprelay, and the SDK's
``OAuthClientProvider``; the OAuth ones with a token that is valid and with one that expired just
before the burst. Every round uses a fresh server and login; the table quotes the median wall time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
from mcp.client.client import Client

from bench.clients import plain_session, relay_login, relay_session, sdk_expiry, sdk_provider, sdk_session
from bench.common import Table, median
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerCounters, AuthServerSettings, StrictAuthServer
from mcprelay.testing.mcpserver import build_app, build_open_app

CALLS = 10
TOOL_SECONDS = 1.0
SHORT_TTL = 3.0


class Burst:
    def __init__(self) -> None:
        self.walls: list[float] = []
        self.ok: list[int] = []
        self.refreshes: list[int] = []
        self.peaks: list[int] = []


async def _burst(client: Client, counters: AuthServerCounters, burst: Burst) -> None:
    counters.tool_in_flight_peak = 0
    before = counters.refresh_total
    ok = 0

    async def one() -> None:
        nonlocal ok
        result = await client.call_tool("sleep", {"seconds": TOOL_SECONDS})
        ok += not result.is_error

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(CALLS):
            tg.start_soon(one)
    burst.walls.append(time.monotonic() - started)
    burst.ok.append(ok)
    burst.refreshes.append(counters.refresh_total - before)
    burst.peaks.append(counters.tool_in_flight_peak)


async def _round(
    burst: Burst, counters: AuthServerCounters, auth: StrictAuthServer | None,
    session: Callable[[], AbstractAsyncContextManager[Client]], expiry: Callable[[], float | None] | None,
) -> None:
    async with session() as client:
        await client.call_tool("echo", {"text": "warm"})
        if expiry is not None:
            assert auth is not None
            auth.settings.access_token_ttl = 3600
            expires_at = expiry()
            assert expires_at is not None
            await anyio.sleep(max(0.0, expires_at - time.time()) + 0.1)
        await _burst(client, counters, burst)


async def open_round(burst: Burst) -> None:
    counters = AuthServerCounters()
    server = ThreadedServer(AppFactory(lambda base: build_open_app(base, counters=counters))).start()
    try:
        await _round(burst, counters, None, lambda: plain_session(f"{server.url}/mcp"), None)
    finally:
        server.stop()


async def oauth_round(burst: Burst, client: str, expired: bool) -> None:
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=SHORT_TTL if expired else 3600))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    url = f"{server.url}/mcp"
    try:
        if client == "mcprelay":
            with tempfile.TemporaryDirectory() as tmp:
                relay = await relay_login(url, Path(tmp))
                expiry = (lambda: relay.grant().tokens.expires_at) if expired else None
                await _round(burst, auth.counters, auth, lambda: relay_session(relay), expiry)
        else:
            provider = sdk_provider(url)
            await _round(burst, auth.counters, auth, lambda: sdk_session(url, provider),
                         (lambda: sdk_expiry(provider)) if expired else None)
    finally:
        server.stop()


async def run(quick: bool) -> list[Table]:
    rounds = 1 if quick else 3
    cases: list[tuple[str, str, Burst]] = [
        ("no auth", "SDK client, open server", Burst()),
        ("token valid", "mcprelay", Burst()),
        ("token valid", "SDK OAuthClientProvider", Burst()),
        ("token expired", "mcprelay", Burst()),
        ("token expired", "SDK OAuthClientProvider", Burst()),
    ]
    for _ in range(rounds):
        for case, client, burst in cases:
            if case == "no auth":
                await open_round(burst)
            else:
                await oauth_round(burst, "mcprelay" if client == "mcprelay" else "sdk", case == "token expired")
    base = median(cases[0][2].walls)
    relay = {case: median(b.walls) for case, client, b in cases if client == "mcprelay"}
    rows: list[list[object]] = []
    for case, client, burst in cases:
        wall = median(burst.walls)
        vs_relay = f"{wall / relay[case]:.2f}×" if case in relay else "–"
        rows.append([case, client, f"{min(burst.ok)}/{CALLS}", round(wall, 3), f"{wall / base:.2f}×", vs_relay,
                     max(burst.refreshes) if case != "no auth" else "–", min(burst.peaks)])
    return [Table(
        "2. Concurrency under OAuth",
        f"{CALLS} concurrent calls of a {TOOL_SECONDS:.0f}-second tool on one session; median wall time of "
        f"{rounds} round(s), each with a fresh server and login. `expired`: the access token ({SHORT_TTL:.0f} s) "
        "expired just before the burst. `peak` = most tool calls the server saw running at once. Targets: "
        "expired-token wall ≤ 1.2× no-auth, and the SDK client ≥ 4× slower than mcprelay.",
        ["case", "client", "calls ok", "wall s (median)", "× no auth", "× mcprelay", "refreshes", "peak in flight"],
        rows,
    )]
