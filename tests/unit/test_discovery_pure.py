"""The URL rules of discovery and the scope choice, without any network."""

import pytest

from mcprelay.oauth.discovery import DiscoveryResult, select_scope
from mcprelay.oauth.rfc6750 import Challenge
from mcprelay.oauth.rfc8414 import AuthorizationServerMetadata, is_loopback_host, legacy_metadata, metadata_urls
from mcprelay.oauth.rfc9728 import ProtectedResourceMetadata, canonical_resource, origin, prm_urls, resource_matches


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("HTTPS://MCP.Example.COM/MCP", "https://mcp.example.com/MCP"),
        ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("http://mcp.example.com:80/a", "http://mcp.example.com/a"),
        ("https://mcp.example.com:8443/a#frag", "https://mcp.example.com:8443/a"),
        ("https://mcp.example.com/a?key=secret", "https://mcp.example.com/a"),
        ("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"),
    ],
)
def test_canonical_resource(url: str, canonical: str) -> None:
    assert canonical_resource(url) == canonical


@pytest.mark.parametrize("bad", ["ftp://x/y", "not a url", "https://", "https://h:99999/"])
def test_canonical_resource_rejects_non_http_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        canonical_resource(bad)


@pytest.mark.parametrize(
    ("advertised", "server", "ok"),
    [
        ("https://h/mcp", "https://h/mcp", True),
        ("https://h/mcp/", "https://h/mcp", True),
        ("https://h/mcp", "https://h/mcp/", True),
        ("https://h", "https://h/mcp", True),
        ("https://h/", "https://h/mcp/deep", True),
        ("https://H:443/mcp", "https://h/mcp/v2", True),
        ("https://h/mcp", "https://h/mcpx", False),
        ("https://h/mcp/v2", "https://h/mcp", False),
        ("https://other/mcp", "https://h/mcp", False),
        ("http://h/mcp", "https://h/mcp", False),
        ("https://h:8443/mcp", "https://h/mcp", False),
        ("https://h/MCP", "https://h/mcp", False),
        ("garbage", "https://h/mcp", False),
        ("", "https://h/mcp", False),
    ],
)
def test_resource_matches(advertised: str, server: str, ok: bool) -> None:
    assert resource_matches(advertised, server) is ok


def test_prm_urls() -> None:
    wk = "/.well-known/oauth-protected-resource"
    assert prm_urls("https://h/public/mcp") == [f"https://h{wk}/public/mcp", f"https://h{wk}"]
    assert prm_urls("https://h/mcp/", "https://meta/x") == ["https://meta/x", f"https://h{wk}/mcp", f"https://h{wk}"]
    assert prm_urls("https://h") == [f"https://h{wk}"]
    assert prm_urls("https://h/", f"https://h{wk}") == [f"https://h{wk}"]


def test_metadata_urls() -> None:
    assert metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://auth.example.com/a/b/") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/a/b",
        "https://auth.example.com/.well-known/openid-configuration/a/b",
        "https://auth.example.com/a/b/.well-known/openid-configuration",
    ]
    for issuer in ("https://auth.example.com", "https://auth.example.com/"):
        assert metadata_urls(issuer) == [
            "https://auth.example.com/.well-known/oauth-authorization-server",
            "https://auth.example.com/.well-known/openid-configuration",
        ]


def test_origin_and_loopback() -> None:
    assert origin("HTTPS://Host:443/x?y") == "https://host"
    assert origin("http://127.0.0.1:8080/mcp") == "http://127.0.0.1:8080"
    assert all(is_loopback_host(h) for h in ("localhost", "LOCALHOST", "127.0.0.1", "127.8.0.1", "::1"))
    assert not any(is_loopback_host(h) for h in (None, "", "example.com", "10.0.0.1", "localhost.evil.com"))


def test_legacy_metadata() -> None:
    m = legacy_metadata("https://Mcp.Example.com:443/v1/mcp")
    assert m.issuer == "https://mcp.example.com"
    assert m.authorization_endpoint == "https://mcp.example.com/authorize"
    assert m.token_endpoint == "https://mcp.example.com/token"
    assert m.registration_endpoint == "https://mcp.example.com/register"
    assert m.code_challenge_methods_supported == ["S256"]


def _result(
    *, challenge_scope: str | None = None, prm_scopes: list[str] | None = None, as_scopes: list[str] | None = None
) -> DiscoveryResult:
    metadata = AuthorizationServerMetadata(
        issuer="https://as", authorization_endpoint="https://as/a", token_endpoint="https://as/t",
        scopes_supported=as_scopes, code_challenge_methods_supported=["S256"],
    )
    prm = ProtectedResourceMetadata(resource="https://h/mcp", authorization_servers=["https://as"],
                                    scopes_supported=prm_scopes)
    challenge = Challenge("bearer", {"scope": challenge_scope} if challenge_scope is not None else {})
    return DiscoveryResult("https://h/mcp", "https://h/mcp", prm, metadata, challenge, legacy=False)


def test_select_scope_precedence() -> None:
    full = _result(challenge_scope="c1 c2", prm_scopes=["p1", "p2"])
    assert select_scope(full, ["x", "y z"]) == "x y z"
    assert select_scope(full, None) == "c1 c2"
    assert select_scope(full, []) == "c1 c2"
    assert select_scope(_result(prm_scopes=["p1", "p2"]), None) == "p1 p2"
    assert select_scope(_result(challenge_scope="", prm_scopes=["p1"]), None) == "p1"
    assert select_scope(_result(), None) is None


def test_select_scope_adds_offline_access_only_when_offered() -> None:
    offered = ["p1", "offline_access"]
    assert select_scope(_result(prm_scopes=["p1"], as_scopes=offered), None) == "p1 offline_access"
    assert select_scope(_result(prm_scopes=["p1"], as_scopes=["p1"]), None) == "p1"
    assert select_scope(_result(prm_scopes=["p1"]), None) == "p1"
    assert select_scope(_result(challenge_scope="offline_access p1", as_scopes=offered), None) == "offline_access p1"
    assert select_scope(_result(as_scopes=offered), ["repo"]) == "repo offline_access"
    # Nothing requested: the server's default grant stays untouched.
    assert select_scope(_result(as_scopes=offered), None) is None
