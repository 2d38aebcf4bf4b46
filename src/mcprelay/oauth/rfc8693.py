"""RFC 8693 token exchange, as enterprise-managed authorization uses it (ID token → ID-JAG).

In enterprise-managed authorization (the MCP extension, "cross-app access") the user signed in to
the company's identity provider once. mcprelay exchanges that ID token at the IdP for an *ID-JAG*
(an Identity Assertion JWT Authorization Grant) naming the MCP server's authorization server as
audience and the MCP server as resource; the ID-JAG is then presented to that authorization server
as a JWT-bearer grant (RFC 7523). This module is the first leg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcprelay.errors import ErrorType
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenEndpointError, token_endpoint_call

if TYPE_CHECKING:
    import httpx2

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"


def exchange_form(
    *, subject_token: str, subject_token_type: str, requested_token_type: str, audience: str,
    resource: str | None, scope: str | None,
) -> dict[str, str]:
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "requested_token_type": requested_token_type,
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
        "audience": audience,
    }
    if resource:
        form["resource"] = resource
    if scope:
        form["scope"] = scope
    return form


def issued_token(body: dict[str, Any], *, expected_type: str) -> str:
    """The exchanged token (in ``access_token``, RFC 8693 §2.2.1); ValueError when unusable."""
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the response has no access_token (the issued token)")
    issued_type = body.get("issued_token_type")
    if issued_type != expected_type:
        raise ValueError(f"issued_token_type is {issued_type!r}, not {expected_type!r}")
    return token


async def exchange_id_token_for_id_jag(
    http: httpx2.AsyncClient,
    idp_token_endpoint: str,
    client: ClientCredentials,
    *,
    id_token: str,
    audience: str,
    resource: str | None,
    scope: str | None,
    server: str,
    correlation_id: str,
    failure_type: ErrorType,
) -> str:
    """Leg 1: the ID-JAG for ``audience`` (the MCP server's authorization server issuer)."""
    form = exchange_form(
        subject_token=id_token, subject_token_type=ID_TOKEN_TYPE, requested_token_type=ID_JAG_TYPE,
        audience=audience, resource=resource, scope=scope,
    )
    body = await token_endpoint_call(
        http, idp_token_endpoint, client, form, server=server, correlation_id=correlation_id,
        failure_type=failure_type, what="enterprise IdP's token endpoint",
    )
    try:
        return issued_token(body, expected_type=ID_JAG_TYPE)
    except ValueError as exc:
        raise TokenEndpointError(
            failure_type,
            f"the enterprise IdP's token endpoint {idp_token_endpoint} answered the token exchange with "
            f"something that is not an ID-JAG: {exc}",
            suggestion="check that the IdP supports enterprise-managed authorization (ID-JAG) for this client",
            oauth_error="invalid_response",
            status=200,
            server=server,
            correlation_id=correlation_id,
        ) from None
