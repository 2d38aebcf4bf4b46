"""The token endpoint (RFC 6749 §3.2, §4.1.3, §6): requests, client authentication, responses.

Token responses are parsed into a :class:`TokenSet` with an *absolute* expiry, because a relative
``expires_in`` means nothing once the tokens have been stored and read back by another process.
Responses are untrusted input: read within an overall deadline and a size cap checked while the body
streams, and every number range-checked.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth._documents import OAUTH_REQUEST_DEADLINE_S, bounded_request
from mcprelay.oauth.redact import form_secrets, redact

if TYPE_CHECKING:
    import httpx2  # imported where used: `auth status` reads tokens without the HTTP stack

    from mcprelay.oauth.rfc9449 import DPoPKey

MAX_TOKEN_RESPONSE = 256 * 1024


@dataclass
class TokenSet:
    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    issued_at: float = field(default_factory=time.time)
    scope: str | None = None

    def expired(self, skew: float = 0.0, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (now if now is not None else time.time()) >= self.expires_at - skew

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSet:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class ClientCredentials:
    """How this client identifies itself at the token endpoint."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str = "none"  # none | client_secret_basic | client_secret_post | private_key_jwt
    # private_key_jwt: makes a fresh signed client assertion (RFC 7523 §2.2) for each request.
    assertion: Callable[[], str] | None = field(default=None, repr=False, compare=False)


class TokenEndpointError(McpRelayError):
    """An OAuth error response from the token endpoint; ``oauth_error`` is its ``error`` code."""

    def __init__(self, error_type: ErrorType, message: str, *, oauth_error: str, status: int, **kw: Any) -> None:
        super().__init__(error_type, message, **kw)
        self.oauth_error = oauth_error
        self.status = status


def choose_auth_method(has_secret: bool, supported: list[str] | None) -> str:
    """RFC 8414 says an absent list means ``client_secret_basic``; prefer Basic, then post."""
    if not has_secret:
        return "none"
    offered = supported or ["client_secret_basic"]
    for method in ("client_secret_basic", "client_secret_post"):
        if method in offered:
            return method
    return "client_secret_basic"


def _apply_client_auth(
    client: ClientCredentials, form: dict[str, str], headers: dict[str, str]
) -> None:
    if client.auth_method == "client_secret_basic" and client.client_secret is not None:
        # RFC 6749 §2.3.1: form-urlencode both parts before joining them.
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return
    if client.client_id:  # a JWT-bearer grant may identify the client by its assertion alone
        form["client_id"] = client.client_id
    if client.auth_method == "client_secret_post" and client.client_secret is not None:
        form["client_secret"] = client.client_secret
    elif client.auth_method == "private_key_jwt" and client.assertion is not None:
        from mcprelay.oauth.rfc7523 import CLIENT_ASSERTION_TYPE

        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = client.assertion()


#: The longest access token lifetime believed (10 years); anything above is a server bug or an attack.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600


def _expires_in(value: Any) -> float:
    """``expires_in`` as seconds: a finite number from 1 to :data:`MAX_EXPIRES_IN`, else ValueError.

    JSON ``1e400`` parses to infinity and ``"Infinity"`` converts to it; a negative or zero lifetime
    would make every request refresh. None of those is a lifetime, so each is refused by name.
    """
    if isinstance(value, bool):
        raise ValueError("expires_in is not a number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # some servers send the number as a string
    if not isinstance(value, int | float):
        raise ValueError("expires_in is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expires_in is not a finite number")
    if value < 1 or value > MAX_EXPIRES_IN:
        shown = f"{value:g}" if abs(value) < 1e15 else "(a huge number)"
        raise ValueError(f"expires_in {shown} is outside 1 s .. 10 years")
    return float(value)


def parse_token_response(
    body: Any, *, previous_refresh: str | None = None, now: float | None = None, dpop: bool = False
) -> TokenSet:
    """``dpop``: the request carried a DPoP proof, so a ``DPoP`` token type is expected too."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise ValueError("the token response has no access_token")
    raw_type = body.get("token_type", "Bearer")
    if not isinstance(raw_type, str):
        raise ValueError(f"unsupported token_type of JSON type {type(raw_type).__name__}")
    token_type = raw_type[:40]
    if token_type.lower() == "dpop" and dpop:
        token_type = "DPoP"
    elif token_type.lower() != "bearer":
        raise ValueError(f"unsupported token_type {token_type!r} (only Bearer{' and DPoP' if dpop else ''} "
                         "is supported)")
    else:
        token_type = "Bearer"
    issued = now if now is not None else time.time()
    expires_in = body.get("expires_in")
    expires_at = issued + _expires_in(expires_in) if expires_in is not None else None
    refresh = body.get("refresh_token")
    if refresh is not None and not isinstance(refresh, str):
        raise ValueError("refresh_token is not a string")
    scope = body.get("scope")
    return TokenSet(
        access_token=body["access_token"],
        token_type=token_type,
        # RFC 6749 §6: without a new refresh token in the response, the old one stays valid.
        refresh_token=refresh or previous_refresh,
        expires_at=expires_at,
        issued_at=issued,
        scope=scope if isinstance(scope, str) else None,
    )


async def token_request(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    form: dict[str, str],
    *,
    server: str | None,
    correlation_id: str | None,
    failure_type: ErrorType,
    previous_refresh: str | None = None,
    dpop: DPoPKey | None = None,
    deadline: float = OAUTH_REQUEST_DEADLINE_S,
) -> TokenSet:
    """POST one token request. Transport failures and error responses raise, typed for the caller.

    ``failure_type`` is what a generic failure means to the caller (``code_flow_failed`` for a
    login, ``refresh_failed`` for a refresh); an ``invalid_grant`` is always reported with
    ``oauth_error`` so that the caller can tell a dead grant from a passing fault. ``dpop``: prove
    possession of that key (RFC 9449 §5), answering a ``use_dpop_nonce`` challenge once. A response
    that is not a usable token set is ``invalid_response``, never a traceback.
    """
    body = await token_endpoint_call(
        http, token_endpoint, client, form, server=server, correlation_id=correlation_id,
        failure_type=failure_type, dpop=dpop, deadline=deadline,
    )
    try:
        return parse_token_response(body, previous_refresh=previous_refresh, dpop=dpop is not None)
    except ValueError as exc:
        raise TokenEndpointError(
            failure_type,
            f"the token endpoint {token_endpoint} sent an unusable response: {exc}",
            suggestion="this is an authorization server problem; report it to its operator",
            oauth_error="invalid_response",
            status=200,
            server=server,
            correlation_id=correlation_id,
        ) from None


def _suggestion(oauth_error: str, description: str, status: int = 400, server: str | None = None) -> str:
    """What to do about a refused request; the server's name, never a placeholder."""
    name = server or "NAME"
    if "AADSTS9010010" in description:
        # Microsoft Entra refuses an RFC 8707 resource next to scopes of another resource.
        return "this is Microsoft Entra refusing the resource parameter: set mcpServers[].oauth.send_resource to false"
    if oauth_error == "invalid_grant":
        return f"log in again with `mcprelay auth login --server {name}`"
    if status == 429 or status >= 500 or oauth_error in {"temporarily_unavailable", "slow_down", "server_error"}:
        return "the authorization server is busy or unavailable; mcprelay retried — try again in a moment"
    if oauth_error == "invalid_client":
        return (f"the authorization server does not accept this client; check oauth.client_id / client_secret "
                f"for {name}, or run `mcprelay auth login --server {name} --force` to register again")
    return f"check the client configuration of {name} and try again"


async def token_endpoint_call(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    form: dict[str, str],
    *,
    server: str | None,
    correlation_id: str | None,
    failure_type: ErrorType,
    dpop: DPoPKey | None = None,
    what: str = "token endpoint",
    request_name: str | None = None,
    json_answer: bool = True,
    deadline: float = OAUTH_REQUEST_DEADLINE_S,
) -> dict[str, Any]:
    """POST ``form`` with client authentication (and a DPoP proof); the JSON object of a 2xx answer.

    Any 2xx is success: RFC 6749 says 200, Supabase answers 201. Text the server sends back is
    stripped of every secret the request carried before it goes into a message (some servers echo
    the request, code_verifier and all). The whole exchange (both attempts of a DPoP nonce retry)
    ends within ``deadline`` seconds, and the body is capped at :data:`MAX_TOKEN_RESPONSE` while it
    streams: a server that trickles bytes or sends 100 MB gets a clear error, not a hung lock.
    """
    import httpx2

    grant_type = form.get("grant_type", "?")
    started = time.monotonic()
    for attempt in (1, 2):
        sent = dict(form)
        headers = {"Accept": "application/json", "Cache-Control": "no-store"}
        _apply_client_auth(client, sent, headers)  # per attempt: a client assertion is single use
        if dpop is not None:
            headers["DPoP"] = dpop.proof("POST", token_endpoint)
        secrets_sent = form_secrets(sent, headers)
        try:
            remaining = max(0.0, deadline - (time.monotonic() - started))
            response = await bounded_request(
                http, "POST", token_endpoint, cap=MAX_TOKEN_RESPONSE, deadline=remaining, data=sent, headers=headers
            )
        except (httpx2.HTTPError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            diaglog.event(
                "token_request_failed", server=server, correlation_id=correlation_id, level="warning",
                grant_type=grant_type, endpoint=token_endpoint, error=type(exc).__name__,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            failure = (f"did not finish answering within {deadline:g} s" if timed_out
                       else f"could not be reached or did not answer ({type(exc).__name__})")
            raise TokenEndpointError(
                failure_type,
                f"the {what} {token_endpoint} {failure}",
                suggestion="check the network and that the authorization server is up, then try again",
                oauth_error="deadline_exceeded" if timed_out else "transport_error",
                status=0,
                server=server,
                correlation_id=correlation_id,
                # Whether the request may have reached the server: then a refresh may have been committed
                # there although its answer was lost, which no client can recover from.
                details={"request_sent": not isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout),
                         "deadline_exceeded": timed_out},
            ) from None
        body: Any = response.json()
        diaglog.event(
            "token_response", server=server, correlation_id=correlation_id, grant_type=grant_type,
            endpoint=token_endpoint, status=response.status, ms=response.elapsed_ms, dpop=dpop is not None or None,
        )
        oauth_error = redact(str(body.get("error", "")), secrets_sent)[:64] if isinstance(body, dict) else ""
        if dpop is not None:
            from mcprelay.oauth.rfc9449 import nonce_requested

            dpop.remember_nonce(token_endpoint, response.headers)
            if attempt == 1 and nonce_requested(response.status, response.headers, oauth_error):
                diaglog.event("dpop_nonce_retry", server=server, correlation_id=correlation_id,
                              endpoint=token_endpoint)
                continue
        break
    if 200 <= response.status < 300:
        if not json_answer:
            return body if isinstance(body, dict) else {}
        if not isinstance(body, dict):
            if response.body is None:
                problem = f"larger than {MAX_TOKEN_RESPONSE // 1024} KiB"
            elif body is None:
                problem = "not JSON (or nested too deeply)"
            else:
                problem = "not a JSON object"
            raise TokenEndpointError(
                failure_type,
                f"the {what} {token_endpoint} sent an unusable response: {problem}",
                suggestion="this is an authorization server problem; report it to its operator",
                oauth_error="invalid_response",
                status=response.status,
                server=server,
                correlation_id=correlation_id,
            )
        return body
    description = redact(str(body.get("error_description", "")), secrets_sent)[:300] if isinstance(body, dict) else ""
    detail = f"{oauth_error}: {description}" if description else (oauth_error or f"HTTP {response.status}")
    retry_after = response.headers.get("retry-after")
    raise TokenEndpointError(
        failure_type,
        f"the {what} {token_endpoint} refused {request_name or f'the {grant_type} request'} ({detail})",
        suggestion=_suggestion(oauth_error, description, response.status, server),
        oauth_error=oauth_error or f"http_{response.status}",
        status=response.status,
        server=server,
        correlation_id=correlation_id,
        details={"status": response.status, "oauth_error": oauth_error, "retry_after": retry_after},
    )
