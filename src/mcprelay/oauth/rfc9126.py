"""Pushed authorization requests (RFC 9126).

The authorization request is sent to the authorization server directly (client authenticated, over
TLS) and the browser only gets ``client_id`` and an opaque, short-lived, single-use ``request_uri``.
So nothing another local user could read from a process list or a shell history — ``state``, the
PKCE challenge, the redirect URI, scopes — ever travels through the front channel. Used whenever the
authorization server advertises ``pushed_authorization_request_endpoint``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from mcprelay.errors import ErrorType
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenEndpointError, token_endpoint_call

if TYPE_CHECKING:
    import httpx2


async def push_authorization_request(
    http: httpx2.AsyncClient,
    endpoint: str,
    client: ClientCredentials,
    params: dict[str, str],
    *,
    server: str,
    correlation_id: str,
) -> str:
    """POST the request; the ``request_uri`` that stands for it (RFC 9126 §2.2)."""
    try:
        body = await token_endpoint_call(
            http, endpoint, client, params, server=server, correlation_id=correlation_id,
            failure_type=ErrorType.CODE_FLOW_FAILED, what="pushed authorization request endpoint",
            request_name="the pushed authorization request",
        )
    except TokenEndpointError as exc:
        exc.suggestion = "check the client configuration (client id, scopes, redirect URI) and log in again"
        raise
    request_uri = body.get("request_uri")
    if not isinstance(request_uri, str) or not request_uri:
        raise TokenEndpointError(
            ErrorType.CODE_FLOW_FAILED,
            f"the pushed authorization request endpoint {endpoint} answered without a request_uri",
            suggestion="this is an authorization server problem; report it to its operator",
            oauth_error="invalid_response",
            status=200,
            server=server,
            correlation_id=correlation_id,
        )
    return request_uri


def front_channel_url(authorization_endpoint: str, *, client_id: str, request_uri: str) -> str:
    """What the browser opens: only the client id and the reference (RFC 9126 §4)."""
    query = urlencode({"client_id": client_id, "request_uri": request_uri})
    return authorization_endpoint + ("&" if "?" in authorization_endpoint else "?") + query
