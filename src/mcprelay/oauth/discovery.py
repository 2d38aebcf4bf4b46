"""The whole discovery of an MCP server's authorization: probe → challenge → PRM → AS metadata.

Newer servers (MCP 2025-06-18 and later) point from a 401 challenge to protected resource
metadata, which names the authorization server. Servers of the 2025-03-26 revision have no such
document: their authorization server sits on the server's own origin, with or without metadata,
and without metadata at fixed paths. Both are supported because both are deployed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2

from mcprelay import __version__, diaglog
from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.oauth.rfc6750 import Challenge, auth_challenge
from mcprelay.oauth.rfc8414 import (
    AuthorizationServerMetadata,
    check_metadata,
    fetch_authorization_server_metadata,
    legacy_metadata,
    metadata_urls,
)
from mcprelay.oauth.rfc9728 import (
    ProtectedResourceMetadata,
    canonical_resource,
    fetch_protected_resource_metadata,
    origin,
)

PROTOCOL_VERSION = "2025-11-25"
OFFLINE_ACCESS = "offline_access"
_SESSION_CLEANUP_S = 5.0


@dataclass
class DiscoveryResult:
    server_url: str
    resource: str  # the RFC 8707 value: the advertised resource, else the canonical server URI
    protected_resource: ProtectedResourceMetadata | None
    metadata: AuthorizationServerMetadata
    challenge: Challenge | None
    legacy: bool  # the endpoints are the 2025-03-26 defaults, assumed rather than published


def _initialize_request() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcprelay", "version": __version__},
        },
    }


async def _end_session(http: httpx2.AsyncClient, url: str, session_id: str) -> None:
    """A server that needs no auth just opened a session for our probe; don't leave it behind."""
    headers = {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION}
    with contextlib.suppress(httpx2.HTTPError, TimeoutError), anyio.fail_after(_SESSION_CLEANUP_S):
        await http.delete(url, headers=headers)


async def probe(http: httpx2.AsyncClient, url: str) -> Challenge | None:
    """An unauthenticated ``initialize``: the Bearer (or DPoP) challenge of a 401, or None if no auth is needed.

    Other failures (a 404, a 500) also give None: they are not about authorization, and the
    session that follows reports them with the server's own words. The body is never read, so an
    event stream cannot hold the probe open.
    """
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
    }
    try:
        async with http.stream(
            "POST", url, json=_initialize_request(), headers=headers, follow_redirects=True
        ) as response:
            status = response.status_code
            final_url = str(response.url)
            session_id = response.headers.get("mcp-session-id")
            challenge = auth_challenge(response.headers) if status == 401 else None
    except httpx2.InvalidURL as exc:
        raise config_error(f"the server URL {url!r} is not valid: {exc}", suggestion="fix the server's url") from None
    except httpx2.HTTPError as exc:
        raise McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"could not reach the MCP server at {url} ({type(exc).__name__})",
            suggestion="check the URL, the network, and that the server is running",
            details={"url": url, "error": type(exc).__name__},
        ) from None
    if status == 401:
        return challenge or Challenge("bearer", {})
    if 200 <= status < 300 and session_id:
        await _end_session(http, final_url, session_id)
    return None


def _no_metadata(issuer: str, *, server: str | None, correlation_id: str | None) -> McpRelayError:
    tried = metadata_urls(issuer)
    return McpRelayError(
        ErrorType.METADATA_DISCOVERY_FAILED,
        f"no authorization server metadata could be fetched for {issuer} (tried {', '.join(tried)})",
        suggestion="check that the authorization server is up and reachable; the diagnostic log has "
        "the status of each URL",
        server=server,
        correlation_id=correlation_id,
        details={"issuer": issuer, "tried": tried},
    )


async def discover(
    http: httpx2.AsyncClient,
    server_url: str,
    *,
    challenge: Challenge | None,
    server: str | None,
    correlation_id: str | None,
    interactive: bool = True,
) -> DiscoveryResult:
    """Everything needed to start an authorization request; raises before any browser opens.

    ``interactive`` is False for machine grants, which need neither an authorization endpoint nor PKCE.
    """
    try:
        server_resource, server_origin = canonical_resource(server_url), origin(server_url)
    except ValueError as exc:
        raise config_error(f"the server URL {server_url!r} is not valid: {exc}", server=server) from None
    header_url = challenge.resource_metadata if challenge else None
    diaglog.event(
        "discovery_start", server=server, correlation_id=correlation_id, url=server_url,
        resource_metadata=header_url, challenge_scope=challenge.scope if challenge else None,
    )
    prm = await fetch_protected_resource_metadata(
        http, server_url, header_url, server=server, correlation_id=correlation_id
    )
    if prm is not None:
        if not prm.authorization_servers:
            raise McpRelayError(
                ErrorType.METADATA_DISCOVERY_FAILED,
                f"the protected resource metadata of {server_url} lists no authorization_servers",
                suggestion="the server does not say where to log in; report it to the server's operator",
                server=server,
                correlation_id=correlation_id,
            )
        issuer = prm.authorization_servers[0]
        metadata = await fetch_authorization_server_metadata(
            http, issuer, server=server, correlation_id=correlation_id, interactive=interactive
        )
        if metadata is None:
            raise _no_metadata(issuer, server=server, correlation_id=correlation_id)
        result = DiscoveryResult(server_url, prm.resource, prm, metadata, challenge, legacy=False)
    else:
        metadata = await fetch_authorization_server_metadata(
            http, server_origin, server=server, correlation_id=correlation_id, interactive=interactive
        )
        legacy = metadata is None
        if metadata is None:
            metadata = legacy_metadata(server_url)
            check_metadata(metadata, url=server_url, server=server, correlation_id=correlation_id,
                           interactive=interactive)
        result = DiscoveryResult(server_url, server_resource, None, metadata, challenge, legacy=legacy)
    diaglog.event(
        "discovery_complete", server=server, correlation_id=correlation_id, resource=result.resource,
        issuer=result.metadata.issuer, legacy=result.legacy, protected_resource=prm is not None,
    )
    return result


def select_scope(result: DiscoveryResult, configured: list[str] | None) -> str | None:
    """Configured scopes, else the challenge's, else the resource's advertised ones, else none.

    ``offline_access`` is added only when the authorization server offers it (asking for an
    unknown scope fails the whole request at some servers), and never to an empty request: with no
    scope the server grants its default, which asking for ``offline_access`` alone could narrow.
    """
    scopes: list[str] = []
    if configured:
        scopes = [s for item in configured for s in item.split()]
    elif result.challenge is not None and result.challenge.scope:
        scopes = result.challenge.scope.split()
    elif result.protected_resource is not None and result.protected_resource.scopes_supported:
        scopes = list(result.protected_resource.scopes_supported)
    if not scopes:
        return None
    offered = result.metadata.scopes_supported or []
    if OFFLINE_ACCESS in offered and OFFLINE_ACCESS not in scopes:
        scopes.append(OFFLINE_ACCESS)
    return " ".join(dict.fromkeys(scopes))
