"""The bundled strict authorization server and protected MCP server, driven over real sockets."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import pytest

from mcprelay.testing.asgi import AppFactory, ThreadedServer
from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
from mcprelay.testing.mcpserver import build_app, build_open_app
from mcprelay.transport import open_session

pytestmark = pytest.mark.integration


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


NATIVE_REDIRECT = "http://127.0.0.1:43210/callback"


@dataclass
class Env:
    auth: StrictAuthServer
    base: str

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def resource(self) -> str:
        """What the authorization server binds tokens to (``<base>/mcp`` unless configured otherwise)."""
        return self.auth.expected_resource


@pytest.fixture
def start() -> Iterator[Callable[..., Env]]:
    servers: list[ThreadedServer] = []

    def run(**settings: Any) -> Env:
        auth = StrictAuthServer(AuthServerSettings(**settings))
        server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth))).start()
        servers.append(server)
        return Env(auth, server.url)

    yield run
    for server in servers:
        server.stop()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(env: Env, **body: Any) -> dict[str, Any]:
    payload = {
        "redirect_uris": [NATIVE_REDIRECT],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        **body,
    }
    response = httpx2.post(f"{env.base}/register", json=payload)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def authorize(env: Env, client_id: str, challenge: str | None, **params: Any) -> httpx2.Response:
    query: dict[str, Any] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": NATIVE_REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
        "resource": env.resource,
        "scope": "mcp:read mcp:tools offline_access",
        **params,
    }
    query = {k: v for k, v in query.items() if v is not None}
    return httpx2.get(f"{env.base}/authorize?{urlencode(query)}", follow_redirects=False)


def redirect_params(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def token(env: Env, form: dict[str, Any], **kwargs: Any) -> httpx2.Response:
    return httpx2.post(f"{env.base}/token", data={k: v for k, v in form.items() if v is not None}, **kwargs)


def login(env: Env, client: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register (unless given), authorize and exchange the code; returns (client, token response)."""
    client = client or register(env)
    verifier, challenge = pkce()
    code = redirect_params(authorize(env, client["client_id"], challenge))["code"]
    response = token(
        env,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": NATIVE_REDIRECT,
            "code_verifier": verifier,
            "client_id": client["client_id"],
            "resource": env.resource,
        },
    )
    assert response.status_code == 200, response.text
    return client, response.json()


def refresh(env: Env, client_id: str, refresh_token: str, **extra: Any) -> httpx2.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
    return token(env, form)


class Bearer(httpx2.Auth):
    def __init__(self, access_token: str) -> None:
        self.access_token = access_token

    def auth_flow(self, request: httpx2.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.access_token}"
        yield request


def initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# ----------------------------------------------------------------------------------- metadata


def test_metadata_documents(start: Callable[..., Env]) -> None:
    env = start()
    asm = httpx2.get(f"{env.base}/.well-known/oauth-authorization-server").json()
    assert asm["issuer"] == env.base
    assert asm["authorization_endpoint"] == f"{env.base}/authorize"
    assert asm["token_endpoint"] == f"{env.base}/token"
    assert asm["registration_endpoint"] == f"{env.base}/register"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["response_types_supported"] == ["code"]
    assert asm["authorization_response_iss_parameter_supported"] is True
    assert set(asm["token_endpoint_auth_methods_supported"]) == {
        "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
    }
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        prm = httpx2.get(env.base + path).json()
        assert prm["resource"] == env.resource
        assert prm["authorization_servers"] == [env.base]
        assert "mcp:tools" in prm["scopes_supported"]


def test_metadata_knobs_and_issuer_path(start: Callable[..., Env]) -> None:
    env = start(pkce_methods=None, dcr_enabled=False, advertise_iss=False, cimd_supported=True, issuer_path="/tenant1")
    assert httpx2.get(f"{env.base}/.well-known/oauth-authorization-server").status_code == 404
    asm = httpx2.get(f"{env.base}/.well-known/oauth-authorization-server/tenant1").json()
    assert asm["issuer"] == f"{env.base}/tenant1"
    assert asm["token_endpoint"] == f"{env.base}/tenant1/token"
    assert "code_challenge_methods_supported" not in asm
    assert "registration_endpoint" not in asm
    assert asm["authorization_response_iss_parameter_supported"] is False
    assert asm["client_id_metadata_document_supported"] is True
    assert httpx2.post(f"{env.base}/tenant1/register", json={}).status_code in (404, 405)
    prm = httpx2.get(f"{env.base}/.well-known/oauth-protected-resource/mcp").json()
    assert prm["authorization_servers"] == [f"{env.base}/tenant1"]


# ----------------------------------------------------------------------------------- registration


def test_registration_validates_metadata(start: Callable[..., Env]) -> None:
    env = start()
    bad = [
        ({"redirect_uris": ["http://example.com/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": [NATIVE_REDIRECT], "application_type": "desktop"}, "invalid_client_metadata"),
        (
            {"redirect_uris": [NATIVE_REDIRECT], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
    ]
    for body, error in bad:
        response = httpx2.post(f"{env.base}/register", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"] == error
    public = register(env)
    assert "client_secret" not in public and public["client_id_issued_at"] > 0
    confidential = register(env, token_endpoint_auth_method="client_secret_post", application_type="web")
    assert confidential["client_secret"] and confidential["client_secret_expires_at"] == 0
    assert env.auth.counters.registrations == 2


# ----------------------------------------------------------------------------------- authorization


def test_native_client_any_loopback_port_web_client_exact(start: Callable[..., Env]) -> None:
    env = start()
    native = register(env)
    _, challenge = pkce()
    params = redirect_params(
        authorize(env, native["client_id"], challenge, redirect_uri="http://127.0.0.1:5555/callback")
    )
    assert params["code"] and params["state"] == "st-1" and params["iss"] == env.base
    # The path still has to match, and so does the host.
    for uri in ("http://127.0.0.1:5555/other", "http://localhost:43210/callback", "https://127.0.0.1:43210/callback"):
        response = authorize(env, native["client_id"], challenge, redirect_uri=uri)
        assert response.status_code == 400 and "location" not in response.headers

    web = register(env, application_type="web", redirect_uris=["http://127.0.0.1:7000/cb"])
    ok = authorize(env, web["client_id"], challenge, redirect_uri="http://127.0.0.1:7000/cb")
    assert redirect_params(ok)["code"]
    refused = authorize(env, web["client_id"], challenge, redirect_uri="http://127.0.0.1:7001/cb")
    assert refused.status_code == 400 and "location" not in refused.headers
    unknown = authorize(env, "nobody", challenge)
    assert unknown.status_code == 400
    assert env.auth.counters.authorize_requests == 7


def test_pkce_required_and_plain_refused(start: Callable[..., Env]) -> None:
    env = start()
    client = register(env)
    missing = redirect_params(authorize(env, client["client_id"], None))
    assert missing["error"] == "invalid_request" and missing["state"] == "st-1" and missing["iss"] == env.base
    verifier, _ = pkce()
    plain = redirect_params(authorize(env, client["client_id"], verifier, code_challenge_method="plain"))
    assert plain["error"] == "invalid_request"
    no_method = redirect_params(authorize(env, client["client_id"], verifier, code_challenge_method=None))
    assert no_method["error"] == "invalid_request"


def test_resource_scope_and_deny(start: Callable[..., Env]) -> None:
    env = start()
    client = register(env)
    _, challenge = pkce()
    assert redirect_params(authorize(env, client["client_id"], challenge, resource=None))["error"] == "invalid_target"
    wrong = authorize(env, client["client_id"], challenge, resource=f"{env.base}/other")
    assert redirect_params(wrong)["error"] == "invalid_target"
    bad_scope = authorize(env, client["client_id"], challenge, scope="mcp:read admin")
    assert redirect_params(bad_scope)["error"] == "invalid_scope"
    env.auth.settings.deny = True
    assert redirect_params(authorize(env, client["client_id"], challenge))["error"] == "access_denied"


# ----------------------------------------------------------------------------------- token endpoint


def test_code_exchange_is_strict_and_single_use(start: Callable[..., Env]) -> None:
    env = start()
    client = register(env)
    verifier, challenge = pkce()
    code = redirect_params(authorize(env, client["client_id"], challenge))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": NATIVE_REDIRECT,
        "code_verifier": verifier,
        "client_id": client["client_id"],
        "resource": env.resource,
    }
    for change, error in (
        ({"code_verifier": pkce()[0]}, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:1/callback"}, "invalid_grant"),
        ({"resource": f"{env.base}/other"}, "invalid_target"),
        ({"resource": None}, "invalid_target"),
    ):
        response = token(env, {**form, **change})
        assert response.status_code == 400 and response.json()["error"] == error, change
    first = token(env, form)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    assert body["scope"] == "mcp:read mcp:tools offline_access"
    assert env.auth.introspect(body["access_token"])["aud"] == env.resource  # type: ignore[index]

    again = token(env, form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # Replaying the code revoked what it had produced.
    assert env.auth.introspect(body["access_token"]) == {"active": False}
    assert refresh(env, client["client_id"], body["refresh_token"]).json()["error"] == "invalid_grant"
    assert env.auth.counters.reused_codes == 1
    assert env.auth.counters.token_requests[("authorization_code", 200)] == 1


def test_client_authentication_methods(start: Callable[..., Env]) -> None:
    env = start()
    basic = register(env, token_endpoint_auth_method="client_secret_basic")
    post = register(env, token_endpoint_auth_method="client_secret_post")
    cases: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
        (basic, {"auth": (basic["client_id"], basic["client_secret"])}, {"auth": (basic["client_id"], "wrong")}),
        (post, {"extra": {"client_secret": post["client_secret"]}}, {"extra": {}}),
    ]
    for client, good, bad in cases:
        for kwargs, status in ((bad, 401), (good, 200)):
            verifier, challenge = pkce()
            code = redirect_params(authorize(env, client["client_id"], challenge))["code"]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": NATIVE_REDIRECT,
                "code_verifier": verifier,
                "client_id": client["client_id"],
                "resource": env.resource,
                **kwargs.get("extra", {}),
            }
            response = token(env, form, auth=kwargs.get("auth"))
            assert response.status_code == status, (client["token_endpoint_auth_method"], response.text)
            if status == 401:
                assert response.json()["error"] == "invalid_client"


def test_refresh_rotation_and_reuse_revokes_the_grant(start: Callable[..., Env]) -> None:
    env = start()
    client, first = login(env)
    cid = client["client_id"]
    second = refresh(env, cid, first["refresh_token"], resource=env.resource)
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    narrowed = refresh(env, cid, rotated["refresh_token"], scope="mcp:read")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "mcp:read"
    latest = narrowed.json()
    assert refresh(env, cid, latest["refresh_token"], scope="mcp:admin").json()["error"] == "invalid_scope"
    bad_resource = refresh(env, cid, latest["refresh_token"], resource=f"{env.base}/x")
    assert bad_resource.json()["error"] == "invalid_target"
    assert env.auth.counters.grants_revoked == 0

    reuse = refresh(env, cid, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert env.auth.counters.grants_revoked == 1
    assert env.auth.counters.reused_refresh_tokens == 1
    # The whole chain is gone: the newest refresh token and every access token of the grant.
    assert refresh(env, cid, latest["refresh_token"]).json()["error"] == "invalid_grant"
    for tokens in (first, rotated, latest):
        assert env.auth.introspect(tokens["access_token"]) == {"active": False}
    assert env.auth.counters.refresh_total == 6
    assert env.auth.counters.grants_revoked == 1


def test_expired_refresh_token(start: Callable[..., Env]) -> None:
    env = start(refresh_token_ttl=0.2, access_token_ttl=0.5)
    client, first = login(env)
    assert first["expires_in"] == 0.5
    import time

    time.sleep(0.3)
    response = refresh(env, client["client_id"], first["refresh_token"])
    assert response.json()["error"] == "invalid_grant"
    assert env.auth.counters.grants_revoked == 0


def test_fault_knobs_503_429_and_delay(start: Callable[..., Env]) -> None:
    env = start()
    client, first = login(env)
    env.auth.settings.token_fail_next = 1
    failed = refresh(env, client["client_id"], first["refresh_token"])
    assert failed.status_code == 503
    env.auth.settings.rate_limit_next = 1
    limited = refresh(env, client["client_id"], first["refresh_token"])
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    # Neither consumed the refresh token.
    ok = refresh(env, client["client_id"], first["refresh_token"])
    assert ok.status_code == 200
    counts = env.auth.counters.token_requests
    assert counts[("refresh_token", 503)] == 1 and counts[("refresh_token", 429)] == 1
    assert counts[("refresh_token", 200)] == 1

    env.auth.settings.token_delay = 0.5
    env.auth.counters.token_in_flight_peak = 0
    latest = ok.json()["refresh_token"]
    results: list[int] = []

    def one() -> None:
        results.append(refresh(env, client["client_id"], latest).status_code)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # All three waited inside the endpoint at once; exactly one rotated, the others were reuse.
    assert env.auth.counters.token_in_flight_peak == 3
    assert sorted(results) == [200, 400, 400]
    assert env.auth.counters.grants_revoked == 1


def test_drop_after_commit(start: Callable[..., Env]) -> None:
    env = start()
    client, first = login(env)
    env.auth.settings.token_drop_after_commit = 1
    with pytest.raises(httpx2.TransportError):
        refresh(env, client["client_id"], first["refresh_token"])
    assert env.auth.settings.token_drop_after_commit == 0
    assert env.auth.counters.token_requests[("refresh_token", 0)] == 1
    # The rotation was committed: retrying with the old token is reuse, and revokes the grant.
    retry = refresh(env, client["client_id"], first["refresh_token"])
    assert retry.json()["error"] == "invalid_grant"
    assert env.auth.counters.grants_revoked == 1


def test_revocation_endpoint(start: Callable[..., Env]) -> None:
    env = start()
    client, first = login(env)
    response = httpx2.post(
        f"{env.base}/revoke", data={"token": first["refresh_token"], "client_id": client["client_id"]}
    )
    assert response.status_code == 200
    assert env.auth.introspect(first["access_token"]) == {"active": False}
    assert env.auth.counters.revocations == 1 and env.auth.counters.grants_revoked == 0


def test_preregistered_client_and_expire_helper(start: Callable[..., Env]) -> None:
    env = start()
    env.auth.add_client("pre", secret="s3cret", redirect_uris=["http://127.0.0.1/callback"], application_type="native")
    verifier, challenge = pkce()
    code = redirect_params(authorize(env, "pre", challenge))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": NATIVE_REDIRECT,
        "code_verifier": verifier,
        "resource": env.resource,
    }
    response = token(env, form, auth=("pre", "s3cret"))
    assert response.status_code == 200, response.text
    access = response.json()["access_token"]
    info = env.auth.introspect(access)
    assert info is not None and info["active"] and info["client_id"] == "pre"
    assert env.auth.expire_access_tokens() == 1
    assert env.auth.introspect(access) == {"active": False}
    assert env.auth.introspect("never-issued") is None


# ----------------------------------------------------------------------------------- the MCP server


def test_mcp_without_token_gets_a_bearer_challenge(start: Callable[..., Env]) -> None:
    env = start()
    response = httpx2.post(env.mcp_url, json=initialize_body(), headers=MCP_HEADERS)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{env.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="mcp:read mcp:tools"' in challenge
    assert "error=" not in challenge

    junk = httpx2.post(env.mcp_url, json=initialize_body(), headers={**MCP_HEADERS, "Authorization": "Bearer junk"})
    assert junk.status_code == 401 and 'error="invalid_token"' in junk.headers["www-authenticate"]


def test_mcp_refuses_expired_and_foreign_audience_tokens(start: Callable[..., Env]) -> None:
    # This authorization server issues tokens for another resource than the MCP server it sits with.
    foreign_env = start(resource="https://elsewhere.example/mcp")
    _, foreign = login(foreign_env)
    assert foreign_env.auth.introspect(foreign["access_token"])["active"]  # type: ignore[index]
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {foreign['access_token']}"}
    response = httpx2.post(foreign_env.mcp_url, json=initialize_body(), headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]

    env = start()
    _, mine = login(env)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {mine['access_token']}"}
    assert httpx2.post(env.mcp_url, json=initialize_body(), headers=headers).status_code == 200
    env.auth.expire_access_tokens()
    assert httpx2.post(env.mcp_url, json=initialize_body(), headers=headers).status_code == 401


def test_mcp_insufficient_scope() -> None:
    auth = StrictAuthServer(AuthServerSettings())
    server = ThreadedServer(AppFactory(lambda base: build_app(base, auth=auth, required_scopes=["mcp:tools"]))).start()
    try:
        env = Env(auth, server.url)
        client = register(env)
        verifier, challenge = pkce()
        code = redirect_params(authorize(env, client["client_id"], challenge, scope="mcp:read"))["code"]
        body = token(
            env,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": NATIVE_REDIRECT,
                "code_verifier": verifier,
                "client_id": client["client_id"],
                "resource": env.resource,
            },
        ).json()
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {body['access_token']}"}
        response = httpx2.post(env.mcp_url, json=initialize_body(), headers=headers)
        assert response.status_code == 403
        challenge_header = response.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge_header and "mcp:tools" in challenge_header
    finally:
        server.stop()


@pytest.mark.anyio
async def test_tools_work_with_a_valid_token(start: Callable[..., Env]) -> None:
    env = start()
    client, tokens = login(env)
    async with open_session(env.mcp_url, auth=Bearer(tokens["access_token"])) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"echo", "sleep", "whoami", "add"} <= names
        echoed = await session.call_tool("echo", {"text": "hi"})
        assert echoed.content[0].text == "hi"  # type: ignore[union-attr]
        added = await session.call_tool("add", {"a": 2, "b": 3})
        assert added.structured_content == {"result": 5}
        who = await session.call_tool("whoami", {})
        assert who.structured_content is not None
        assert who.structured_content["client_id"] == client["client_id"]
        assert "mcp:tools" in who.structured_content["scopes"]


@pytest.mark.anyio
async def test_concurrent_tool_calls_on_one_session_run_in_parallel(start: Callable[..., Env]) -> None:
    env = start()
    _, tokens = login(env)
    async with open_session(env.mcp_url, auth=Bearer(tokens["access_token"])) as session:
        results: list[str] = []

        async def one() -> None:
            result = await session.call_tool("sleep", {"seconds": 1.0})
            results.append(result.content[0].text)  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert results == ["slept"] * 10
    assert env.auth.counters.tool_in_flight_peak == 10
    assert env.auth.counters.tool_in_flight == 0


@pytest.mark.anyio
async def test_open_app_needs_no_token() -> None:
    server = ThreadedServer(AppFactory(build_open_app)).start()
    try:
        async with open_session(f"{server.url}/mcp") as session:
            result = await session.call_tool("add", {"a": 40, "b": 2})
            assert result.structured_content == {"result": 42}
            who = await session.call_tool("whoami", {})
            assert who.structured_content == {"client_id": None, "scopes": []}
        assert server.app.state.counters.tool_in_flight_peak == 0
    finally:
        server.stop()


def test_client_id_metadata_document(start: Callable[..., Env]) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def document_app(base: str) -> Starlette:
        async def doc(request: Request) -> JSONResponse:
            return JSONResponse(
                {"client_id": f"{base}/client.json", "redirect_uris": [NATIVE_REDIRECT], "client_name": "cimd"}
            )

        return Starlette(routes=[Route("/client.json", doc)])

    host = ThreadedServer(AppFactory(document_app)).start()
    try:
        env = start(cimd_supported=True)
        _, tokens = login(env, {"client_id": f"{host.url}/client.json"})
        info = env.auth.introspect(tokens["access_token"])
        assert info is not None and info["client_id"] == f"{host.url}/client.json"
        assert env.auth.counters.registrations == 0
        # Without CIMD support the same client_id is unknown.
        plain = start()
        assert authorize(plain, f"{host.url}/client.json", pkce()[1]).status_code == 400
    finally:
        host.stop()
