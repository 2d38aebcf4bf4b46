"""Identity providers as they are: each README row, against the strict server set to behave that way."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.connect import open_upstream
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.browser import follow
from tests.conftest import Servers
from tests.integration.test_login_flow import busy_port

pytestmark = pytest.mark.anyio


def cfg_for(servers: Servers, **oauth: Any) -> ServerConfig:
    return ServerConfig(name="idp", url=servers.mcp_url, oauth=OAuthConfig(**oauth))


async def browser_login(cfg: ServerConfig, store: MemoryStore, **options: Any) -> Any:
    async with new_http_client() as http:
        return await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None, **options))


async def refresh_through_a_call(cfg: ServerConfig, store: MemoryStore, home: Path, servers: Servers) -> None:
    grant = load_grant(store, "idp")
    assert grant is not None
    servers.auth.expire_access_tokens()
    grant.tokens.expires_at = time.time() - 1
    store.put("tokens/idp", grant.to_dict())
    async with new_http_client() as http, open_upstream(cfg, store=store, http=http, home=home) as (client, _):
        result = await client.call_tool("echo", {"text": "after refresh"})
    assert result.content[0].text == "after refresh"  # type: ignore[union-attr]


async def test_entra_rejects_resource_and_wants_scope_on_refresh(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(reject_resource=True, require_resource=False, require_scope_on_refresh=True)
    # As configured for any other server: the AADSTS9010010 refusal, with the switch to flip in the suggestion.
    with pytest.raises(McpRelayError) as caught:
        await browser_login(cfg_for(servers), MemoryStore(), timeout=10)
    assert "AADSTS9010010" in caught.value.message
    cfg = cfg_for(servers, send_resource=False, scope_on_refresh=True)
    store = MemoryStore()
    assert (await browser_login(cfg, store)).grant is not None
    before = servers.auth.counters.refresh_total
    await refresh_through_a_call(cfg, store, home, servers)
    assert servers.auth.counters.refresh_total == before + 1
    assert "resource" not in servers.auth.token_forms[-1] and servers.auth.token_forms[-1]["scope"]


async def test_entra_token_errors_name_the_switch(strict_servers: Callable[..., Servers], home: Path) -> None:
    from mcprelay.oauth.rfc6749 import _suggestion

    assert "send_resource" in _suggestion("invalid_target", "AADSTS9010010: The resource parameter ...")


async def test_supabase_201_token_answers_are_accepted(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers(token_status=201)
    store = MemoryStore()
    cfg = cfg_for(servers)
    assert (await browser_login(cfg, store)).grant is not None
    await refresh_through_a_call(cfg, store, home, servers)


async def test_github_oauth_app_needs_its_one_registered_redirect_uri(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(dcr_enabled=False)
    free = busy_port()
    port = free.getsockname()[1]
    free.close()
    redirect = f"http://127.0.0.1:{port}/callback"
    servers.auth.add_client("Iv1.gh", secret="gh-secret", redirect_uris=[redirect], application_type="web")
    cfg = cfg_for(servers, client_id="Iv1.gh", client_secret="gh-secret", redirect_uri=redirect)
    outcome = await browser_login(cfg, MemoryStore())
    assert outcome.grant is not None and outcome.grant.redirect_uri == redirect
    # Without the pin the OS picks another port, which a web client's exact match refuses: no callback.
    with pytest.raises(McpRelayError) as caught:
        await browser_login(cfg_for(servers, client_id="Iv1.gh", client_secret="gh-secret"), MemoryStore(),
                            timeout=2)
    assert caught.value.error_type == ErrorType.LOGIN_TIMEOUT


async def test_google_without_dcr_needs_a_preregistered_client(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(dcr_enabled=False)
    with pytest.raises(McpRelayError) as caught:
        await browser_login(cfg_for(servers), MemoryStore())
    assert caught.value.error_type == ErrorType.CLIENT_ID_REQUIRED and "oauth.client_id" in caught.value.suggestion
    servers.auth.add_client("123.apps.googleusercontent.com", secret="g-secret", application_type="native",
                            redirect_uris=["http://127.0.0.1/callback"])
    cfg = cfg_for(servers, client_id="123.apps.googleusercontent.com", client_secret="g-secret")
    assert (await browser_login(cfg, MemoryStore())).grant is not None
