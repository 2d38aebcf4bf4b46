"""Discovery against real HTTP servers on 127.0.0.1: every variant of where metadata lives, and the
documents that must stop a login before any authorization request is made."""

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.discovery import DiscoveryResult, discover, probe
from mcprelay.oauth.rfc6750 import Challenge
from mcprelay.oauth.rfc9728 import fetch_protected_resource_metadata
from mcprelay.testing.asgi import AppFactory, ThreadedServer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PRM_PATH = "/.well-known/oauth-protected-resource"
AS_PATH = "/.well-known/oauth-authorization-server"
OIDC_PATH = "/.well-known/openid-configuration"

Handler = Callable[[str, Request], Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Site:
    """A server whose routes the test fills in; it records every request it gets."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.hits: list[tuple[str, str]] = []
        self.base = ""

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def json(self, path: str, body: Callable[[str], Any]) -> None:
        self.on("GET", path, lambda base, _request: JSONResponse(body(base)))

    def paths(self, method: str = "GET") -> list[str]:
        return [p for m, p in self.hits if m == method]

    def app(self, base: str) -> Starlette:
        self.base = base

        async def endpoint(request: Request) -> Response:
            path = request.url.path
            self.hits.append((request.method, path))
            await request.body()
            handler = self.routes.get((request.method, path))
            return handler(base, request) if handler else Response("not found", status_code=404)

        methods = ["GET", "POST", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    server = ThreadedServer(AppFactory(s.app)).start()
    try:
        yield s
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with new_http_client(timeout=10) as client:
        yield client


def as_document(base: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/token",
        "registration_endpoint": base + "/register",
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
        "scopes_supported": ["read", "offline_access"],
        "some_extension": {"ignored": True},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def unauthorized(header: str | None) -> Handler:
    def handler(_base: str, _request: Request) -> Response:
        headers = {"WWW-Authenticate": header} if header is not None else {}
        return JSONResponse({"error": "unauthorized"}, status_code=401, headers=headers)

    return handler


def protected(site: Site, *, header: Callable[[str], str] | None = None) -> None:
    """A protected MCP endpoint at /mcp whose challenge the test chooses."""
    site.on("POST", "/mcp", lambda base, req: unauthorized(header(base) if header else "Bearer")(base, req))


async def run_discovery(http: httpx2.AsyncClient, site: Site) -> DiscoveryResult:
    url = site.base + "/mcp"
    challenge = await probe(http, url)
    assert challenge is not None
    return await discover(http, url, challenge=challenge, server="test", correlation_id="cid")


async def expect_failure(http: httpx2.AsyncClient, site: Site, error_type: ErrorType) -> McpRelayError:
    with pytest.raises(McpRelayError) as info:
        await run_discovery(http, site)
    assert info.value.error_type is error_type, info.value.message
    assert info.value.server == "test" and info.value.correlation_id == "cid"
    return info.value


# --- probe -----------------------------------------------------------------------------------------


async def test_probe_of_a_server_without_auth_returns_none_and_ends_its_session(
    site: Site, http: httpx2.AsyncClient
) -> None:
    seen: list[dict[str, Any]] = []

    def initialize(_base: str, request: Request) -> Response:
        seen.append({"accept": request.headers.get("accept"), "version": request.headers.get("mcp-protocol-version")})
        body = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {}}}
        return JSONResponse(body, headers={"Mcp-Session-Id": "sess-1"})

    deleted: list[str | None] = []

    def delete(_base: str, request: Request) -> Response:
        deleted.append(request.headers.get("mcp-session-id"))
        return Response(status_code=204)

    site.on("POST", "/mcp", initialize)
    site.on("DELETE", "/mcp", delete)
    assert await probe(http, site.base + "/mcp") is None
    assert seen == [{"accept": "application/json, text/event-stream", "version": "2025-11-25"}]
    assert deleted == ["sess-1"]


async def test_probe_returns_the_bearer_challenge(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site, header=lambda _: 'Basic realm="x", Bearer scope="read write", resource_metadata="https://m/x"')
    challenge = await probe(http, site.base + "/mcp")
    assert challenge is not None and challenge.scope == "read write"
    assert challenge.resource_metadata == "https://m/x"


async def test_probe_401_without_a_bearer_challenge_gives_an_empty_one(site: Site, http: httpx2.AsyncClient) -> None:
    site.on("POST", "/mcp", unauthorized(None))
    assert await probe(http, site.base + "/mcp") == Challenge("bearer", {})


async def test_probe_of_other_errors_returns_none(site: Site, http: httpx2.AsyncClient) -> None:
    assert await probe(http, site.base + "/nothing-here") is None


async def test_probe_of_an_unreachable_server_is_an_upstream_error(http: httpx2.AsyncClient) -> None:
    server = ThreadedServer(Starlette())  # bound, never started, then closed: nothing listens
    url = server.url + "/mcp"
    server.sock.close()
    with pytest.raises(McpRelayError) as info:
        await probe(http, url)
    assert info.value.error_type is ErrorType.UPSTREAM_ERROR and url in info.value.message
    assert info.value.suggestion


# --- protected resource metadata -------------------------------------------------------------------


def serve_as(site: Site, **overrides: Any) -> None:
    site.json(AS_PATH, lambda base: as_document(base, **overrides))


async def test_prm_via_the_challenge_url(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site, header=lambda base: f'Bearer resource_metadata="{base}/meta/prm", scope="read"')
    site.json("/meta/prm", lambda base: {"resource": base + "/mcp", "authorization_servers": [base]})
    serve_as(site)
    result = await run_discovery(http, site)
    assert result.resource == site.base + "/mcp" and not result.legacy
    assert result.metadata.issuer == site.base
    assert result.metadata.token_endpoint == site.base + "/token"
    assert result.protected_resource is not None and result.challenge is not None
    assert site.paths() == ["/meta/prm", AS_PATH]


async def test_prm_via_path_well_known(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base]})
    serve_as(site)
    result = await run_discovery(http, site)
    assert result.resource == site.base + "/mcp"
    assert site.paths() == [PRM_PATH + "/mcp", AS_PATH]


async def test_prm_via_root_well_known_keeps_the_advertised_resource(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH, lambda base: {"resource": base, "authorization_servers": [base], "scopes_supported": ["r"]})
    serve_as(site)
    result = await run_discovery(http, site)
    assert result.resource == site.base  # advertised, not rebuilt: servers compare it as a string
    assert site.paths() == [PRM_PATH + "/mcp", PRM_PATH, AS_PATH]


async def test_a_broken_header_url_falls_back_to_the_well_knowns(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site, header=lambda base: f"Bearer resource_metadata={base}/gone")
    site.json(PRM_PATH, lambda base: {"resource": base + "/mcp", "authorization_servers": [base]})
    serve_as(site)
    await run_discovery(http, site)
    assert site.paths() == ["/gone", PRM_PATH + "/mcp", PRM_PATH, AS_PATH]


async def test_resource_mismatch_stops_before_any_authorization(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": "https://evil.example.com/mcp",
                                               "authorization_servers": [base]})
    serve_as(site)
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert "https://evil.example.com/mcp" in error.message and site.base + "/mcp" in error.message
    assert error.details["advertised_resource"] == "https://evil.example.com/mcp"
    assert site.paths() == [PRM_PATH + "/mcp"]  # no AS metadata, no /authorize, no /register
    assert site.paths("POST") == ["/mcp"]


async def test_prm_for_a_sibling_path_is_a_mismatch(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mc", "authorization_servers": [base]})
    await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)


async def test_prm_without_authorization_servers(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp"})
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert "authorization_servers" in error.message


# --- authorization server metadata -----------------------------------------------------------------


async def test_issuer_with_a_path_tries_the_three_urls_in_order(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base + "/t1"]})
    site.json("/t1" + OIDC_PATH, lambda base: as_document(base + "/t1"))
    result = await run_discovery(http, site)
    assert result.metadata.issuer == site.base + "/t1"
    assert site.paths() == [PRM_PATH + "/mcp", AS_PATH + "/t1", OIDC_PATH + "/t1", "/t1" + OIDC_PATH]


async def test_issuer_with_a_path_prefers_rfc8414(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base + "/t1"]})
    site.json(AS_PATH + "/t1", lambda base: as_document(base + "/t1"))
    site.json("/t1" + OIDC_PATH, lambda base: as_document(base + "/t1", token_endpoint=base + "/wrong"))
    result = await run_discovery(http, site)
    assert result.metadata.token_endpoint == site.base + "/t1/token"


async def test_authorization_server_without_metadata(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base + "/t1"]})
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert site.base + "/t1" in error.message


def with_prm(site: Site) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base]})


async def test_issuer_mismatch(site: Site, http: httpx2.AsyncClient) -> None:
    with_prm(site)
    serve_as(site, issuer="https://other.example.com")
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert "https://other.example.com" in error.message and repr(site.base) in error.message


async def test_issuer_must_match_exactly(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(PRM_PATH + "/mcp", lambda base: {"resource": base + "/mcp", "authorization_servers": [base + "/t1"]})
    site.json(AS_PATH + "/t1", lambda base: as_document(base + "/t1/"))
    await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)


@pytest.mark.parametrize("methods", [["plain"], None, []])
async def test_without_s256_pkce_is_unsupported(site: Site, http: httpx2.AsyncClient, methods: Any) -> None:
    with_prm(site)
    serve_as(site, code_challenge_methods_supported=methods)  # None: the field is left out
    error = await expect_failure(http, site, ErrorType.PKCE_UNSUPPORTED)
    assert "S256" in error.message and error.suggestion


async def test_plain_http_endpoint_off_loopback_is_rejected(site: Site, http: httpx2.AsyncClient) -> None:
    with_prm(site)
    serve_as(site, token_endpoint="http://tokens.example.com/token")
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert "http://tokens.example.com/token" in error.message and "https" in error.message


async def test_localhost_endpoints_are_allowed_over_http(site: Site, http: httpx2.AsyncClient) -> None:
    with_prm(site)
    serve_as(site, token_endpoint="http://localhost:9/token", revocation_endpoint="http://[::1]:9/revoke")
    result = await run_discovery(http, site)
    assert result.metadata.token_endpoint == "http://localhost:9/token"


# --- hostile documents -----------------------------------------------------------------------------

TWO_MIB = 2 * 1024 * 1024


def huge_json(streamed: bool) -> Handler:
    def handler(base: str, _request: Request) -> Response:
        head = json.dumps({"resource": base + "/mcp", "authorization_servers": [base], "pad": ""})[:-2]
        if not streamed:
            return Response(head + "x" * TWO_MIB + '"}', media_type="application/json")

        async def chunks() -> AsyncIterator[bytes]:
            yield head.encode()
            for _ in range(TWO_MIB // 65536):
                yield b"x" * 65536
            yield b'"}'

        return StreamingResponse(chunks(), media_type="application/json")

    return handler


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_two_mib_document_is_rejected(site: Site, http: httpx2.AsyncClient, streamed: bool) -> None:
    protected(site)
    site.on("GET", PRM_PATH + "/mcp", huge_json(streamed))
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert site.base + PRM_PATH + "/mcp" in error.message and "larger than" in error.message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[1, 2]", "array, not an object"),
        ('"just a string"', "string, not an object"),
        ("null", "not an object"),
        ("{not json", "not valid JSON"),
        ('{"authorization_servers": "x"}', "resource"),
        ('{"resource": 42}', "resource"),
        ("[" * 100000 + "]" * 100000, "not"),
    ],
)
async def test_malformed_prm(site: Site, http: httpx2.AsyncClient, body: str, problem: str) -> None:
    protected(site)
    site.on("GET", PRM_PATH + "/mcp", lambda _b, _r: Response(body, media_type="application/json"))
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert problem in error.message and error.details["url"] == site.base + PRM_PATH + "/mcp"


async def test_malformed_as_metadata(site: Site, http: httpx2.AsyncClient) -> None:
    with_prm(site)
    site.json(AS_PATH, lambda base: {**as_document(base), "token_endpoint": ["not", "a", "string"]})
    error = await expect_failure(http, site, ErrorType.METADATA_DISCOVERY_FAILED)
    assert "token_endpoint" in error.message and AS_PATH in error.message


async def test_html_pages_count_as_absent(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.on("GET", PRM_PATH + "/mcp", lambda _b, _r: Response("<html></html>", media_type="text/html"))
    site.on("GET", PRM_PATH, lambda _b, _r: Response("<html></html>", media_type="text/html"))
    result = await run_discovery(http, site)
    assert result.legacy


# --- servers without protected resource metadata (2025-03-26) --------------------------------------


async def test_legacy_fallback_to_default_endpoints(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    result = await run_discovery(http, site)
    assert result.legacy and result.protected_resource is None
    assert result.resource == site.base + "/mcp"
    m = result.metadata
    assert (m.issuer, m.authorization_endpoint, m.token_endpoint, m.registration_endpoint) == (
        site.base, site.base + "/authorize", site.base + "/token", site.base + "/register"
    )
    assert m.code_challenge_methods_supported == ["S256"]
    assert site.paths() == [PRM_PATH + "/mcp", PRM_PATH, AS_PATH, OIDC_PATH]


async def test_no_prm_but_metadata_on_the_origin(site: Site, http: httpx2.AsyncClient) -> None:
    protected(site)
    site.json(OIDC_PATH, lambda base: as_document(base, token_endpoint=base + "/oauth/token"))
    result = await run_discovery(http, site)
    assert not result.legacy and result.protected_resource is None
    assert result.metadata.token_endpoint == site.base + "/oauth/token"
    assert result.resource == site.base + "/mcp"


async def test_fetch_prm_returns_none_when_nothing_is_published(site: Site, http: httpx2.AsyncClient) -> None:
    found = await fetch_protected_resource_metadata(
        http, site.base + "/a/b", None, server="test", correlation_id="cid"
    )
    assert found is None and site.paths() == [PRM_PATH + "/a/b", PRM_PATH]
