"""``mcprelay demo``: the whole flow against the bundled strict servers, with timings.

Starts the strict authorization server and the protected MCP server on 127.0.0.1, then runs
discovery → registration → headless login → a tool call → token expiry → concurrent calls, and
prints what happened at each step, including what the server counted (refreshes, revocations).
The "browser" is an HTTP client that follows the authorization server's auto-consent redirect to
our loopback listener — the same path a real browser takes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli.runtime import get_runtime


async def _run(home: Path, ttl: float, calls: int, emit: Any) -> dict[str, Any]:
    from mcprelay import diaglog
    from mcprelay.config import parse_config
    from mcprelay.httpclient import new_http_client
    from mcprelay.oauth.auth import OAuth
    from mcprelay.oauth.flow import LoginOptions, login
    from mcprelay.oauth.grantlock import FileGrantLock
    from mcprelay.oauth.refresher import GrantRefresher, RefreshTokenRequest
    from mcprelay.oauth.rfc7591 import ClientRegistration, registration_key
    from mcprelay.oauth.tokens import TokenManager
    from mcprelay.store.file import FileStore
    from mcprelay.testing.asgi import AppFactory, ThreadedServer
    from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
    from mcprelay.testing.browser import follow
    from mcprelay.testing.mcpserver import build_app
    from mcprelay.transport import open_session

    diaglog.configure(home)
    t0 = time.monotonic()
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=ttl))
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
    try:
        url = f"{server.url}/mcp"
        emit("servers", time.monotonic() - t0, f"strict authorization server + MCP server at {server.url}")
        config = parse_config({"mcpServers": {"demo": {"url": url}}}, "<demo>").config
        cfg = config.server("demo")
        store = FileStore(home)

        t = time.monotonic()
        async with new_http_client() as http:
            outcome = await login(cfg, store, http, LoginOptions(open_browser=follow))
        assert outcome.grant and outcome.registration and outcome.discovery
        for name, ms in outcome.steps:
            detail = {
                "probe": "POST initialize without a token → 401 with a Bearer challenge",
                "discovery": f"protected resource metadata → issuer {outcome.discovery.metadata.issuer}",
                "listener": f"loopback listener bound, redirect URI {outcome.grant.redirect_uri}",
                "registration": f"dynamic client registration → client {outcome.registration.client_id}",
                "authorization": "PKCE S256 + state + resource; browser followed auto-consent to the callback",
                "token_exchange": f"code exchanged; access token valid {ttl:g} s; stored in {store.describe()}",
            }.get(name, "")
            emit(name, ms / 1000, detail)
        emit("login", time.monotonic() - t, f"correlation id {outcome.correlation_id}")

        registration = ClientRegistration.from_dict(
            store.get(registration_key("demo", outcome.grant.issuer)) or {}
        )
        async with new_http_client() as token_http:
            refresher = GrantRefresher("demo", store, FileGrantLock(home / "locks"),
                                       RefreshTokenRequest(token_http, registration.credentials))
            manager = TokenManager("demo", refresher)
            oauth = OAuth(manager)
            t = time.monotonic()
            async with open_session(url, auth=oauth) as client:
                result = await client.call_tool("echo", {"text": "hello through mcprelay"})
                text = result.content[0].text if result.content and hasattr(result.content[0], "text") else ""
                emit("tool_call", time.monotonic() - t, f"echo → {text!r}")

                wait = max(0.0, (outcome.grant.tokens.expires_at or time.time()) - time.time()) + 0.2
                t = time.monotonic()
                await anyio.sleep(wait)
                emit("expiry", time.monotonic() - t, "waited until the access token expired")

                before = auth.counters.refresh_total
                auth.counters.tool_in_flight_peak = 0
                t = time.monotonic()
                results: list[bool] = []

                async def one() -> None:
                    r = await client.call_tool("sleep", {"seconds": 1.0})
                    results.append(not r.is_error)

                async with anyio.create_task_group() as tg:
                    for _ in range(calls):
                        tg.start_soon(one)
                wall = time.monotonic() - t
                refreshes = auth.counters.refresh_total - before
                emit(
                    "concurrent_calls",
                    wall,
                    f"{calls} × sleep(1 s) after expiry: {sum(results)}/{calls} ok, {refreshes} refresh "
                    f"request(s), peak {auth.counters.tool_in_flight_peak} in flight, "
                    f"{auth.counters.grants_revoked} grant(s) revoked",
                )
        return {
            "ok": all(results) and len(results) == calls and refreshes == 1 and auth.counters.grants_revoked == 0,
            "refreshes": refreshes,
            "calls_ok": sum(results),
            "peak_in_flight": auth.counters.tool_in_flight_peak,
            "concurrent_wall_s": round(wall, 3),
            "grants_revoked": auth.counters.grants_revoked,
        }
    finally:
        server.stop()


def demo(
    ctx: typer.Context,
    ttl: Annotated[
        float, typer.Option("--ttl", metavar="SECONDS", help="How long the demo's access tokens live.")
    ] = 3.0,
    calls: Annotated[
        int, typer.Option("--calls", metavar="N", help="Calls at once after the token expired.")
    ] = 10,
    json_output: Annotated[bool, typer.Option("--json", help="Print the steps as JSON.")] = False,
) -> None:
    """Run the OAuth flow against bundled local servers, timed."""
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    steps: list[dict[str, Any]] = []

    def emit(step: str, seconds: float, detail: str) -> None:
        steps.append({"step": step, "ms": round(seconds * 1000, 1), "detail": detail})
        if not json_output:
            print(f"  {step:<17} {seconds * 1000:9.1f} ms  {detail}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mcprelay-demo-") as tmp:
        home = Path(runtime.home_option) if runtime.home_option else Path(tmp)
        if not json_output:
            print(f"mcprelay demo (home {home})")
        summary = anyio.run(_run, home, ttl, calls, emit)
    if json_output:
        print(json.dumps({"steps": steps, **summary}, indent=2))
    else:
        verdict = "OK" if summary["ok"] else "UNEXPECTED"
        print(f"{verdict}: {summary['calls_ok']}/{calls} calls after expiry, {summary['refreshes']} refresh, "
              f"{summary['grants_revoked']} grants revoked")
    if not summary["ok"]:
        raise typer.Exit(4)
