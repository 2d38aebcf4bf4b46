"""Gateway replicas that share only a real redis-server: one login, one refresh per grant, faults.

Every replica is a separate ``mcprelay serve --listen 127.0.0.1:0`` process with a home of its own, so
no file is shared and only Redis can coordinate. The strict authorization server rotates refresh
tokens and revokes the grant when a spent one is presented, so a double refresh anywhere in the fleet
shows up as ``grants_revoked``. Overlap is counted, never timed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest

from mcprelay.transport import open_session
from tests.conftest import Servers
from tests.integration.fleet_helpers import Replica, fleet_config, replicas, run_cli
from tests.integration.gateway_helpers import Notifications, mcp_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def login_from_laptop(tmp_path: Path, config: Path) -> None:
    """``mcprelay auth login`` from a machine that is no replica (its own home, the fleet's config)."""
    done = run_cli(tmp_path / "laptop", config, "auth", "login", "--server", "strict")
    assert done.returncode == 0, done.stderr


async def calls(node: Replica, n: int, tool: str = "strict__sleep", args: dict[str, Any] | None = None
                ) -> list[types.CallToolResult]:
    results: list[types.CallToolResult] = []
    async with open_session(f"{node.url}/mcp", headers=node.headers) as client:

        async def one() -> None:
            results.append(await client.call_tool(tool, args if args is not None else {"seconds": 0.5}))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return results


def error_type(result: types.CallToolResult) -> str | None:
    if not result.is_error:
        return None
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return str(json.loads(block.text).get("error_type"))


def error_message(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return str(json.loads(block.text).get("message"))


async def until_expired(servers: Servers, started: float, ttl: float) -> None:
    await anyio.sleep(max(0.0, started + ttl - time.time()) + 0.3)


async def test_one_login_reaches_every_replica_and_thirty_calls_after_expiry_send_one_refresh(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, tmp_path: Path
) -> None:
    ttl = 12.0
    servers = strict_servers(access_token_ttl=ttl)
    redis = redis_server(appendonly=True)
    config = fleet_config(tmp_path / "fleet.json", servers.mcp_url, redis.url, lease_ttl=3)
    async with replicas(tmp_path, config, 3) as nodes:
        for node in nodes:
            await node.wait_state("login_required")
        seen = Notifications()
        async with mcp_client(nodes[2].url, nodes[2].home, mode="legacy", message_handler=seen) as watcher:
            assert "strict__echo" not in {t.name for t in (await watcher.list_tools(cache_mode="bypass")).tools}
            before = seen.tools_changed()
            logged_in = time.time()
            login_from_laptop(tmp_path, config)
            # A login made elsewhere reaches every replica: parked upstreams connect, clients hear list_changed.
            waits = [await node.wait_state("ready", timeout=10) for node in nodes]
            await seen.wait_tools_changed(before, timeout=10)
            assert "strict__echo" in {t.name for t in (await watcher.list_tools(cache_mode="bypass")).tools}
        assert time.time() < logged_in + ttl, f"replicas took too long to connect ({waits}); the token expired"

        servers.auth.settings.access_token_ttl = 600
        await until_expired(servers, logged_in, ttl)
        servers.auth.counters.reset()
        batches: list[list[types.CallToolResult]] = []

        async def burst(node: Replica) -> None:
            batches.append(await calls(node, 10))

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(burst, node)
        results = [r for batch in batches for r in batch]
        assert [error_type(r) for r in results] == [None] * 30, [error_message(r) for r in results if r.is_error]
        assert servers.auth.counters.refresh_total == 1
        assert servers.auth.counters.grants_revoked == 0
        assert servers.auth.counters.tool_in_flight_peak >= 10  # calls overlapped: counted, not timed

        # auth status from a fourth process shows the fleet's login.
        status = run_cli(tmp_path / "laptop", config, "auth", "status", "--json")
        assert status.returncode == 0, status.stderr
        (row,) = json.loads(status.stdout)
        assert row["state"] == "authenticated" and row["registration_kind"] == "dcr"
        assert row["token_store"].startswith("redis (redis://127.0.0.1:")
        assert servers.auth.counters.registrations == 0  # nobody registered again after the login

        # A logout anywhere drops the upstream everywhere.
        done = run_cli(tmp_path / "laptop", config, "auth", "logout", "--server", "strict")
        assert done.returncode == 0, done.stderr
        for node in nodes:
            await node.wait_state("login_required", timeout=10)
        (result,) = await calls(nodes[0], 1, "strict__echo", {"text": "x"})
        assert error_type(result) == "login_required"
    # Nothing readable in Redis is a token.
    dump = redis.command("KEYS", "*")
    assert b"tokens/strict" not in dump  # logged out
    assert servers.auth.counters.grants_revoked == 0


async def test_a_lease_holder_killed_mid_refresh_never_leads_to_a_second_presentation(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, tmp_path: Path
) -> None:
    ttl, lease_ttl = 8.0, 2.0
    servers = strict_servers(access_token_ttl=ttl)
    redis = redis_server(appendonly=True)
    config = fleet_config(tmp_path / "fleet.json", servers.mcp_url, redis.url, lease_ttl=lease_ttl)
    async with replicas(tmp_path, config, 3) as nodes:
        for node in nodes:
            await node.wait_state("login_required")
        logged_in = time.time()
        login_from_laptop(tmp_path, config)
        for node in nodes:
            await node.wait_state("ready", timeout=10)
        assert time.time() < logged_in + ttl, "replicas took too long to connect; the token expired"
        servers.auth.settings.token_delay = 3.0  # a slow token endpoint: the holder is killed while it waits
        await until_expired(servers, logged_in, ttl)
        servers.auth.counters.reset()
        async with anyio.create_task_group() as tg:
            tg.start_soon(calls, nodes[0], 1, "strict__echo", {"text": "holder"})
            with anyio.fail_after(20):
                while servers.auth.counters.token_in_flight == 0:
                    await anyio.sleep(0.02)
            # Whichever replica got the lease (a background request may have beaten our call) is the holder.
            (holder,) = [n for n in nodes if '"refresh_lease_acquired"' in n.log_text()]
            holder.kill()
            tg.cancel_scope.cancel()
        killed_at = time.monotonic()
        nodes = [n for n in nodes if n is not holder]
        servers.auth.settings.token_delay = 0
        servers.auth.settings.access_token_ttl = 600
        outcomes: list[tuple[str | None, str, float]] = []

        async def survivor(node: Replica) -> None:
            for result in await calls(node, 5, "strict__echo", {"text": "after"}):
                outcomes.append((error_type(result), error_message(result) if result.is_error else "",
                                 time.monotonic() - killed_at))

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(survivor, node)
        last_errors = [(await node.server())["last_error"] for node in nodes]
        status = run_cli(tmp_path / "laptop", config, "auth", "status", "--json")
        last_errors.append(json.loads(status.stdout)[0]["last_error"])
    assert len(outcomes) == 10
    for kind, message, took in outcomes:
        assert kind in (None, "login_required"), message
        assert took < lease_ttl + 10, f"a survivor took {took:.1f} s"
        if kind == "login_required":
            assert "never finished" in message or "requires a login" in message, message
    assert "never finished" in str(last_errors)  # why, as the replicas and auth status show it
    assert servers.auth.counters.refresh_total == 1  # only the killed holder's; its token was never presented again
    assert servers.auth.counters.grants_revoked == 0


async def test_redis_paused_then_killed_and_restarted_never_fails_open(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, tmp_path: Path
) -> None:
    ttl = 12.0
    servers = strict_servers(access_token_ttl=ttl)
    redis = redis_server(appendonly=True)
    config = fleet_config(tmp_path / "fleet.json", servers.mcp_url, redis.url, lease_ttl=2, wait=3)
    async with replicas(tmp_path, config, 2) as nodes:
        for node in nodes:
            await node.wait_state("login_required")
        logged_in = time.time()
        login_from_laptop(tmp_path, config)
        for node in nodes:
            await node.wait_state("ready", timeout=10)
        assert time.time() < logged_in + ttl * 0.8, "replicas took too long to connect"
        redis.pause()
        try:
            # Valid access tokens go on from memory: a fresh call touches no Redis.
            for node in nodes:
                assert [error_type(r) for r in await calls(node, 3, "strict__echo", {"text": "paused"})] == [None] * 3
            await until_expired(servers, logged_in, ttl)
            servers.auth.counters.reset()
            started = time.monotonic()
            results = await calls(nodes[0], 3, "strict__echo", {"text": "due"})
            waited = time.monotonic() - started
        finally:
            redis.resume()
        # The due refresh waited a bounded time for Redis and was never sent without the lease.
        assert {error_type(r) for r in results} == {"token_store_unavailable"}, [error_message(r) for r in results]
        assert "was not sent" in error_message(results[0]) or "not sent" in error_message(results[0])
        assert servers.auth.counters.refresh_total == 0
        assert waited < 3 + 10
        servers.auth.settings.access_token_ttl = 600
        # Redis back: it goes on, with one refresh for the fleet.
        for node in nodes:
            assert [error_type(r) for r in await calls(node, 3, "strict__echo", {"text": "back"})] == [None] * 3
        assert servers.auth.counters.refresh_total == 1
        # SIGKILL and restart (append-only persistence): the grant survives and calls go on.
        redis.kill()
        redis.start()
        servers.auth.expire_access_tokens()
        for node in nodes:
            results = await calls(node, 3, "strict__echo", {"text": "restarted"})
            assert [error_type(r) for r in results] == [None] * 3, [error_message(r) for r in results if r.is_error]
        assert servers.auth.counters.refresh_total == 2
    assert servers.auth.counters.grants_revoked == 0


async def test_redis_restarted_without_persistence_says_the_login_is_gone(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    redis = redis_server(appendonly=False)
    config = fleet_config(tmp_path / "fleet.json", servers.mcp_url, redis.url, lease_ttl=2, wait=3)
    login_from_laptop(tmp_path, config)
    async with replicas(tmp_path, config, 1) as (node,):
        await node.wait_state("ready", timeout=20)
        redis.restart()  # no appendonly: the data set is empty
        servers.auth.expire_access_tokens()
        with anyio.fail_after(20):
            while (await node.server())["state"] != "login_required":
                (result,) = await calls(node, 1, "strict__echo", {"text": "x"})
                assert error_type(result) in (None, "login_required"), error_message(result)
        reason = (await node.server())["last_error"]["message"]
        status = run_cli(tmp_path / "laptop", config, "auth", "status", "--json")
    assert "restarted without persistence" in reason, reason
    (row,) = json.loads(status.stdout)
    assert row["state"] == "login_required" and "restarted without persistence" in row["last_error"]["message"]
    assert servers.auth.counters.grants_revoked == 0


async def test_healthz_readyz_and_metrics_of_a_replica(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    redis = redis_server(appendonly=True)
    config = fleet_config(tmp_path / "fleet.json", servers.mcp_url, redis.url)
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "api_key": "fleet-test-key"}))
    login_from_laptop(tmp_path, config)
    key = {"Authorization": "Bearer fleet-test-key"}
    async with replicas(tmp_path, config, 1) as (node,), httpx2.AsyncClient(base_url=node.url, timeout=20) as http:
        node.headers = key
        assert (await http.get("/healthz")).status_code == 401  # behind the listener's key like everything else
        assert (await http.get("/healthz", headers=key)).json() == {"status": "ok"}
        ready = await http.get("/readyz", headers=key)
        assert ready.status_code == 200 and ready.json()["checks"]["token_store"]["ok"] is True
        await node.wait_state("ready")
        async with open_session(f"{node.url}/mcp", headers=key) as client:
            assert not (await client.call_tool("strict__echo", {"text": "m"})).is_error
        servers.auth.expire_access_tokens()
        async with open_session(f"{node.url}/mcp", headers=key) as client:
            assert not (await client.call_tool("strict__echo", {"text": "m"})).is_error
        text = (await http.get("/metrics", headers=key)).text
        redis.pause()
        try:
            paused = await http.get("/readyz", headers=key)
            alive = await http.get("/healthz", headers=key)
        finally:
            redis.resume()
    assert 'mcprelay_tool_call_seconds_count{status="ok",upstream="strict"}' in text
    assert 'mcprelay_upstream_state{state="ready",upstream="strict"} 1.0' in text
    assert 'mcprelay_refreshes_total{outcome="refreshed"} 1.0' in text
    assert 'mcprelay_lease_wait_seconds_count{lock="redis"}' in text
    assert paused.status_code == 503 and paused.json()["checks"]["token_store"]["ok"] is False
    assert alive.status_code == 200
