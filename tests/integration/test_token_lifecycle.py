"""Refresh under concurrency, across processes, through crashes and lost responses — against the strict server.

The strict server rotates refresh tokens and revokes the whole grant when a consumed one is presented,
so any double refresh shows up as ``grants_revoked`` and failing calls. Overlap is shown by counting the
server's peak of tool calls in flight, not by timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.connect import token_manager
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.auth import OAuth
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant, token_key
from mcprelay.oauth.grantlock import lock_name
from mcprelay.store.base import TokenStore
from mcprelay.store.file import FileStore
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.browser import follow
from mcprelay.transport import open_session
from tests.conftest import Servers

pytestmark = pytest.mark.anyio


def cfg_for(servers: Servers, **oauth: Any) -> ServerConfig:
    return ServerConfig(name="strict", url=servers.mcp_url, oauth=OAuthConfig(**oauth))


async def logged_in(servers: Servers, store: TokenStore, **oauth: Any) -> ServerConfig:
    cfg = cfg_for(servers, **oauth)
    async with new_http_client() as http:
        outcome = await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
    assert outcome.grant is not None
    return cfg


async def until_expired(store: TokenStore) -> None:
    grant = load_grant(store, "strict")
    assert grant and grant.tokens.expires_at
    await anyio.sleep(max(0.0, grant.tokens.expires_at - time.time()) + 0.1)


async def test_fifty_coroutines_after_expiry_send_one_refresh(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600  # the refreshed token outlives the test
    await until_expired(store)
    before = servers.auth.counters.refresh_total

    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        tokens: list[str] = []

        async def one() -> None:
            tokens.append(await manager.access_token())

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
    assert len(tokens) == 50 and len(set(tokens)) == 1
    assert servers.auth.counters.refresh_total - before == 1
    assert servers.auth.counters.grants_revoked == 0
    assert servers.auth.introspect(tokens[0]) is not None
    # The refresh is in the diagnostic log; the rotated secrets are not.
    rotated = load_grant(store, "strict")
    assert rotated and rotated.tokens.refresh_token
    log = (home / "logs" / "mcprelay.log").read_text()
    assert "refresh_succeeded" in log
    assert rotated.tokens.access_token not in log and rotated.tokens.refresh_token not in log


async def test_concurrent_tool_calls_after_expiry_overlap_and_share_one_refresh(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    async with new_http_client() as http:
        oauth = OAuth(token_manager(cfg, store, http, home))
        async with open_session(servers.mcp_url, auth=oauth) as client:
            assert not (await client.call_tool("echo", {"text": "warm"})).is_error
            await until_expired(store)
            before = servers.auth.counters.refresh_total
            servers.auth.counters.tool_in_flight_peak = 0
            results: list[bool] = []

            async def one() -> None:
                result = await client.call_tool("sleep", {"seconds": 1.0})
                results.append(not result.is_error)

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(one)
            wall = time.monotonic() - started
    assert results == [True] * 10
    assert servers.auth.counters.refresh_total - before == 1
    assert servers.auth.counters.grants_revoked == 0
    assert servers.auth.counters.tool_in_flight_peak == 10  # they overlapped: counted, not timed
    assert wall < 8  # serial would take 10 s; the count above is the real witness


async def test_a_rejected_token_is_refreshed_once_and_the_call_retried(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    servers.auth.expire_access_tokens()  # the server revokes early; our clock still says "fresh"
    async with new_http_client() as http:
        oauth = OAuth(token_manager(cfg, store, http, home))
        async with open_session(servers.mcp_url, auth=oauth) as client:
            result = await client.call_tool("echo", {"text": "after 401"})
    assert not result.is_error
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0


async def test_sibling_rotation_is_adopted_not_repeated(strict_servers: Callable[..., Servers], home: Path) -> None:
    """Two managers sharing a store and lock dir (as two processes do): the second adopts the first's tokens."""
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    async with new_http_client() as http:
        first, second = token_manager(cfg, store, http, home), token_manager(cfg, store, http, home)
        stale = await second.access_token()  # loads the soon-expired grant into its memory
        await until_expired(store)
        fresh = await first.access_token()
        adopted = await second.access_token()
    assert stale != fresh and adopted == fresh
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0


async def test_lost_refresh_response_ends_in_login_required_not_a_loop(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    await until_expired(store)
    servers.auth.settings.token_drop_after_commit = 1
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        with pytest.raises(McpRelayError) as caught:
            await manager.access_token()
    error = caught.value
    assert error.error_type == ErrorType.LOGIN_REQUIRED
    assert "lost in transit" in error.message
    assert error.suggestion == "mcprelay auth login --server strict"
    assert servers.auth.counters.refresh_total == 2  # the lost one, and the one that revealed the loss
    assert load_grant(store, "strict") is None


async def test_transient_token_endpoint_failures_are_retried_in_the_same_flight(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    await until_expired(store)
    servers.auth.settings.token_fail_next = 1
    servers.auth.settings.rate_limit_next = 1
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        tokens = []

        async def one() -> None:
            tokens.append(await manager.access_token())

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
    assert len(set(tokens)) == 1
    assert servers.auth.counters.refresh_total == 3  # 503, 429, then success: one flight, no reuse
    assert servers.auth.counters.grants_revoked == 0


class FlakyStore(MemoryStore):
    """A store whose writes can be switched off, as when a keyring locks or a disk fills.

    ``broken`` refuses every write; ``broken_keys`` refuses writes of keys starting with one of them
    (``tokens/``: the store took the reservation, then failed the write of the rotated grant).
    """

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.broken_keys: tuple[str, ...] = ()

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.broken or key.startswith(self.broken_keys or ("\0",)):
            raise McpRelayError(ErrorType.TOKEN_STORE_UNAVAILABLE, "disk full (test)")
        super().put(key, value)


async def test_a_store_that_cannot_take_the_write_means_the_refresh_is_not_sent(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = FlakyStore()
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        await manager.access_token()
        await until_expired(store)
        store.broken = True
        with pytest.raises(McpRelayError) as caught:
            await manager.access_token()
        assert caught.value.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE
        assert "the refresh was not sent" in caught.value.message
        assert servers.auth.counters.refresh_total == 0  # nothing was spent at the server
        store.broken = False
        token = await manager.access_token()
    assert servers.auth.introspect(token) is not None
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0


async def test_a_write_that_fails_after_the_refresh_keeps_the_chain_in_memory_and_in_a_recovery_record(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = FlakyStore()
    cfg = await logged_in(servers, store)
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        await manager.access_token()
        await until_expired(store)
        store.broken_keys = ("tokens/",)
        with pytest.raises(McpRelayError) as caught:
            await manager.access_token()
        assert caught.value.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE
        assert "recovery record" in caught.value.message
        first = await manager.access_token()  # the refreshed token, from memory, no second error
        assert servers.auth.introspect(first) is not None
        records = list((home / "recovery").glob("*.json.enc"))
        assert len(records) == 1 and oct(records[0].stat().st_mode & 0o777) == "0o600"
        assert first.encode() not in records[0].read_bytes()  # sealed, not plaintext
        # A process that starts now (this one "exited") adopts the record instead of the spent stored token.
        store.broken_keys = ()
        servers.auth.settings.access_token_ttl = 600
        await anyio.sleep(2.2)
        successor = token_manager(cfg, store, http, home)
        second = await successor.access_token()
    assert second != first and servers.auth.introspect(second) is not None
    assert not list((home / "recovery").glob("*.json.enc"))  # adopted and removed
    stored = load_grant(store, "strict")
    assert stored and stored.tokens.access_token == second
    assert servers.auth.counters.refresh_total == 2 and servers.auth.counters.grants_revoked == 0


async def test_revoked_grant_is_login_required_and_tokens_are_removed(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    grant = load_grant(store, "strict")
    assert grant and grant.tokens.refresh_token
    await until_expired(store)
    async with new_http_client() as http:
        # Somebody else (a buggy client) presents the same refresh token twice → the server revokes the grant.
        for _ in range(2):
            await http.post(
                grant.token_endpoint,
                data={"grant_type": "refresh_token", "refresh_token": grant.tokens.refresh_token,
                      "client_id": grant.client_id, "resource": grant.resource},
            )
        assert servers.auth.counters.grants_revoked == 1
        manager = token_manager(cfg, store, http, home)
        with pytest.raises(McpRelayError) as caught:
            await manager.access_token()
    assert caught.value.error_type == ErrorType.LOGIN_REQUIRED
    assert load_grant(store, "strict") is None


# -- processes -----------------------------------------------------------------------------------


def write_config(tmp: Path, servers: Servers) -> Path:
    path = tmp / "config.json"
    path.write_text(json.dumps({"token_store": "file", "mcpServers": {"strict": {"url": servers.mcp_url}}}))
    return path


def cli(home: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


async def test_eight_processes_after_expiry_send_one_refresh(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = FileStore(home)
    await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    config = write_config(tmp_path, servers)
    await until_expired(store)
    procs = [cli(home, config, "call", "strict", "echo", "--args", '{"text": "p"}', "--json") for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["is_error"] is False
    assert servers.auth.counters.refresh_total == 1
    assert servers.auth.counters.grants_revoked == 0


async def test_restart_refreshes_without_a_browser(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=2)
    store = FileStore(home)
    await logged_in(servers, store)
    config = write_config(tmp_path, servers)
    await until_expired(store)
    marker = tmp_path / "browser-opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\ntouch {marker}\n")
    browser.chmod(0o700)
    proc = cli(home, config, "call", "strict", "whoami", "--json", env={"BROWSER": str(browser)})
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not marker.exists()
    assert servers.auth.counters.refresh_total == 1


async def test_not_logged_in_exits_3_with_login_required(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers()
    config = write_config(tmp_path, servers)
    proc = cli(home, config, "call", "strict", "echo", "--args", '{"text": "x"}', "--json")
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    body = json.loads(out)
    assert body["error_type"] == "login_required" and "mcprelay auth login --server strict" in body["suggestion"]


async def test_a_killed_lock_holder_does_not_block_the_others(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    """SIGKILL a process holding the grant's refresh lock: the OS frees the lock, the others go on."""
    servers = strict_servers(access_token_ttl=2)
    store = FileStore(home)
    await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    config = write_config(tmp_path, servers)
    grant = load_grant(store, "strict")
    assert grant
    lock_path = home / "locks" / f"{lock_name(grant.grant_id)}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "lock = FileLock(sys.argv[1], thread_local=False); lock.acquire(); print('locked', flush=True); "
         "time.sleep(600)",
         str(lock_path)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout and holder.stdout.readline().strip() == "locked"
    await until_expired(store)
    procs = [cli(home, config, "call", "strict", "echo", "--args", '{"text": "k"}', "--json") for _ in range(4)]
    await anyio.sleep(2.0)
    early = [p.communicate() for p in procs if p.poll() is not None]
    assert not early, early  # they wait for the lock...
    assert servers.auth.counters.refresh_total == 0
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    outputs = [p.communicate(timeout=60) for p in procs]  # ...and finish once the holder is gone
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0


async def test_a_refresher_killed_mid_request_leaves_a_clear_outcome(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    """Killed after sending its refresh: that response is lost for good. The others never hang and end in
    success or a clear login_required."""
    servers = strict_servers(access_token_ttl=2, token_delay=2.0)
    store = FileStore(home)
    await logged_in(servers, store)
    config = write_config(tmp_path, servers)
    await until_expired(store)
    first = cli(home, config, "call", "strict", "echo", "--args", '{"text": "a"}', "--json")
    deadline = time.monotonic() + 30
    while servers.auth.counters.refresh_total == 0 and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The server finishes that request (the rotation is committed, the answer goes nowhere) before the
    # others start; otherwise one of them could rotate first and the late commit revoke the new chain.
    while servers.auth.counters.token_in_flight > 0 and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    servers.auth.settings.token_delay = 0
    servers.auth.settings.access_token_ttl = 600
    procs = [cli(home, config, "call", "strict", "echo", "--args", '{"text": "b"}', "--json") for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode in (0, 3), err
        if proc.returncode == 3:
            assert json.loads(out)["error_type"] == "login_required"
    assert load_grant(store, "strict") is None or servers.auth.counters.grants_revoked == 0


def test_token_key_is_per_server() -> None:
    assert token_key("a") != token_key("b")


# -- step-up (403 insufficient_scope) ---------------------------------------------------------------


async def test_step_up_logs_in_again_with_the_union_of_scopes(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    from mcprelay.connect import open_upstream

    servers = strict_servers(required_scopes=["mcp:read", "mcp:tools"])
    store = MemoryStore()
    cfg = await logged_in(servers, store, scopes=["mcp:read"])
    asked: list[list[str] | None] = []

    async with new_http_client() as http:

        async def interactive(scopes: list[str] | None) -> None:
            asked.append(scopes)
            await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None), scopes=scopes)

        async with open_upstream(cfg, store=store, http=http, home=home, login=interactive) as (client, _auth):
            results = []

            async def one() -> None:
                results.append(await client.call_tool("whoami", {}))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
    assert len(asked) == 1  # one step-up login, shared
    assert asked[0] is not None and {"mcp:read", "mcp:tools"} <= set(asked[0])
    assert all(not r.is_error for r in results)
    grant = load_grant(store, "strict")
    assert grant and "mcp:tools" in (grant.tokens.scope or "").split()


async def test_step_up_is_capped_then_insufficient_scope(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    from mcprelay.connect import open_upstream

    servers = strict_servers(required_scopes=["mcp:read", "mcp:tools"])
    store = MemoryStore()
    cfg = await logged_in(servers, store, scopes=["mcp:read"])
    logins = 0

    async with new_http_client() as http:

        async def stubborn(_scopes: list[str] | None) -> None:
            # A login that never gets the scope (the user unticks it at the consent screen, say).
            nonlocal logins
            logins += 1
            await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None),
                        scopes=["mcp:read"])

        with pytest.raises(McpRelayError) as caught:
            async with open_upstream(cfg, store=store, http=http, home=home, login=stubborn) as (client, _auth):
                await client.call_tool("whoami", {})
    assert caught.value.error_type == ErrorType.INSUFFICIENT_SCOPE
    assert logins == 2
    assert "mcp:tools" in caught.value.message


async def test_a_login_that_replaced_the_grant_is_adopted(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    """A new login with another client (say, re-registered on a new port) while a manager holds the old
    grant in memory: the manager takes the stored grant instead of reporting login_required."""
    from mcprelay.oauth.rfc7591 import registration_key

    servers = strict_servers(access_token_ttl=2)
    store = MemoryStore()
    cfg = await logged_in(servers, store)
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        old = await manager.access_token()
        old_grant = load_grant(store, "strict")
        assert old_grant
        store.delete(registration_key("strict", old_grant.issuer))  # the next login registers a new client
        servers.auth.settings.access_token_ttl = 600
        await logged_in(servers, store)
        new_grant = load_grant(store, "strict")
        assert new_grant and new_grant.client_id != old_grant.client_id
        token = await manager.refresh_after_rejection(old)
        assert token == new_grant.tokens.access_token
        # And when the server rejects that one, it is refreshed with the new client's credentials.
        servers.auth.expire_access_tokens()
        refreshed = await manager.refresh_after_rejection(token)
    assert refreshed != token and servers.auth.introspect(refreshed) is not None
    assert servers.auth.counters.grants_revoked == 0
