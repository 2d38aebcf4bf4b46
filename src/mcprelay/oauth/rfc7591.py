"""Client registration: pre-registered clients, Client ID Metadata Documents, and RFC 7591 DCR.

A registration is cached per (server, authorization server issuer). A DCR registration remembers the
redirect URI it was registered with, so that the loopback listener can try that port again and the
login can register afresh — rather than fail forever — when the port is no longer available.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth._documents import OAUTH_REQUEST_DEADLINE_S, bounded_request
from mcprelay.oauth.rfc6749 import ClientCredentials, choose_auth_method
from mcprelay.oauth.rfc8414 import AuthorizationServerMetadata
from mcprelay.store.base import TokenStore, versioned

if TYPE_CHECKING:
    import httpx2  # imported where used: `auth status` reads registrations without the HTTP stack

RegistrationKind = Literal["preregistered", "cimd", "dcr"]
CLIENT_NAME = "mcprelay"
MAX_REGISTRATION_RESPONSE = 256 * 1024


@dataclass
class ClientRegistration:
    kind: RegistrationKind
    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str = "none"
    redirect_uri: str | None = None
    registered_at: float = field(default_factory=time.time)
    client_secret_expires_at: float | None = None
    grant_types: list[str] | None = None  # as registered (None: authorization code + refresh, before this field)

    @property
    def credentials(self) -> ClientCredentials:
        return ClientCredentials(self.client_id, self.client_secret, self.token_endpoint_auth_method)

    def usable(self, now: float | None = None) -> bool:
        """A DCR secret can expire (RFC 7591 §3.2.1); 0 means it never does."""
        if not self.client_secret_expires_at:
            return True
        return (now or time.time()) < self.client_secret_expires_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientRegistration:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def registration_key(server: str, issuer: str) -> str:
    return f"registration/{server}/{issuer}"


async def load_cached_registration(store: TokenStore, server: str, issuer: str) -> ClientRegistration | None:
    """The cached DCR registration, or None. One that cannot be read (the store's data key was lost,
    an unknown format) is treated as absent and logged, so that a new login registers again instead of
    failing on a record it is about to replace."""
    try:
        data = await anyio.to_thread.run_sync(store.get, registration_key(server, issuer))
        return ClientRegistration.from_dict(data) if data else None
    except (McpRelayError, TypeError, ValueError) as exc:
        diaglog.event("registration_unreadable", server=server, correlation_id=None, level="warning",
                      issuer=issuer, error=str(exc)[:300])
        return None


async def drop_registration_if(store: TokenStore, server: str, issuer: str, client_id: str) -> bool:
    """Compare-and-delete the cached registration: only if it is still the client ``client_id``.

    A sibling that already registered a new client keeps it; True when something was deleted.
    """
    key = registration_key(server, issuer)
    native = versioned(store)
    if native is not None:
        ((value, stamp),) = await native.read_versions([key])
        if value is None or value.get("client_id") != client_id or stamp is None:
            return False
        return await native.delete_if(key, stamp=stamp, also=[])

    def drop() -> bool:
        try:
            value = store.get(key)
        except McpRelayError:
            value = {"client_id": client_id}  # unreadable: it cannot be used either
        if not value or value.get("client_id") != client_id:
            return False
        store.delete(key)
        return True

    return await anyio.to_thread.run_sync(drop)


def preregistered(
    metadata: AuthorizationServerMetadata, client_id: str, client_secret: str | None
) -> ClientRegistration:
    return ClientRegistration(
        kind="preregistered",
        issuer=metadata.issuer,
        client_id=client_id,
        client_secret=client_secret or None,
        token_endpoint_auth_method=choose_auth_method(
            bool(client_secret), metadata.token_endpoint_auth_methods_supported
        ),
    )


def client_id_metadata_document(metadata: AuthorizationServerMetadata, url: str) -> ClientRegistration:
    """With CIMD the client id *is* the document's URL; the AS fetches it, nothing is registered."""
    return ClientRegistration(kind="cimd", issuer=metadata.issuer, client_id=url)


AUTHORIZATION_CODE_GRANTS = ["authorization_code", "refresh_token"]


def registration_request(
    redirect_uri: str | None, scope: str | None, grant_types: list[str] | None = None
) -> dict[str, Any]:
    """A public native client (RFC 8252): no secret to leak, any loopback port allowed (§7.3).

    Without a redirect URI (the device grant) no redirect-based grant or response type is asked for.
    """
    grants = list(grant_types or AUTHORIZATION_CODE_GRANTS)
    body: dict[str, Any] = {
        "client_name": CLIENT_NAME,
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": grants,
    }
    if redirect_uri is not None:
        body["redirect_uris"] = [redirect_uri]
        body["response_types"] = ["code"]
    else:
        body["response_types"] = []
    if scope:
        body["scope"] = scope
    return body


async def register(
    http: httpx2.AsyncClient,
    metadata: AuthorizationServerMetadata,
    *,
    redirect_uri: str | None,
    scope: str | None,
    server: str,
    correlation_id: str,
    grant_types: list[str] | None = None,
) -> ClientRegistration:
    import httpx2

    endpoint = metadata.registration_endpoint
    if not endpoint:
        raise McpRelayError(
            ErrorType.CLIENT_ID_REQUIRED,
            f"the authorization server {metadata.issuer} offers no dynamic client registration and "
            "no client ID metadata document support, and no client_id is configured",
            suggestion=f"register a client with the provider and set mcpServers[{server}].oauth.client_id "
            "(and client_secret if it has one), or pass --client-id to `mcprelay probe`",
            server=server,
            correlation_id=correlation_id,
        )
    try:
        response = await bounded_request(
            http, "POST", endpoint, cap=MAX_REGISTRATION_RESPONSE,
            json=registration_request(redirect_uri, scope, grant_types),
        )
    except (httpx2.HTTPError, TimeoutError) as exc:
        what = (f"did not finish within {OAUTH_REQUEST_DEADLINE_S:g} s" if isinstance(exc, TimeoutError)
                else f"failed: {type(exc).__name__}")
        raise McpRelayError(
            ErrorType.DCR_FAILED,
            f"dynamic client registration at {endpoint} {what}",
            suggestion="check that the authorization server is reachable, or configure oauth.client_id",
            server=server,
            correlation_id=correlation_id,
        ) from None
    body = response.json()
    if response.status not in (200, 201) or not isinstance(body, dict) or not body.get("client_id"):
        detail = ""
        if isinstance(body, dict) and body.get("error"):
            detail = f": {body.get('error')} {str(body.get('error_description', ''))[:200]}".rstrip()
        raise McpRelayError(
            ErrorType.DCR_FAILED,
            f"dynamic client registration at {endpoint} was refused (HTTP {response.status}{detail})",
            suggestion="configure a pre-registered client with oauth.client_id, or ask the provider to "
            "allow dynamic registration of native clients",
            server=server,
            correlation_id=correlation_id,
            details={"status": response.status},
        )
    secret = body.get("client_secret")
    method = str(body.get("token_endpoint_auth_method") or ("client_secret_basic" if secret else "none"))
    expires = body.get("client_secret_expires_at")
    registration = ClientRegistration(
        kind="dcr",
        issuer=metadata.issuer,
        client_id=str(body["client_id"]),
        client_secret=str(secret) if secret else None,
        token_endpoint_auth_method=method,
        redirect_uri=redirect_uri,
        client_secret_expires_at=float(expires) if isinstance(expires, int | float) and expires else None,
        grant_types=list(grant_types or AUTHORIZATION_CODE_GRANTS),
    )
    diaglog.event(
        "client_registered", server=server, correlation_id=correlation_id, issuer=metadata.issuer,
        client_id=registration.client_id, redirect_uri=redirect_uri,
    )
    return registration
