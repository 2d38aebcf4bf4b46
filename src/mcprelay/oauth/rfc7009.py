"""Token revocation (RFC 7009), for ``mcprelay auth logout``.

Forgetting tokens locally leaves them valid at the server until they expire — a refresh token for
months. Where the authorization server advertises ``revocation_endpoint``, logout first revokes the
refresh token (which ends the whole grant, RFC 7009 §2.1), or the access token when there is none,
then forgets them. A failed revocation is reported, and the local tokens are removed all the same:
the user asked to be logged out of this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc6749 import ClientCredentials, token_endpoint_call

if TYPE_CHECKING:
    import httpx2

    from mcprelay.oauth.grant import StoredGrant

REVOCATION_ENDPOINT_KEY = "revocation_endpoint"


@dataclass(frozen=True)
class Revocation:
    """What logout tells the user about the server side."""

    attempted: bool
    revoked: bool
    endpoint: str | None = None
    token_type_hint: str | None = None
    error: str | None = None


async def revoke_grant(
    http: httpx2.AsyncClient,
    grant: StoredGrant,
    client: ClientCredentials,
    *,
    endpoint: str | None,
    correlation_id: str,
) -> Revocation:
    """Revoke the grant's refresh token (else its access token) at ``endpoint``; never raises."""
    if not endpoint:
        return Revocation(attempted=False, revoked=False)
    if grant.tokens.refresh_token:
        token, hint = grant.tokens.refresh_token, "refresh_token"
    else:
        token, hint = grant.tokens.access_token, "access_token"
    try:
        await token_endpoint_call(
            http, endpoint, client, {"token": token, "token_type_hint": hint}, server=grant.server,
            correlation_id=correlation_id, failure_type=ErrorType.REFRESH_FAILED, what="revocation endpoint",
            request_name="the revocation request", json_answer=False,
        )
    except McpRelayError as exc:
        diaglog.event("revocation_failed", server=grant.server, correlation_id=correlation_id, level="warning",
                      endpoint=endpoint, message=exc.message)
        return Revocation(attempted=True, revoked=False, endpoint=endpoint, token_type_hint=hint, error=exc.message)
    diaglog.event("revoked", server=grant.server, correlation_id=correlation_id, endpoint=endpoint,
                  token_type_hint=hint)
    return Revocation(attempted=True, revoked=True, endpoint=endpoint, token_type_hint=hint)
