"""Each grant beyond the browser login, against the strict authorization server over real sockets.

Client credentials (client_secret_basic, private_key_jwt with ES256 from a file and RS256 from the
environment), workload identity federation (JWT bearer, the token re-read at each acquisition),
enterprise-managed authorization (token exchange at a second strict server playing the IdP, then
the JWT-bearer grant), each re-acquired under the token manager's single flight when it comes due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from joserfc.jwk import ECKey, RSAKey

from mcprelay.config import parse_config
from mcprelay.connect import open_upstream, token_manager
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import load_grant
from mcprelay.store.memory import MemoryStore
from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import JWT_BEARER, AuthServerSettings, StrictAuthServer
from mcprelay.testing.jwtcheck import sign_jwt
from tests.conftest import Servers, log_events

pytestmark = pytest.mark.anyio


def server_cfg(servers: Servers, **oauth: Any) -> Any:
    return parse_config({"mcpServers": {"m2m": {"url": servers.mcp_url, "oauth": oauth}}}).config.server("m2m")


async def machine_login(cfg: Any, store: MemoryStore) -> Any:
    async with new_http_client() as http:
        return await login(cfg, store, http, LoginOptions(notify=lambda _m: None))


async def call_echo(cfg: Any, store: MemoryStore, home: Path, text: str = "hi") -> str:
    async with new_http_client() as http, open_upstream(cfg, store=store, http=http, home=home) as (client, _):
        result = await client.call_tool("echo", {"text": text})
    return str(result.content[0].text)  # type: ignore[union-attr]


async def expire_and_renew_concurrently(cfg: Any, store: MemoryStore, home: Path, servers: Servers, n: int) -> set[str]:
    servers.auth.expire_access_tokens()
    grant = load_grant(store, "m2m")
    assert grant is not None
    grant.tokens.expires_at = time.time() - 1
    store.put("tokens/m2m", grant.to_dict())
    tokens: set[str] = set()
    async with new_http_client() as http:
        manager = token_manager(cfg, store, http, home)

        async def one() -> None:
            tokens.add(await manager.access_token())

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return tokens


async def test_client_credentials_with_client_secret_basic_and_reacquire_in_one_flight(
    strict_servers: Callable[..., Servers], home: Path
) -> None:
    servers = strict_servers()
    servers.auth.add_client("svc", secret="s3cret", grant_types=["client_credentials"])
    cfg = server_cfg(servers, grant="client_credentials", client_id="svc", client_secret="s3cret")
    store = MemoryStore()
    outcome = await machine_login(cfg, store)
    assert outcome.grant is not None and outcome.grant.tokens.refresh_token is None
    assert servers.auth.counters.grants["client_credentials"] == 1
    assert servers.auth.counters.authorize_requests == 0  # no browser, no authorization request
    assert await call_echo(cfg, store, home) == "hi"
    # The token comes due: 20 callers, one new client_credentials request (no refresh token to use).
    tokens = await expire_and_renew_concurrently(cfg, store, home, servers, 20)
    assert len(tokens) == 1
    assert servers.auth.counters.grants["client_credentials"] == 2
    assert [e for e in log_events(home) if e["event"] == "reacquired"]


async def test_client_credentials_with_private_key_jwt_es256_from_a_file(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers()
    key = ECKey.generate_key("P-256")
    servers.auth.add_client("svc-jwt", jwk=dict(key.as_dict(private=False)), grant_types=["client_credentials"])
    pem = tmp_path / "svc.pem"
    pem.write_bytes(key.as_pem(private=True))
    cfg = server_cfg(servers, grant="client_credentials", client_id="svc-jwt", private_key_file=str(pem))
    store = MemoryStore()
    await machine_login(cfg, store)
    form = servers.auth.token_forms[-1]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form
    assert await call_echo(cfg, store, home) == "hi"
    # A second acquisition signs a new assertion (a replayed jti would be refused by the server).
    assert len(await expire_and_renew_concurrently(cfg, store, home, servers, 5)) == 1
    assert servers.auth.counters.grants["client_credentials"] == 2


async def test_client_credentials_with_private_key_jwt_rs256_from_the_environment(
    strict_servers: Callable[..., Servers], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = strict_servers()
    key = RSAKey.generate_key(2048)
    servers.auth.add_client("svc-rsa", jwk=dict(key.as_dict(private=False)), grant_types=["client_credentials"])
    monkeypatch.setenv("SVC_RSA_KEY", key.as_pem(private=True).decode())
    cfg = server_cfg(servers, grant="client_credentials", client_id="svc-rsa", private_key_env="SVC_RSA_KEY")
    outcome = await machine_login(cfg, MemoryStore())
    assert outcome.grant is not None
    from mcprelay.testing.jwtcheck import unverified_header

    assert unverified_header(servers.auth.token_forms[-1]["client_assertion"])["alg"] == "RS256"


async def test_client_credentials_with_a_wrong_key_is_a_clear_invalid_client(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers = strict_servers()
    servers.auth.add_client("svc-jwt", jwk=dict(ECKey.generate_key("P-256").as_dict(private=False)),
                            grant_types=["client_credentials"])
    pem = tmp_path / "other.pem"
    pem.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    cfg = server_cfg(servers, grant="client_credentials", client_id="svc-jwt", private_key_file=str(pem))
    with pytest.raises(McpRelayError) as caught:
        await machine_login(cfg, MemoryStore())
    assert caught.value.error_type == ErrorType.CODE_FLOW_FAILED
    assert "invalid_client" in caught.value.message and "client_credentials" in caught.value.message


def test_grant_config_names_what_is_missing() -> None:
    with pytest.raises(McpRelayError) as caught:
        parse_config({"mcpServers": {"x": {"url": "https://x.example/mcp", "oauth": {"grant": "client_credentials",
                                                                                        "client_id": "a"}}}})
    assert "client_secret or a private key" in caught.value.message
    with pytest.raises(McpRelayError) as caught:
        parse_config({"mcpServers": {"x": {"url": "https://x.example/mcp", "oauth": {"grant": "jwt_bearer"}}}})
    assert "assertion_file or oauth.assertion_env" in caught.value.message


def workload_servers(strict_servers: Callable[..., Servers], **settings: Any) -> tuple[Servers, ECKey, str]:
    platform_key = ECKey.generate_key("P-256")
    platform = "https://workloads.example"
    servers = strict_servers(trusted_issuers={platform: dict(platform_key.as_dict(private=False))}, **settings)
    servers.auth.add_client("workload", grant_types=[JWT_BEARER])  # public: the assertion is the credential
    return servers, platform_key, platform


def workload_token(key: ECKey, issuer: str, audience: str, *, ttl: int = 300, subject: str = "ns/app") -> str:
    now = int(time.time())
    return sign_jwt(key, {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl,
                          "jti": f"{subject}-{now}-{ttl}-{time.monotonic_ns()}"})


async def test_workload_identity_rereads_the_rotated_token_at_each_acquisition(
    strict_servers: Callable[..., Servers], home: Path, tmp_path: Path
) -> None:
    servers, key, platform = workload_servers(strict_servers)
    token_file = tmp_path / "token"
    token_file.write_text(workload_token(key, platform, servers.auth.issuer, subject="first"))
    cfg = server_cfg(servers, grant="jwt_bearer", client_id="workload", assertion_file=str(token_file))
    store = MemoryStore()
    await machine_login(cfg, store)
    first = servers.auth.token_forms[-1]["assertion"]
    assert await call_echo(cfg, store, home) == "hi"
    # The platform rotates the projected token on disk; the next acquisition presents the new one.
    token_file.write_text(workload_token(key, platform, servers.auth.issuer, subject="second"))
    assert len(await expire_and_renew_concurrently(cfg, store, home, servers, 10)) == 1
    second = servers.auth.token_forms[-1]["assertion"]
    assert second != first and second == token_file.read_text()
    assert servers.auth.counters.grants[JWT_BEARER] == 2


async def test_workload_identity_expired_token_and_refused_scope_are_clear(
    strict_servers: Callable[..., Servers], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers, key, platform = workload_servers(strict_servers, forbidden_scopes=["mcp:tools"])
    monkeypatch.setenv("WORKLOAD_TOKEN", workload_token(key, platform, servers.auth.issuer, ttl=-60))
    cfg = server_cfg(servers, grant="jwt_bearer", client_id="workload", assertion_env="WORKLOAD_TOKEN")
    with pytest.raises(McpRelayError) as caught:
        await machine_login(cfg, MemoryStore())
    assert "invalid_grant" in caught.value.message and "oauth.assertion_env WORKLOAD_TOKEN" in caught.value.message
    assert "expired" in caught.value.message and "check what writes" in caught.value.suggestion
    requests = sum(n for (g, _s), n in servers.auth.counters.token_requests.items() if g == JWT_BEARER)
    assert requests == 1  # refused once, not retried, no other grant tried

    monkeypatch.setenv("WORKLOAD_TOKEN", workload_token(key, platform, servers.auth.issuer))
    cfg = server_cfg(servers, grant="jwt_bearer", client_id="workload", assertion_env="WORKLOAD_TOKEN",
                     scopes=["mcp:tools"])
    with pytest.raises(McpRelayError) as caught:
        await machine_login(cfg, MemoryStore())
    assert "invalid_scope" in caught.value.message and "mcp:tools" in caught.value.message
    assert "oauth.scopes" in caught.value.suggestion


def start_idp(started: list[ThreadedServer], target_issuer: str, client_at_target: str) -> StrictAuthServer:
    idp = StrictAuthServer(AuthServerSettings(idp_client_ids={target_issuer: client_at_target}, dcr_enabled=False))
    server = ThreadedServer(AppFactory(lambda base: idp.app(base))).start()
    started.append(server)
    idp.add_client("mcprelay-at-idp")  # a public client of the IdP
    return idp


async def test_enterprise_managed_authorization_exchanges_the_id_token_then_uses_the_id_jag(
    strict_servers: Callable[..., Servers], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[ThreadedServer] = []
    try:
        servers = strict_servers()
        idp = start_idp(started, servers.auth.issuer, "mcp-client")
        servers.auth.settings.trusted_issuers[idp.issuer] = idp.public_jwk
        servers.auth.add_client("mcp-client", secret="xaa-secret", grant_types=[JWT_BEARER])
        monkeypatch.setenv("ID_TOKEN", idp.issue_id_token("alice@example.com", "mcprelay-at-idp"))
        oauth = {"grant": "token_exchange", "client_id": "mcp-client", "client_secret": "xaa-secret",
                 "idp_token_endpoint": idp.endpoint("token"), "idp_client_id": "mcprelay-at-idp",
                 "id_token_env": "ID_TOKEN"}
        cfg = server_cfg(servers, **oauth)
        store = MemoryStore()
        await machine_login(cfg, store)
        assert idp.counters.grants["urn:ietf:params:oauth:grant-type:token-exchange"] == 1
        assert servers.auth.counters.grants[JWT_BEARER] == 1
        assert await call_echo(cfg, store, home) == "hi"
        # Due again: both legs again, once.
        assert len(await expire_and_renew_concurrently(cfg, store, home, servers, 10)) == 1
        assert idp.counters.grants["urn:ietf:params:oauth:grant-type:token-exchange"] == 2

        # Leg 1 refused (an ID token for another client): the error names the leg.
        monkeypatch.setenv("ID_TOKEN", idp.issue_id_token("alice@example.com", "someone-else"))
        with pytest.raises(McpRelayError) as caught:
            await machine_login(cfg, MemoryStore())
        assert caught.value.message.startswith("step 1 of 2 (token exchange")
        assert caught.value.details["leg"] == "idp_token_exchange"

        # Leg 2 refused (the wrong client secret at the MCP server's authorization server).
        monkeypatch.setenv("ID_TOKEN", idp.issue_id_token("alice@example.com", "mcprelay-at-idp"))
        with pytest.raises(McpRelayError) as caught:
            await machine_login(server_cfg(servers, **{**oauth, "client_secret": "wrong"}), MemoryStore())
        assert caught.value.message.startswith("step 2 of 2 (the ID-JAG as a JWT-bearer grant")
        assert caught.value.details["leg"] == "authorization_server_jwt_bearer"
        assert "invalid_client" in caught.value.message
    finally:
        for server in started:
            server.stop()
