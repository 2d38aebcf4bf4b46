"""DPoP (RFC 9449) against the strict servers: bound tokens, proofs, nonces at both servers, refresh."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.connect import open_upstream
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.browser import follow
from tests.conftest import Servers

pytestmark = pytest.mark.anyio


def cfg_for(servers: Servers, **oauth: Any) -> ServerConfig:
    return ServerConfig(name="strict", url=servers.mcp_url, oauth=OAuthConfig(**oauth))


async def browser_login(cfg: ServerConfig, store: MemoryStore) -> Any:
    async with new_http_client() as http:
        return await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))


async def echo(cfg: ServerConfig, store: MemoryStore, home: Path, n: int = 3) -> list[str]:
    out = []
    async with new_http_client() as http, open_upstream(cfg, store=store, http=http, home=home) as (client, _):
        for i in range(n):
            result = await client.call_tool("echo", {"text": f"t{i}"})
            out.append(result.content[0].text)  # type: ignore[union-attr]
    return out


async def test_a_resource_that_requires_dpop_gets_bound_tokens_proofs_nonces_and_a_bound_refresh(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(dpop_required=True, dpop_nonce=True, dpop_algs=["ES256"], dpop_require_nonce=True,
                             access_token_ttl=600)
    store = MemoryStore()
    cfg = cfg_for(servers)
    await browser_login(cfg, store)
    grant = load_grant(store, "strict")
    assert grant is not None and grant.tokens.token_type == "DPoP"
    assert "dpop" in grant.extra and "d" in grant.extra["dpop"]["jwk"]  # the private key, in the sealed record
    assert servers.auth.counters.dpop_nonce_challenges == 1  # the AS asked for its nonce once
    assert await echo(cfg, store, home) == ["t0", "t1", "t2"]
    assert servers.auth.counters.rs_nonce_challenges >= 1  # and so did the resource
    assert servers.auth.counters.rs_dpop_proofs >= 3
    # The token expires: the refresh carries a proof with the same key (the server checks the binding).
    servers.auth.expire_access_tokens()
    grant.tokens.expires_at = time.time() - 1
    store.put("tokens/strict", grant.to_dict())
    refreshes = servers.auth.counters.refresh_total
    assert await echo(cfg, store, home, n=1) == ["t0"]
    assert servers.auth.counters.refresh_total == refreshes + 1
    renewed = load_grant(store, "strict")
    assert renewed is not None and renewed.tokens.token_type == "DPoP"
    assert renewed.extra["dpop"] == grant.extra["dpop"]


async def test_dpop_is_not_used_merely_because_the_authorization_server_supports_it(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers(dpop_algs=["ES256"])
    store = MemoryStore()
    cfg = cfg_for(servers)
    await browser_login(cfg, store)
    grant = load_grant(store, "strict")
    assert grant is not None and grant.tokens.token_type == "Bearer" and "dpop" not in grant.extra
    assert "dpop" not in {k.lower() for k in servers.auth.token_forms[-1]}
    assert servers.auth.counters.dpop_proofs == 0
    assert await echo(cfg, store, home, n=1) == ["t0"]
    assert servers.auth.counters.rs_dpop_proofs == 0


async def test_dpop_when_the_configuration_says_so(strict_servers: Callable[..., Servers], home: Path) -> None:
    servers = strict_servers(dpop_algs=["ES256", "RS256"])
    store = MemoryStore()
    cfg = cfg_for(servers, dpop=True)
    await browser_login(cfg, store)
    grant = load_grant(store, "strict")
    assert grant is not None and grant.tokens.token_type == "DPoP"
    assert await echo(cfg, store, home, n=2) == ["t0", "t1"]
    assert servers.auth.counters.rs_dpop_proofs >= 2  # every request of the session carries a proof
