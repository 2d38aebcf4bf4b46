"""The Redis token store against a real redis-server: sealing, key rotation, passwords, prefixes, fencing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcprelay.config import ServerConfig
from mcprelay.connect import token_manager
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.base import Fence
from mcprelay.store.redis import RedisStore
from mcprelay.store.seal import key_id
from mcprelay.testing.browser import follow
from tests.conftest import Servers
from tests.redis_helpers import new_store_key

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def raw_dump(redis: Any) -> bytes:
    """Every key and every hash field in Redis, read over a raw socket (not through mcprelay)."""
    out = [redis.command("KEYS", "*")]
    for line in out[0].split(b"\r\n"):
        if line and not line.startswith((b"*", b"$")):
            key = line.decode()
            kind = redis.command("TYPE", key)
            out.append(redis.command("HGETALL", key) if b"hash" in kind else redis.command("GET", key))
    return b"".join(out)


async def logged_in(servers: Servers, store: RedisStore) -> ServerConfig:
    cfg = ServerConfig(name="strict", url=servers.mcp_url)
    async with new_http_client() as http:
        await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
    return cfg


async def test_nothing_in_redis_is_readable_as_a_token_and_keys_rotate(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = strict_servers(access_token_ttl=600)
    redis = redis_server()
    store = RedisStore(redis.url)
    await logged_in(servers, store)
    grant = load_grant(store, "strict")
    assert grant and grant.tokens.refresh_token
    dump = raw_dump(redis)
    assert b"mcprelay:k:tokens/strict" in dump and b"mcprelay:k:registration/strict/" in dump
    for secret in (grant.tokens.access_token, grant.tokens.refresh_token, grant.client_id):
        assert secret.encode() not in dump  # sealed, client ids included
    # Rotation: the new key writes, the old one still reads.
    old = store_key
    monkeypatch.setenv("MCPRELAY_STORE_KEY", new := new_store_key())
    monkeypatch.setenv("MCPRELAY_STORE_KEY_PREVIOUS", old)
    rotated = RedisStore(redis.url)
    assert load_grant(rotated, "strict") is not None
    rotated.put("status/strict", {"n": 1})
    import base64

    assert key_id(base64.b64decode(new)) in redis.command("HGET", "mcprelay:k:status/strict", "v")
    # Without the previous key the old values do not open: a clear error naming the variables.
    monkeypatch.delenv("MCPRELAY_STORE_KEY_PREVIOUS")
    with pytest.raises(McpRelayError) as caught:
        load_grant(RedisStore(redis.url), "strict")
    assert caught.value.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE
    assert "MCPRELAY_STORE_KEY_PREVIOUS" in caught.value.message
    assert "--server strict" in caught.value.suggestion and "NAME" not in caught.value.suggestion
    for s in (store, rotated):
        s.close()


def test_a_redis_store_without_a_key_refuses_to_start_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"token_store": "redis://127.0.0.1:1/0",
                                  "mcpServers": {"s": {"url": "http://127.0.0.1:1/mcp"}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPRELAY_STORE_KEY")}
    for args in (["auth", "status"], ["serve", "--listen", "127.0.0.1:0"]):
        done = subprocess.run([sys.executable, "-m", "mcprelay", "--home", str(tmp_path / "h"), "--config",
                               str(config), *args], capture_output=True, text=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done.stderr
        assert "MCPRELAY_STORE_KEY" in done.stderr and "base64.b64encode(os.urandom(32))" in done.stderr
        assert "Traceback" not in done.stderr
    env["MCPRELAY_STORE_KEY"] = "c2hvcnQ="  # "short": 5 bytes
    done = subprocess.run([sys.executable, "-m", "mcprelay", "--home", str(tmp_path / "h"), "--config", str(config),
                           "auth", "status"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "not 32" in done.stderr


async def test_password_from_the_environment_and_prefixes_keep_fleets_apart(
    redis_server: Callable[..., Any], store_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = redis_server()
    redis.command("CONFIG", "SET", "requirepass", "s3cret-pass")
    with pytest.raises(McpRelayError) as caught:
        RedisStore(redis.url).get("tokens/x")
    assert caught.value.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE and "s3cret" not in caught.value.message
    monkeypatch.setenv("MCPRELAY_REDIS_PASSWORD", "s3cret-pass")
    team_a, team_b = RedisStore(redis.url + "?prefix=team-a:"), RedisStore(redis.url + "?prefix=team-b:")
    team_a.put("tokens/x", {"who": "a"})
    assert team_b.get("tokens/x") is None and team_a.get("tokens/x") == {"who": "a"}
    assert "s3cret" not in team_a.describe()
    for s in (team_a, team_b):
        s.close()


async def test_fenced_writes_refuse_a_lapsed_lease_and_a_newer_version(
    redis_server: Callable[..., Any], store_key: str
) -> None:
    redis = redis_server()
    store = RedisStore(redis.url)
    store.put("tokens/x", {"gen": 1})
    ((_, stamp),) = await store.read_versions(["tokens/x"])
    lease = store.lease_key("g")
    assert await store.lease_acquire(lease, "holder", 10_000)
    assert not await store.lease_acquire(lease, "sibling", 10_000)
    # The holder's lease lapses and a sibling takes it: the holder's write is refused.
    redis.command("DEL", lease)
    assert await store.lease_acquire(lease, "sibling", 10_000)
    assert not await store.write_if("tokens/x", {"gen": 2}, stamp=stamp, fence=Fence(lease, "holder"), clear=[])
    assert not await store.lease_release(lease, "holder")  # only the holder of a lease deletes it
    # The sibling writes a newer version; nobody can overwrite it with a write based on the old one.
    assert await store.write_if("tokens/x", {"gen": 3}, stamp=stamp, fence=Fence(lease, "sibling"), clear=[])
    assert not await store.write_if("tokens/x", {"gen": 4}, stamp=stamp, fence=Fence(lease, "sibling"), clear=[])
    assert store.get("tokens/x") == {"gen": 3}
    assert await store.lease_release(lease, "sibling")
    ((_, newer),) = await store.read_versions(["tokens/x"])
    assert not await store.delete_if("tokens/x", stamp=stamp, also=[])  # compare-and-delete, too
    assert await store.delete_if("tokens/x", stamp=str(newer), also=[])
    store.close()


async def test_a_holder_whose_lease_lapsed_mid_refresh_writes_only_if_nothing_changed(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, home: Path
) -> None:
    servers = strict_servers(access_token_ttl=2, token_delay=1.5)
    redis = redis_server()
    store = RedisStore(redis.url + "?lease_ttl=30")
    cfg = await logged_in(servers, store)
    servers.auth.settings.access_token_ttl = 600
    await anyio.sleep(2.2)
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        async with anyio.create_task_group() as tg:
            tokens: list[str] = []

            async def refresh() -> None:
                tokens.append(await manager.access_token())

            tg.start_soon(refresh)
            with anyio.fail_after(10):
                while servers.auth.counters.token_in_flight == 0:
                    await anyio.sleep(0.02)
            # While the request is out, the lease "lapses" and a stranger holds it for a moment.
            keys = redis.command("KEYS", "mcprelay:lease:*").split(b"\r\n")
            (lease,) = [k.decode() for k in keys if k.startswith(b"mcprelay:lease:")]
            redis.command("SET", lease, "stranger", "PX", "1000")
        # Nothing changed the grant meanwhile, so the holder took the lease again and wrote its rotation.
    stored = load_grant(store, "strict")
    assert stored and tokens and stored.tokens.access_token == tokens[0]
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0
    store.close()


async def test_redis_round_trips_a_fresh_call_makes_are_zero(
    strict_servers: Callable[..., Servers], redis_server: Callable[..., Any], store_key: str, home: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    redis = redis_server()
    store = RedisStore(redis.url)
    cfg = await logged_in(servers, store)
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)
        await manager.access_token()

        def processed() -> int:
            info = redis.command("INFO", "stats").decode()
            return int(info.split("total_commands_processed:")[1].split("\r\n")[0])

        before = processed()
        for _ in range(1000):
            await manager.access_token()
        after = processed()
    assert after - before == 1  # the INFO command itself
    store.close()


def test_store_describe_and_status_need_no_connection(tmp_path: Path, store_key: str) -> None:
    started = time.monotonic()
    store = RedisStore("redis://user:pw@127.0.0.1:1/3?prefix=x:")
    assert store.describe() == "redis (redis://127.0.0.1:1/3, prefix 'x:'; values sealed with AES-256-GCM)"
    assert time.monotonic() - started < 5  # nothing was connected to
