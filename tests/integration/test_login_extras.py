"""The browser login's protections and extensions, and the device login, against the strict server.

- The authorization URL never reaches any process's argv: the browser is handed a private file://
  page (checked by scanning /proc/*/cmdline during a real CLI login, Linux only).
- Pushed authorization requests (RFC 9126): the front-channel URL carries only client_id and request_uri.
- An authorization server echoing the request cannot put the code_verifier into messages, logs or state/.
- A slow or looping protected resource document is metadata_discovery_failed, not a misleading error.
- The device authorization grant (RFC 8628): approval, denial, expiry, slow_down.
- Revocation (RFC 7009) at logout, and what a failed revocation does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth import _documents, rfc8628
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.asgi import AppFactory, serve_in_thread
from mcprelay.testing.browser import follow, page_target
from tests.conftest import Servers
from tests.integration.test_cli import config_for, run, script

pytestmark = pytest.mark.anyio


def cfg_for(url: str, **oauth: Any) -> ServerConfig:
    return ServerConfig(name="strict", url=url, oauth=OAuthConfig(**oauth))


# ------------------------------------------------------------------ hand-off page and argv


async def test_the_browser_gets_a_private_page_never_the_authorization_url(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    given: list[str] = []
    seen: dict[str, Any] = {}

    def browser(url: str) -> bool:
        given.append(url)
        path = Path(urlsplit(url).path)
        seen["mode"] = path.stat().st_mode & 0o777
        seen["dir_mode"] = path.parent.stat().st_mode & 0o777
        return follow(url)

    async with new_http_client() as http:
        outcome = await login(cfg_for(servers.mcp_url), MemoryStore(), http,
                              LoginOptions(open_browser=browser, notify=lambda _m: None, page_dir=home / "run"))
    assert outcome.grant is not None
    assert len(given) == 1 and given[0].startswith("file://") and str(home / "run") in given[0]
    assert "state" not in given[0] and "code_challenge" not in given[0]
    if os.name == "posix":
        assert seen == {"mode": 0o600, "dir_mode": 0o700}
    assert not Path(urlsplit(given[0]).path).exists()  # removed once the login is over
    assert list((home / "run").iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc to read other processes' argv")
def test_no_process_argv_holds_the_state_during_a_login(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    """Issue 10 item 5: a local user reading the process list must not learn the authorization request."""
    servers = strict_servers()
    home, config = tmp_path / "home", config_for(tmp_path, servers.mcp_url)
    # A slow browser, so the scan is sure to see it run: it waits, then follows the page.
    browser = script(tmp_path / "slow-browser.sh",
                     f'sleep 0.5; exec {sys.executable} -m mcprelay.testing.browser "$1"')
    cmdlines: set[str] = set()
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        cmdlines.add((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
                    except OSError:
                        pass
            time.sleep(0.01)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        proc = run(home, config, "auth", "login", "--server", "strict", browser=browser)
    finally:
        stop.set()
        scanner.join()
    assert proc.returncode == 0, proc.stderr
    states = servers.auth.states_seen
    assert len(states) == 1
    browsers = [c for c in cmdlines if "mcprelay.testing.browser" in c]
    assert browsers, "the scan never saw the browser process"
    assert all("file://" in c for c in browsers)
    assert not [c for c in cmdlines if states[0] in c or "code_challenge" in c]


async def test_pushed_authorization_requests_keep_state_and_challenge_out_of_the_front_channel(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(par_enabled=True, require_par=True)
    urls: list[str] = []

    def browser(url: str) -> bool:
        urls.append(page_target(url))
        return follow(url)

    store = MemoryStore()
    async with new_http_client() as http:
        outcome = await login(cfg_for(servers.mcp_url), store, http,
                              LoginOptions(open_browser=browser, notify=lambda _m: None))
    assert outcome.grant is not None and servers.auth.counters.par_requests == 1
    query = parse_qs(urlsplit(urls[0]).query)
    assert set(query) == {"client_id", "request_uri"}
    assert query["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")


# ------------------------------------------------------------------ secrets echoed by the server


def test_an_echoing_server_cannot_leak_the_code_verifier(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers(echo_request_in_errors=True, token_error_next=1)
    home, config = tmp_path / "home", config_for(tmp_path, servers.mcp_url)
    proc = run(home, config, "auth", "login", "--server", "strict")
    assert proc.returncode == 3
    assert "(request was:" in proc.stderr  # the server did echo the request into its error
    verifier = servers.auth.token_forms[-1]["code_verifier"]
    code = servers.auth.token_forms[-1]["code"]
    assert verifier not in proc.stderr and verifier not in proc.stdout and "[redacted]" in proc.stderr
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log"):
            text = path.read_text(errors="replace")
            assert verifier not in text and code not in text, path


# ------------------------------------------------------------------ slow or looping metadata


def broken_prm_app(base: str, mode: str) -> Starlette:
    prm = f"{base}/.well-known/oauth-protected-resource/mcp"

    async def mcp(request: Request) -> Response:
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": f'Bearer resource_metadata="{prm}"'})

    async def metadata(request: Request) -> Response:
        if mode == "loop":
            return RedirectResponse(prm, status_code=302)

        async def trickle() -> Any:
            for _ in range(40):
                yield b" "
                await asyncio.sleep(0.1)

        return StreamingResponse(trickle(), media_type="application/json")

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"]),
                             Route("/.well-known/oauth-protected-resource/mcp", metadata)])


@pytest.mark.parametrize("mode", ["slow", "loop"])
async def test_a_slow_or_looping_resource_document_is_metadata_discovery_failed(
    mode: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_documents, "DOCUMENT_DEADLINE_S", 1.0)
    with serve_in_thread(AppFactory(lambda base: broken_prm_app(base, mode))) as server:
        async with new_http_client() as http:
            with pytest.raises(McpRelayError) as caught:
                await login(cfg_for(f"{server.url}/mcp"), MemoryStore(), http,
                            LoginOptions(open_browser=lambda _u: False, notify=lambda _m: None))
    error = caught.value
    assert error.error_type == ErrorType.METADATA_DISCOVERY_FAILED, error.message
    assert "protected resource metadata" in error.message
    assert ("within 1 s" if mode == "slow" else "redirects in a loop") in error.message


# ------------------------------------------------------------------ the device grant


class Approver:
    """The user on their phone: reads the instructions, opens verification_uri_complete."""

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        found = re.search(r"\(or open (\S+) ,", message)
        if found:
            url = found.group(1)
            threading.Timer(self.delay, lambda: httpx2.get(url, timeout=10)).start()


async def device_login(servers: Servers, notify: Callable[[str], None], **options: Any) -> Any:
    async with new_http_client() as http:
        return await login(cfg_for(servers.mcp_url), MemoryStore(), http,
                           LoginOptions(notify=notify, open_browser=lambda _u: False, **options))


async def test_device_login_polls_until_approved_and_draws_a_qr_code_in_a_terminal(
    strict_servers: Callable[..., Servers], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rfc8628, "SLOW_DOWN_STEP_S", 0.2)
    servers = strict_servers(device_enabled=True, device_interval=0.1, device_slow_down_next=1)
    approver = Approver()
    outcome = await device_login(servers, approver, device=True, terminal=True)
    assert outcome.grant is not None and outcome.grant.tokens.refresh_token
    assert servers.auth.counters.device_polls >= 2 and servers.auth.counters.authorize_requests == 0
    text = approver.messages[0]
    assert "enter the code" in text and "█" in text  # the QR code of verification_uri_complete
    assert re.search(r"\n    [B-Z]{4}-[B-Z]{4}\n", text)


async def test_device_login_is_chosen_by_itself_in_a_headless_remote_shell(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(device_enabled=True, device_interval=0.1)
    approver = Approver()
    outcome = await device_login(servers, approver, headless=True, remote_shell=True)
    assert outcome.grant is not None and servers.auth.counters.authorize_requests == 0
    assert "█" not in approver.messages[0]  # not a terminal: no QR code


async def test_device_login_denied_and_expired_are_clear(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(device_enabled=True, device_interval=0.1, deny=True)
    with pytest.raises(McpRelayError) as caught:
        await device_login(servers, Approver(), device=True)
    assert caught.value.error_type == ErrorType.ACCESS_DENIED

    servers = strict_servers(device_enabled=True, device_interval=0.1, device_code_ttl=0.5)
    with pytest.raises(McpRelayError) as caught:
        await device_login(servers, lambda _m: None, device=True)
    assert caught.value.error_type == ErrorType.LOGIN_TIMEOUT and "expired" in caught.value.message


async def test_device_login_without_a_device_endpoint_says_so(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    with pytest.raises(McpRelayError) as caught:
        await device_login(servers, lambda _m: None, device=True)
    assert "device_authorization_endpoint" in caught.value.message


# ------------------------------------------------------------------ revocation at logout


def test_logout_revokes_the_refresh_token_then_forgets_it(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", config_for(tmp_path, servers.mcp_url)
    assert run(home, config, "auth", "login", "--server", "strict").returncode == 0
    out = run(home, config, "auth", "logout", "--server", "strict", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["revocation"]["revoked"] is True and body["revocation"]["token_type_hint"] == "refresh_token"
    assert servers.auth.counters.revocations == 1
    status = json.loads(run(home, config, "auth", "status", "--json").stdout)
    assert status[0]["state"] == "not_logged_in"


def test_a_failed_revocation_is_reported_and_the_tokens_are_removed_anyway(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers(revocation_fails=True)
    home, config = tmp_path / "home", config_for(tmp_path, servers.mcp_url)
    assert run(home, config, "auth", "login", "--server", "strict").returncode == 0
    out = run(home, config, "auth", "logout", "--server", "strict")
    assert out.returncode == 0
    assert "could not be revoked" in out.stderr and "temporarily_unavailable" in out.stderr
    assert servers.auth.counters.revocations == 0
    status = json.loads(run(home, config, "auth", "status", "--json").stdout)
    assert status[0]["state"] == "not_logged_in"
