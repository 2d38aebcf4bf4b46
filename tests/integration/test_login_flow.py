"""The whole login against the strict authorization server over real sockets, incl. the seeded failures."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx2
import pytest

from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, LoginOutcome, login
from mcprelay.oauth.grant import load_grant
from mcprelay.oauth.rfc7591 import ClientRegistration, registration_key
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.browser import follow, page_target
from tests.conftest import Servers, log_events

pytestmark = pytest.mark.anyio


class Browser:
    """Records what was opened; by default follows the auto-consent redirect like a real browser."""

    def __init__(self, action: Callable[[str], bool] = follow) -> None:
        self.opened: list[str] = []
        self.given: list[str] = []
        self.action = action

    def __call__(self, url: str) -> bool:
        self.given.append(url)
        self.opened.append(page_target(url))  # the authorization URL behind the private hand-off page
        return self.action(url)


def server_cfg(servers: Servers, **oauth: Any) -> ServerConfig:
    return ServerConfig(name="strict", url=servers.mcp_url, oauth=OAuthConfig(**oauth))


async def run_login(cfg: ServerConfig, store: MemoryStore, browser: Browser, **options: Any) -> LoginOutcome:
    async with new_http_client() as http:
        return await login(cfg, store, http, LoginOptions(open_browser=browser, notify=lambda _m: None, **options))


def redirect_target(url: str) -> str:
    """The Location the authorization server answers with (what a browser would follow)."""
    with httpx2.Client(follow_redirects=False, timeout=10) as client:
        response = client.get(page_target(url))
    assert response.status_code in (302, 303), response.text
    return response.headers["location"]


def busy_port() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


async def test_first_login_binds_port_zero_registers_it_and_stores_tokens(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    store, browser = MemoryStore(), Browser()
    outcome = await run_login(server_cfg(servers), store, browser)

    assert outcome.grant is not None and outcome.registration is not None
    assert outcome.registration.kind == "dcr"
    port = urlsplit(outcome.grant.redirect_uri or "").port
    assert port and port != 0
    assert outcome.registration.redirect_uri == outcome.grant.redirect_uri
    assert servers.auth.counters.registrations == 1
    stored = load_grant(store, "strict")
    assert stored is not None and stored.tokens.access_token == outcome.grant.tokens.access_token
    assert stored.tokens.expires_at and stored.tokens.expires_at > time.time()
    assert stored.resource == servers.mcp_url
    # The page told the truth: success, after the exchange.
    query = parse_qs(urlsplit(browser.opened[0]).query)
    assert query["code_challenge_method"] == ["S256"] and query["resource"] == [servers.mcp_url]
    assert "state" in query


async def test_second_login_reuses_the_cached_registration(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers()
    store = MemoryStore()
    first = await run_login(server_cfg(servers), store, Browser())
    second = await run_login(server_cfg(servers), store, Browser())
    assert first.registration and second.registration
    assert second.registration.client_id == first.registration.client_id
    assert servers.auth.counters.registrations == 1


async def test_stale_cached_port_busy_heals_by_registering_again_and_logs_it(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    """Seeded failure 1 (EADDRINUSE): the cached redirect port is taken by another process."""
    servers = strict_servers()
    store = MemoryStore()
    first = await run_login(server_cfg(servers), store, Browser())
    assert first.grant and first.registration
    old_port = urlsplit(first.registration.redirect_uri or "").port
    assert old_port
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may sit in TIME_WAIT
    try:
        squatter.bind(("127.0.0.1", old_port))
    except OSError:
        pytest.skip("the old port was taken by someone else before the test could squat it")
    squatter.listen(1)
    try:
        second = await run_login(server_cfg(servers), store, Browser())
    finally:
        squatter.close()
    assert second.grant and second.registration
    new_port = urlsplit(second.registration.redirect_uri or "").port
    assert new_port and new_port != old_port
    assert second.registration.client_id != first.registration.client_id
    cached = ClientRegistration.from_dict(store.get(registration_key("strict", second.grant.issuer)) or {})
    assert cached.redirect_uri == second.registration.redirect_uri
    failures = [e for e in log_events(home) if e.get("event") == "callback_bind_failed"]
    assert failures and failures[-1]["port"] == old_port and failures[-1]["code"] == "EADDRINUSE"
    assert failures[-1]["server"] == "strict" and failures[-1]["address"] == "127.0.0.1"
    assert failures[-1]["errno"] == errno.EADDRINUSE


async def test_stale_cached_port_eacces_heals(strict_servers: Callable[..., Servers], home: Path) -> None:
    """Seeded failure 1 (EACCES, as on a Windows excluded port range), injected at bind time."""
    servers = strict_servers()
    store = MemoryStore()
    first = await run_login(server_cfg(servers), store, Browser())
    assert first.registration
    old_port = urlsplit(first.registration.redirect_uri or "").port

    def bind(host: str, port: int) -> socket.socket:
        if port == old_port:
            raise PermissionError(errno.EACCES, "An attempt was made to access a socket in a way forbidden")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, port))
        return sock

    second = await run_login(server_cfg(servers), store, Browser(), bind=bind)
    assert second.grant and second.registration
    assert urlsplit(second.registration.redirect_uri or "").port != old_port
    failures = [e for e in log_events(home) if e.get("event") == "callback_bind_failed"]
    assert failures[-1]["code"] == "EACCES" and failures[-1]["port"] == old_port
    assert failures[-1]["errno"] == errno.EACCES
    assert servers.auth.counters.registrations == 2


async def test_busy_configured_port_fails_fast_before_any_browser(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    """Seeded failure 2: the port the user configured is taken → a clear error, no browser."""
    servers = strict_servers()
    squatter = busy_port()
    port = squatter.getsockname()[1]
    browser = Browser()
    started = time.monotonic()
    try:
        with pytest.raises(McpRelayError) as caught:
            await run_login(server_cfg(servers, callback_port=port), MemoryStore(), browser)
    finally:
        squatter.close()
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.error_type == ErrorType.CALLBACK_PORT_IN_USE
    assert error.exit_code == 3
    text = f"{error.message} {error.suggestion}"
    assert str(port) in text and "mcpServers[].oauth.callback_port" in text and "127.0.0.1" in text
    assert browser.opened == []
    assert servers.auth.counters.authorize_requests == 0
    assert elapsed < 5  # generous: the point is "no browser, no waiting for a login timeout"


async def test_configured_free_port_is_used(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers()
    probe = busy_port()
    port = probe.getsockname()[1]
    probe.close()
    outcome = await run_login(server_cfg(servers, callback_port=port), MemoryStore(), Browser())
    assert outcome.grant and urlsplit(outcome.grant.redirect_uri or "").port == port


async def test_unknown_state_gets_an_honest_page_and_the_login_still_completes(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    """Seeded failure 3's cousin: a callback for no login in progress is named as such, not 'CSRF'."""
    servers = strict_servers()
    seen: list[tuple[int, str]] = []

    def stray_then_real(url: str) -> bool:
        location = redirect_target(url)
        parts = urlsplit(location)
        stray = urlunsplit(parts._replace(query=urlencode({"code": "stale", "state": "not-ours"})))
        with httpx2.Client(timeout=10) as client:
            response = client.get(stray)
        seen.append((response.status_code, response.text))
        return follow(url)

    outcome = await run_login(server_cfg(servers), MemoryStore(), Browser(stray_then_real))
    assert outcome.grant is not None
    status, page = seen[0]
    assert status == 400
    assert "belongs to no login in progress in this mcprelay process" in page
    assert "CSRF" not in page


async def test_wrong_state_only_then_timeout_is_state_mismatch(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()

    def stray_only(url: str) -> bool:
        parts = urlsplit(redirect_target(url))
        with httpx2.Client(timeout=10) as client:
            client.get(urlunsplit(parts._replace(query=urlencode({"code": "x", "state": "forged"}))))
        return True

    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), Browser(stray_only), timeout=4)
    assert caught.value.error_type == ErrorType.STATE_MISMATCH


async def test_no_callback_at_all_is_login_timeout(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers()
    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), Browser(lambda _u: True), timeout=1.0)
    assert caught.value.error_type == ErrorType.LOGIN_TIMEOUT
    assert caught.value.exit_code == 3


async def test_iss_mismatch_is_refused(strict_servers: Callable[..., Servers], home: Path) -> None:
    """RFC 9207: the AS advertises iss; a response claiming another issuer is a mix-up attack."""
    servers = strict_servers(advertise_iss=True)
    pages: list[str] = []

    def mixup(url: str) -> bool:
        parts = urlsplit(redirect_target(url))
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert query.get("iss")
        query["iss"] = "https://evil.example"
        with httpx2.Client(timeout=10) as client:
            pages.append(client.get(urlunsplit(parts._replace(query=urlencode(query)))).text)
        return True

    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), Browser(mixup), timeout=10)
    assert caught.value.error_type == ErrorType.CODE_FLOW_FAILED
    assert servers.auth.counters.token_requests.get(("authorization_code", 200), 0) == 0


async def test_access_denied(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers(deny=True)
    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), Browser(), timeout=10)
    assert caught.value.error_type == ErrorType.ACCESS_DENIED


async def test_pkce_not_advertised_is_refused_before_authorization(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(pkce_methods=None)
    browser = Browser()
    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), browser)
    assert caught.value.error_type == ErrorType.PKCE_UNSUPPORTED
    assert browser.opened == [] and servers.auth.counters.authorize_requests == 0


async def test_preregistered_client_wins_over_dcr(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers()
    servers.auth.add_client(
        "pre-1", secret="s3cret-pre", redirect_uris=["http://127.0.0.1/callback"], application_type="native",
        token_endpoint_auth_method="client_secret_basic",
    )
    store = MemoryStore()
    outcome = await run_login(server_cfg(servers, client_id="pre-1", client_secret="s3cret-pre"), store, Browser())
    assert outcome.registration and outcome.registration.kind == "preregistered"
    assert outcome.registration.client_id == "pre-1"
    assert servers.auth.counters.registrations == 0
    assert outcome.grant and outcome.grant.token_endpoint_auth_method == "client_secret_basic"


async def test_cimd_used_when_advertised(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers(cimd_supported=True)
    url = "https://client.example/mcprelay.json"
    servers.auth.add_client(url, redirect_uris=["http://127.0.0.1/callback"], application_type="native")
    outcome = await run_login(server_cfg(servers, client_metadata_url=url), MemoryStore(), Browser())
    assert outcome.registration and outcome.registration.kind == "cimd"
    assert servers.auth.counters.registrations == 0


async def test_cimd_not_advertised_falls_back_to_dcr(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers(cimd_supported=False)
    outcome = await run_login(
        server_cfg(servers, client_metadata_url="https://client.example/m.json"), MemoryStore(), Browser()
    )
    assert outcome.registration and outcome.registration.kind == "dcr"


async def test_no_dcr_and_no_client_id_says_what_to_configure(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(dcr_enabled=False)
    with pytest.raises(McpRelayError) as caught:
        await run_login(server_cfg(servers), MemoryStore(), Browser())
    assert caught.value.error_type in (ErrorType.CLIENT_ID_REQUIRED, ErrorType.DCR_FAILED)
    assert "client_id" in f"{caught.value.message} {caught.value.suggestion}"


async def test_headless_login_accepts_the_pasted_redirect_url(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    printed: list[str] = []

    def paste() -> str:
        # The user copies the URL mcprelay printed into a browser elsewhere, then pastes where it landed.
        while not any("http" in m for m in printed):
            time.sleep(0.05)
        url = next(word for m in printed for word in m.split() if word.startswith("http"))
        return redirect_target(url) + "\n"

    async with new_http_client() as http:
        outcome = await login(
            server_cfg(servers), MemoryStore(), http,
            LoginOptions(headless=True, notify=printed.append, read_pasted_url=paste, timeout=20),
        )
    assert outcome.grant is not None and outcome.browser_opened is False


async def test_extra_params_and_scope_selection_reach_the_authorization_request(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    browser = Browser()
    await run_login(server_cfg(servers, extra_params={"audience": "api://x"}, scopes=["mcp:read"]), MemoryStore(),
                    browser)
    query = parse_qs(urlsplit(browser.opened[0]).query)
    assert query["audience"] == ["api://x"]
    assert query["scope"][0].split()[0] == "mcp:read"


async def test_secrets_never_reach_the_diagnostic_log(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers()
    servers.auth.add_client(
        "pre-2", secret="very-secret-client-secret", redirect_uris=["http://127.0.0.1/callback"],
        application_type="native", token_endpoint_auth_method="client_secret_basic",
    )
    store = MemoryStore()
    outcome = await run_login(
        server_cfg(servers, client_id="pre-2", client_secret="very-secret-client-secret"), store, Browser()
    )
    assert outcome.grant
    text = (home / "logs" / "mcprelay.log").read_text()
    assert outcome.grant.tokens.access_token not in text
    assert outcome.grant.tokens.refresh_token and outcome.grant.tokens.refresh_token not in text
    assert "very-secret-client-secret" not in text
    assert "login_succeeded" in text
