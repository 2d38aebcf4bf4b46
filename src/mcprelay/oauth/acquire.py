"""Tokens without a person: the machine grants, at login and whenever the token comes due.

Three grants obtain an access token from credentials the configuration points at, with no browser
and no refresh token:

- ``client_credentials`` — the client's own secret or private key (:mod:`.clientcreds`);
- ``jwt_bearer`` — workload identity federation: a JWT the platform issued to the workload (a
  Kubernetes projected service-account token, a cloud identity token), read again from its file or
  environment variable at every acquisition, because it rotates (:mod:`.rfc7523`);
- ``token_exchange`` — enterprise-managed authorization: the user's ID token is exchanged at the
  enterprise IdP for an ID-JAG (:mod:`.rfc8693`), which is then the JWT-bearer grant at the MCP
  server's authorization server. Each leg's failure names the leg.

:func:`machine_login` runs at login (after discovery); :func:`reacquire` is what the token manager
calls instead of a refresh, inside the same single flight and grant lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.clientcreds import client_credentials_form, configured_client
from mcprelay.oauth.grant import StoredGrant
from mcprelay.oauth.material import read_material
from mcprelay.oauth.rfc6749 import TokenEndpointError, TokenSet, token_request
from mcprelay.oauth.rfc7009 import REVOCATION_ENDPOINT_KEY
from mcprelay.oauth.rfc7523 import jwt_bearer_form
from mcprelay.oauth.rfc8414 import is_loopback_host
from mcprelay.oauth.rfc8693 import exchange_id_token_for_id_jag
from mcprelay.oauth.rfc9449 import GRANT_EXTRA_KEY, DPoPKey, key_from_extra

if TYPE_CHECKING:
    import httpx2

    from mcprelay.config import ServerConfig
    from mcprelay.oauth.discovery import DiscoveryResult


@dataclass(frozen=True)
class MachineTarget:
    """Where and how to ask: what discovery found at login, and what the grant keeps for later."""

    issuer: str
    token_endpoint: str
    resource: str | None
    auth_methods: list[str] | None
    signing_algs: list[str] | None


def _where(file: str, env: str, key: str) -> str:
    return f"{key}_env {env}" if env else f"{key}_file {file}"


def _reworded(exc: TokenEndpointError, message: str, suggestion: str, **details: Any) -> TokenEndpointError:
    out = TokenEndpointError(
        exc.error_type, message, oauth_error=exc.oauth_error, status=exc.status, suggestion=suggestion,
        server=exc.server, correlation_id=exc.correlation_id, details={**exc.details, **details},
    )
    return out


def _check_endpoint(url: str, *, key: str, server: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return
    raise McpRelayError(
        ErrorType.CONFIG_INVALID,
        f"{key} {url!r} must be an https URL (plain http only on localhost)",
        suggestion=f"fix mcpServers[].{key}",
        server=server,
    )


async def obtain(
    http: httpx2.AsyncClient,
    server: ServerConfig,
    target: MachineTarget,
    *,
    scope: str | None,
    dpop: DPoPKey | None,
    correlation_id: str,
    failure_type: ErrorType,
) -> TokenSet:
    """One acquisition with the configured machine grant."""
    oauth, name = server.oauth, server.name
    kind = oauth.grant
    client = configured_client(
        oauth, server=name, issuer=target.issuer, auth_methods=target.auth_methods, signing_algs=target.signing_algs
    )

    async def at_authorization_server(form: dict[str, str]) -> TokenSet:
        return await token_request(
            http, target.token_endpoint, client, form, server=name, correlation_id=correlation_id,
            failure_type=failure_type, dpop=dpop,
        )

    diaglog.event("machine_grant_start", server=name, correlation_id=correlation_id, grant=kind,
                  token_endpoint=target.token_endpoint, auth_method=client.auth_method, dpop=dpop is not None)
    if kind == "client_credentials":
        return await at_authorization_server(client_credentials_form(scope=scope, resource=target.resource))
    if kind == "jwt_bearer":
        where = _where(oauth.assertion_file, oauth.assertion_env, "oauth.assertion")
        assertion = read_material(
            "the workload identity token", file=oauth.assertion_file, env=oauth.assertion_env, server=name,
            key="oauth.assertion",
        )
        try:
            return await at_authorization_server(jwt_bearer_form(assertion, scope=scope, resource=target.resource))
        except TokenEndpointError as exc:
            if exc.oauth_error == "invalid_grant":
                raise _reworded(
                    exc, f"{target.issuer} refused the workload identity token from {where}: {exc.message}",
                    "the token is expired, for another audience, or from an issuer the authorization server does "
                    f"not trust; check what writes {where}", assertion_source=where,
                ) from None
            if exc.oauth_error == "invalid_scope":
                raise _reworded(
                    exc, f"{target.issuer} does not allow the requested scope {scope or '(none)'} for this "
                    f"workload: {exc.message}", "change mcpServers[].oauth.scopes to what the workload may have",
                ) from None
            raise
    if kind == "token_exchange":
        _check_endpoint(oauth.idp_token_endpoint, key="oauth.idp_token_endpoint", server=name)
        id_token = read_material(
            "the ID token", file=oauth.id_token_file, env=oauth.id_token_env, server=name, key="oauth.id_token",
        )
        from mcprelay.oauth.rfc6749 import ClientCredentials

        idp_client = ClientCredentials(
            oauth.idp_client_id, oauth.idp_client_secret or None,
            "client_secret_basic" if oauth.idp_client_secret else "none",
        )
        try:
            id_jag = await exchange_id_token_for_id_jag(
                http, oauth.idp_token_endpoint, idp_client, id_token=id_token, audience=target.issuer,
                resource=target.resource, scope=scope, server=name, correlation_id=correlation_id,
                failure_type=failure_type,
            )
        except TokenEndpointError as exc:
            raise _reworded(
                exc, f"step 1 of 2 (token exchange of the ID token for an ID-JAG at the enterprise IdP) failed: "
                f"{exc.message}",
                "check oauth.idp_client_id and that the ID token (from "
                f"{_where(oauth.id_token_file, oauth.id_token_env, 'oauth.id_token')}) is current",
                leg="idp_token_exchange",
            ) from None
        try:
            return await at_authorization_server(jwt_bearer_form(id_jag, scope=scope, resource=target.resource))
        except TokenEndpointError as exc:
            raise _reworded(
                exc, f"step 2 of 2 (the ID-JAG as a JWT-bearer grant at the MCP server's authorization server "
                f"{target.issuer}) failed: {exc.message}",
                "check oauth.client_id and oauth.client_secret, and that the authorization server trusts the IdP",
                leg="authorization_server_jwt_bearer",
            ) from None
    raise AssertionError(f"not a machine grant: {kind}")


def _resource(server: ServerConfig, discovery: DiscoveryResult) -> str | None:
    if not server.oauth.send_resource:
        return None
    return server.oauth.extra_params.get("resource", discovery.resource)


async def machine_login(
    http: httpx2.AsyncClient,
    server: ServerConfig,
    discovery: DiscoveryResult,
    *,
    scope: str | None,
    dpop: DPoPKey | None,
    correlation_id: str,
) -> StoredGrant:
    """The first acquisition, as a grant to store: it keeps what :func:`reacquire` needs later."""
    metadata = discovery.metadata
    target = MachineTarget(
        issuer=metadata.issuer,
        token_endpoint=metadata.token_endpoint,
        resource=_resource(server, discovery),
        auth_methods=metadata.token_endpoint_auth_methods_supported,
        signing_algs=metadata.token_endpoint_auth_signing_alg_values_supported,
    )
    tokens = await obtain(
        http, server, target, scope=scope, dpop=dpop, correlation_id=correlation_id,
        failure_type=ErrorType.CODE_FLOW_FAILED,
    )
    extra: dict[str, Any] = {
        "grant": server.oauth.grant,
        "auth_methods": target.auth_methods,
        "signing_algs": target.signing_algs,
    }
    if dpop is not None:
        extra[GRANT_EXTRA_KEY] = dpop.to_dict()
    if metadata.revocation_endpoint:
        extra[REVOCATION_ENDPOINT_KEY] = metadata.revocation_endpoint
    return StoredGrant(
        server=server.name,
        issuer=metadata.issuer,
        client_id=server.oauth.client_id,
        resource=target.resource or "",
        token_endpoint=metadata.token_endpoint,
        registration_kind="preregistered",
        tokens=tokens,
        token_endpoint_auth_method=server.oauth.token_endpoint_auth_method or "",
        requested_scope=scope,
        extra=extra,
    )


def reacquires(grant: StoredGrant) -> bool:
    """Whether this grant is renewed by asking again (a machine grant) rather than by a refresh."""
    return grant.extra.get("grant") in ("client_credentials", "jwt_bearer", "token_exchange")


async def reacquire(
    http: httpx2.AsyncClient, server: ServerConfig, grant: StoredGrant, correlation_id: str
) -> TokenSet:
    """New tokens for a machine grant that came due: the same grant, asked again (same DPoP key)."""
    if grant.extra.get("grant") != server.oauth.grant:
        raise McpRelayError(
            ErrorType.LOGIN_REQUIRED,
            f"the stored login for {server.name} used the {grant.extra.get('grant')} grant, but the "
            f"configuration now says {server.oauth.grant}",
            suggestion=f"mcprelay auth login --server {server.name} --force",
            server=server.name,
            correlation_id=correlation_id,
        )
    target = MachineTarget(
        issuer=grant.issuer,
        token_endpoint=grant.token_endpoint,
        resource=grant.resource or None,
        auth_methods=grant.extra.get("auth_methods"),
        signing_algs=grant.extra.get("signing_algs"),
    )
    return await obtain(
        http, server, target, scope=grant.requested_scope, dpop=key_from_extra(grant.extra),
        correlation_id=correlation_id, failure_type=ErrorType.REFRESH_FAILED,
    )
