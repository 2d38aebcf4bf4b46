"""Hardening of the token side (issue 10): deadlines, capped bodies, hostile token responses, dead client
registrations, a lost data key, a full disk. Real servers on 127.0.0.1, real processes, a real tmpfs."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcprelay.config import ServerConfig
from mcprelay.connect import token_manager
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions
from mcprelay.oauth.grant import StoredGrant, load_grant, token_key
from mcprelay.oauth.grantlock import FileGrantLock
from mcprelay.oauth.refresher import GrantRefresher, RefreshTokenRequest
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenSet
from mcprelay.oauth.tokens import TokenManager
from mcprelay.status import read_status, recorded_login
from mcprelay.store.file import FileStore
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.browser import follow
from mcprelay.testing.mcpserver import build_app
from tests.conftest import Servers
from tests.integration.gateway_helpers import cli_env

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class TrickleServer:
    """Answers every request with headers at once, then one byte of body every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self._stopped: asyncio.Event
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            try:
                for _ in range(1000):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(self.interval)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def main() -> None:
            self._stopped = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self._stopped.wait()
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.05)

        self.loop.run_until_complete(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stopped.set)
        self.thread.join(5)


def expired_grant(token_endpoint: str) -> StoredGrant:
    now = time.time()
    return StoredGrant(
        server="s", issuer="http://127.0.0.1", client_id="c", resource="http://127.0.0.1/mcp",
        token_endpoint=token_endpoint, registration_kind="preregistered",
        tokens=TokenSet(access_token="at-old", refresh_token="rt-old", expires_at=now - 1, issued_at=now - 60),
    )


def manager_for(store: MemoryStore, home: Path, http: Any, *, deadline: float = 30.0) -> TokenManager:
    request = RefreshTokenRequest(http, ClientCredentials("c"), deadline=deadline)
    return TokenManager("s", GrantRefresher("s", store, FileGrantLock(home / "locks"), request))


async def test_a_token_endpoint_trickling_bytes_ends_at_the_deadline_and_frees_the_lock(home: Path) -> None:
    trickle = TrickleServer(interval=5.0)
    store = MemoryStore()
    store.put(token_key("s"), expired_grant(trickle.url).to_dict())
    try:
        async with new_http_client() as http:
            manager = manager_for(store, home, http, deadline=6.0)
            started = time.monotonic()
            with pytest.raises(McpRelayError) as caught:
                await manager.access_token()
            took = time.monotonic() - started
            # The grant lock is free again: a second manager gets it at once (and meets the same deadline).
            lock = FileGrantLock(home / "locks", wait=0.5)
            async with lock.hold(expired_grant(trickle.url).grant_id, server="s", correlation_id="x"):
                pass
    finally:
        trickle.stop()
    assert caught.value.error_type == ErrorType.REFRESH_FAILED
    assert "did not finish answering within 6 s" in caught.value.message
    assert 5.5 < took < 12, took  # one attempt, not retried into the lock's deadline
    print(f"\ntrickling token endpoint: clear error after {took:.1f} s (deadline 6 s)")


class HostileTokens:
    """Wraps the strict servers' app: while ``body`` is set, the token endpoint answers it instead."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body: bytes | None = None
        self.stream_mb = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/token") or not (self.body or self.stream_mb):
            await self.app(scope, receive, send)
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        if self.stream_mb:
            chunk = b"a" * (1 << 20)
            await send({"type": "http.response.body", "body": b'{"access_token": "', "more_body": True})
            for _ in range(self.stream_mb):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b'"}'})
            return
        assert self.body is not None
        await send({"type": "http.response.body", "body": self.body})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


@pytest.fixture
def hostile_servers() -> Iterator[tuple[Servers, HostileTokens]]:
    auth = StrictAuthServer(AuthServerSettings(access_token_ttl=600))
    holder: dict[str, HostileTokens] = {}

    def make(base: str) -> Any:
        holder["app"] = HostileTokens(build_app(base, auth=auth))
        return holder["app"]

    server = ThreadedServer(AppFactory(make)).start()
    try:
        yield Servers(auth=auth, base=server.url), holder["app"]
    finally:
        server.stop()


HOSTILE_BODIES = {
    "expires_in 1e400": b'{"access_token": "x", "token_type": "Bearer", "expires_in": 1e400}',
    "expires_in Infinity": b'{"access_token": "x", "token_type": "Bearer", "expires_in": "Infinity"}',
    "negative expires_in": b'{"access_token": "x", "token_type": "Bearer", "expires_in": -3600}',
    "100,000-deep JSON": b"[" * 100_000 + b"]" * 100_000,
}


async def test_hostile_token_responses_are_clear_errors_at_login_and_at_refresh(
    hostile_servers: tuple[Servers, HostileTokens], home: Path
) -> None:
    servers, hostile = hostile_servers
    cfg = ServerConfig(name="strict", url=servers.mcp_url)
    store = MemoryStore()
    options = LoginOptions(open_browser=follow, notify=lambda _m: None)
    async with new_http_client() as http:
        for name, body in HOSTILE_BODIES.items():
            hostile.body = body
            with pytest.raises(McpRelayError) as caught:
                await recorded_login(home, cfg, store, http, options)
            assert caught.value.error_type == ErrorType.CODE_FLOW_FAILED, name
            assert "unusable response" in caught.value.message, name
            recorded = read_status(home, "strict")["last_error"]
            assert recorded["error_type"] == "code_flow_failed" and recorded["message"] == caught.value.message
        hostile.body = None
        await recorded_login(home, cfg, store, http, options)
        grant = load_grant(store, "strict")
        assert grant is not None
        expired = expired_grant(grant.token_endpoint)
        grant.tokens = TokenSet(access_token=grant.tokens.access_token, refresh_token=grant.tokens.refresh_token,
                                expires_at=time.time() - 1, issued_at=expired.tokens.issued_at)
        store.put(token_key("strict"), grant.to_dict())
        for name, body in HOSTILE_BODIES.items():
            hostile.body = body
            manager = token_manager(cfg, store, http, home)
            with pytest.raises(McpRelayError) as caught:
                await manager.access_token()
            assert caught.value.error_type == ErrorType.REFRESH_FAILED, name
            assert "unusable response" in caught.value.message, name
            assert read_status(home, "strict")["last_error"]["error_type"] == "refresh_failed"


async def test_a_100_mb_token_response_is_cut_off_while_it_streams(
    hostile_servers: tuple[Servers, HostileTokens], home: Path
) -> None:
    servers, hostile = hostile_servers
    store = MemoryStore()
    store.put(token_key("s"), expired_grant(f"{servers.base}/token").to_dict())
    hostile.stream_mb = 100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with new_http_client() as http:
        started = time.monotonic()
        with pytest.raises(McpRelayError) as caught:
            await manager_for(store, home, http).access_token()
        took = time.monotonic() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert caught.value.error_type == ErrorType.REFRESH_FAILED and "larger than 256 KiB" in caught.value.message
    assert grown_mb < 40, f"peak RSS grew by {grown_mb:.0f} MB"
    print(f"\n100 MB token response: refused after {took:.2f} s, peak RSS growth {grown_mb:.1f} MB")


async def test_503_and_429_refresh_failures_do_not_blame_the_client_configuration(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    store = MemoryStore()
    cfg = ServerConfig(name="strict", url=servers.mcp_url)
    async with new_http_client() as http:
        await recorded_login(home, cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
        for knob in ("token_fail_next", "rate_limit_next"):
            servers.auth.expire_access_tokens()
            setattr(servers.auth.settings, knob, 10)
            manager = token_manager(cfg, store, http, home)
            grant = load_grant(store, "strict")
            assert grant
            with pytest.raises(McpRelayError) as caught:
                await manager.refresh_after_rejection(grant.tokens.access_token)
            setattr(servers.auth.settings, knob, 0)
            assert caught.value.error_type == ErrorType.REFRESH_FAILED
            assert "client configuration" not in caught.value.suggestion
            assert "busy or unavailable" in caught.value.suggestion
    assert servers.auth.counters.grants_revoked == 0


# -- processes --------------------------------------------------------------------------------------


def cli(home: Path, config: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=cli_env(home),
    )


def file_config(tmp_path: Path, servers: Servers) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"token_store": "file", "mcpServers": {"strict": {"url": servers.mcp_url}}}))
    return path


async def test_a_registration_the_server_forgot_is_dropped_and_the_next_login_registers_again(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    config = file_config(tmp_path, servers)
    assert cli(home, config, "auth", "login", "--server", "strict").returncode == 0
    first = load_grant(FileStore(home), "strict")
    assert first
    with servers.auth.lock:
        servers.auth._clients.clear()  # the authorization server restarted and forgot its clients
    servers.auth.expire_access_tokens()
    called = cli(home, config, "call", "strict", "echo", "--args", '{"text": "x"}', "--json")
    assert called.returncode == 3, called.stderr
    error = json.loads(called.stdout)
    assert error["error_type"] == "login_required" and "invalid_client" in error["message"]
    assert "registers a new client" in error["message"]
    status = json.loads(cli(home, config, "auth", "status", "--json").stdout)[0]
    assert status["state"] == "login_required" and "invalid_client" in status["last_error"]["message"]
    assert status["client_id"] is None  # registration and tokens were dropped
    registrations = servers.auth.counters.registrations
    forced = cli(home, config, "auth", "login", "--server", "strict", "--force", "--json", timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["client_id"] != first.client_id
    assert servers.auth.counters.registrations == registrations + 1
    again = cli(home, config, "call", "strict", "echo", "--args", '{"text": "back"}', "--json")
    assert again.returncode == 0, again.stderr
    assert servers.auth.counters.grants_revoked == 0


async def test_after_the_data_key_is_lost_the_suggestion_names_the_server_and_logout_login_recover(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers(access_token_ttl=600)
    config = file_config(tmp_path, servers)
    assert cli(home, config, "auth", "login", "--server", "strict").returncode == 0
    location = json.loads((home / "store" / ".key-location").read_text())
    if location["location"] != "file":
        pytest.skip("the file store's data key went to the system keyring on this machine")
    (home / "store" / ".key").unlink()
    called = cli(home, config, "call", "strict", "echo", "--args", '{"text": "x"}', "--json")
    assert called.returncode == 3
    error = json.loads(called.stdout)
    assert error["error_type"] == "token_store_unavailable"
    assert "--server strict" in error["suggestion"] and "NAME" not in error["suggestion"]
    assert cli(home, config, "auth", "logout", "--server", "strict").returncode == 0
    forced = cli(home, config, "auth", "login", "--server", "strict", "--force")
    assert forced.returncode == 0, forced.stderr
    again = cli(home, config, "call", "strict", "echo", "--args", '{"text": "back"}', "--json")
    assert again.returncode == 0, again.stderr


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {done.stderr.strip()}")


def _fill(path: Path) -> Path:
    """Take every free byte of the file system at ``path`` (unbuffered writes until ENOSPC)."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def full_disk_home(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    _mount_tmpfs(mount, "512k")
    try:
        yield mount / "home"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_never_costs_the_grant(
    strict_servers: Callable[..., Servers], full_disk_home: Path, tmp_path: Path
) -> None:
    home = full_disk_home
    servers = strict_servers(access_token_ttl=2)
    config = file_config(tmp_path, servers)
    assert cli(home, config, "auth", "login", "--server", "strict").returncode == 0
    servers.auth.settings.access_token_ttl = 600
    await anyio.sleep(2.2)
    # Full before the refresh: the store cannot take the write, so the refresh is not sent at all.
    filler = _fill(home)
    called = cli(home, config, "call", "strict", "echo", "--args", '{"text": "full"}', "--json")
    assert called.returncode == 3, called.stderr
    error = json.loads(called.stdout)
    assert error["error_type"] == "token_store_unavailable" and "the refresh was not sent" in error["message"]
    assert servers.auth.counters.refresh_total == 0
    filler.unlink()
    # Space again, and the disk fills while the refresh is on the wire: the reserved space takes the write.
    servers.auth.settings.token_delay = 2.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "call", "strict", "echo",
         "--args", '{"text": "reserved"}', "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
    )
    with anyio.fail_after(60):
        while servers.auth.counters.token_in_flight == 0:
            await anyio.sleep(0.02)
    os.statvfs(home)
    filler = _fill(home)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["is_error"] is False
    filler.unlink()
    stored = load_grant(FileStore(home), "strict")
    assert stored and servers.auth.introspect(stored.tokens.access_token) is not None
    again = cli(home, config, "call", "strict", "echo", "--args", '{"text": "after"}', "--json")
    assert again.returncode == 0, again.stderr
    assert servers.auth.counters.refresh_total == 1 and servers.auth.counters.grants_revoked == 0
