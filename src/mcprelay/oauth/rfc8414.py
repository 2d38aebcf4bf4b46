"""Authorization server metadata (RFC 8414, and OpenID Connect Discovery as a fallback).

Three checks happen here rather than later, so that no browser ever opens for a server that would
fail them: the document names the issuer we asked for (a mix-up defence, RFC 8414 §3.3), its
endpoints use TLS (tokens and codes travel through them), and it offers PKCE with S256 (the MCP
specification requires it and mcprelay never falls back to a plain or absent challenge).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth._documents import fetch_json_object, validate_document
from mcprelay.oauth.rfc9728 import origin

if TYPE_CHECKING:
    import httpx2

OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
_WHAT = "authorization server metadata"


class AuthorizationServerMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    issuer: str
    # RFC 8414 §2: required unless no grant type that uses it is supported (client credentials only).
    authorization_endpoint: str = ""
    token_endpoint: str
    registration_endpoint: str | None = None
    scopes_supported: list[str] | None = None
    response_types_supported: list[str] | None = None
    grant_types_supported: list[str] | None = None
    token_endpoint_auth_methods_supported: list[str] | None = None
    code_challenge_methods_supported: list[str] | None = None
    revocation_endpoint: str | None = None
    authorization_response_iss_parameter_supported: bool = False
    client_id_metadata_document_supported: bool = False
    token_endpoint_auth_signing_alg_values_supported: list[str] | None = None
    device_authorization_endpoint: str | None = None  # RFC 8628
    pushed_authorization_request_endpoint: str | None = None  # RFC 9126
    require_pushed_authorization_requests: bool = False
    dpop_signing_alg_values_supported: list[str] | None = None  # RFC 9449 §5.1


def metadata_urls(issuer: str) -> list[str]:
    """Where to look, in order (RFC 8414 §3.1, OpenID Connect Discovery §4, as the MCP spec lists)."""
    parts = urlsplit(issuer.strip())
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")  # RFC 8414 §3.1: a terminating "/" goes before insertion
    if not path:
        return [base + OAUTH_WELL_KNOWN, base + OIDC_WELL_KNOWN]
    return [base + OAUTH_WELL_KNOWN + path, base + OIDC_WELL_KNOWN + path, base + path + OIDC_WELL_KNOWN]


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _insecure_endpoints(metadata: AuthorizationServerMetadata) -> list[tuple[str, str]]:
    """(field, url) pairs that would carry codes or tokens in clear text to another machine."""
    fields = {
        "issuer": metadata.issuer,
        "authorization_endpoint": metadata.authorization_endpoint,
        "token_endpoint": metadata.token_endpoint,
        "registration_endpoint": metadata.registration_endpoint,
        "revocation_endpoint": metadata.revocation_endpoint,
        "device_authorization_endpoint": metadata.device_authorization_endpoint,
        "pushed_authorization_request_endpoint": metadata.pushed_authorization_request_endpoint,
    }
    bad = []
    for name, url in fields.items():
        if not url:
            continue
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "https" and parts.hostname:
            continue
        if scheme == "http" and is_loopback_host(parts.hostname):
            continue
        bad.append((name, url))
    return bad


def check_metadata(
    metadata: AuthorizationServerMetadata, *, url: str, server: str | None, correlation_id: str | None,
    interactive: bool = True,
) -> None:
    """The TLS and PKCE requirements; raises for the first one the document fails.

    ``interactive`` is False for grants without an authorization request (client credentials, JWT
    bearer): PKCE protects the authorization code, so there it is not asked for.
    """
    insecure = _insecure_endpoints(metadata)
    if insecure:
        listed = ", ".join(f"{name} {value!r}" for name, value in insecure)
        raise McpRelayError(
            ErrorType.METADATA_DISCOVERY_FAILED,
            f"the {_WHAT} at {url} uses endpoints without https: {listed}",
            suggestion="authorization endpoints must use https (plain http is allowed only on "
            "localhost/127.0.0.1/::1); fix the authorization server's configuration",
            server=server,
            correlation_id=correlation_id,
            details={"url": url, "insecure": dict(insecure)},
        )
    methods = metadata.code_challenge_methods_supported
    if interactive and not metadata.authorization_endpoint:
        raise McpRelayError(
            ErrorType.METADATA_DISCOVERY_FAILED,
            f"the {_WHAT} at {url} has no authorization_endpoint, so no user can log in there",
            suggestion="if this server is for machines only, set mcpServers[].oauth.grant to "
            "client_credentials (or jwt_bearer / token_exchange)",
            server=server,
            correlation_id=correlation_id,
            details={"url": url},
        )
    if interactive and (not methods or "S256" not in methods):
        advertised = "does not list code_challenge_methods_supported" if methods is None else (
            f"lists code_challenge_methods_supported {methods!r} without S256"
        )
        raise McpRelayError(
            ErrorType.PKCE_UNSUPPORTED,
            f"the authorization server {metadata.issuer} {advertised}, so PKCE with S256 cannot be used",
            suggestion="mcprelay requires PKCE S256, as the MCP specification does; ask the provider to "
            "enable it and advertise it in code_challenge_methods_supported",
            server=server,
            correlation_id=correlation_id,
            details={"url": url, "code_challenge_methods_supported": methods},
        )


def _same_issuer(document: str, expected: str) -> bool:
    """Exact, except that a bare origin with and without "/" name the same well-known URLs."""
    if document == expected:
        return True
    stripped = {document.rstrip("/"), expected.rstrip("/")}
    return len(stripped) == 1 and not urlsplit(document).path.strip("/")


async def fetch_authorization_server_metadata(
    http: httpx2.AsyncClient,
    issuer: str,
    *,
    server: str | None,
    correlation_id: str | None,
    interactive: bool = True,
) -> AuthorizationServerMetadata | None:
    """The checked metadata of ``issuer``; None when no URL serves any (the caller decides if fatal)."""
    for url in metadata_urls(issuer):
        data = await fetch_json_object(http, url, what=_WHAT, server=server, correlation_id=correlation_id)
        if data is None:
            continue
        metadata = validate_document(
            AuthorizationServerMetadata, data, what=_WHAT, url=url, server=server, correlation_id=correlation_id
        )
        if not _same_issuer(metadata.issuer, issuer):
            raise McpRelayError(
                ErrorType.METADATA_DISCOVERY_FAILED,
                f"the {_WHAT} at {url} names issuer {metadata.issuer!r}, but {issuer!r} was expected",
                suggestion="the issuer in the document must equal the authorization server's URL exactly "
                "(RFC 8414 §3.3); fix the authorization server's configuration",
                server=server,
                correlation_id=correlation_id,
                details={"url": url, "issuer": metadata.issuer, "expected_issuer": issuer},
            )
        check_metadata(metadata, url=url, server=server, correlation_id=correlation_id, interactive=interactive)
        diaglog.event(
            "discovery_authorization_server", server=server, correlation_id=correlation_id, url=url,
            issuer=metadata.issuer, authorization_endpoint=metadata.authorization_endpoint,
            token_endpoint=metadata.token_endpoint, registration_endpoint=metadata.registration_endpoint,
        )
        return metadata
    return None


def legacy_metadata(server_url: str) -> AuthorizationServerMetadata:
    """The 2025-03-26 default endpoints, for servers that publish no metadata at all.

    That revision of the MCP specification makes PKCE mandatory and names these paths on the
    server's origin, so S256 is assumed rather than advertised.
    """
    base = origin(server_url)
    return AuthorizationServerMetadata(
        issuer=base,
        authorization_endpoint=base + "/authorize",
        token_endpoint=base + "/token",
        registration_endpoint=base + "/register",
        response_types_supported=["code"],
        grant_types_supported=["authorization_code", "refresh_token"],
        code_challenge_methods_supported=["S256"],
    )
