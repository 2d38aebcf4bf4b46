"""A strict OAuth 2.1 authorization server for tests and ``mcprelay demo``.

It implements what an MCP client meets in the wild, and refuses what a careful server refuses:

* RFC 8414 metadata (with path insertion when the issuer has a path), RFC 9207 ``iss`` on redirects;
* RFC 7591 dynamic client registration (native and web clients, three client auth methods);
* the authorization code grant with mandatory PKCE S256 and RFC 8707 resource indicators;
  native clients may use any loopback port (RFC 8252 §7.3), web clients must match exactly;
* single-use codes (a replayed code revokes what it produced);
* refresh token rotation with reuse detection: presenting a spent refresh token revokes the grant;
* RFC 7009 revocation, and an ``introspect`` method for the co-hosted resource server;
* the machine grants: client credentials (``client_secret_basic``/``post`` and ``private_key_jwt``
  client assertions, RFC 7523 §2.2), the JWT-bearer grant (RFC 7523 §2.1) for workload tokens and
  ID-JAGs from trusted issuers, and RFC 8693 token exchange (ID token → ID-JAG) when it plays the
  enterprise IdP;
* the device authorization grant (RFC 8628), pushed authorization requests (RFC 9126), and DPoP
  (RFC 9449) with server nonces, binding access and refresh tokens to the proof key;
* provider quirks as switches: Entra's refusal of ``resource`` (AADSTS9010010) and its demand for
  ``scope`` on refresh, Supabase's 201 token answers, a server that echoes the request in errors.

Fault knobs in :class:`AuthServerSettings` (503, 429, slow responses, a connection dropped after the
rotation was committed) let tests drive a client through the failures that break real ones.
Everything runs in one uvicorn thread while tests read :attr:`StrictAuthServer.counters` from
another, so state changes happen under a lock and never across an ``await``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcprelay.testing.jwtcheck import (
    ProofError,
    check_dpop_proof,
    import_public,
    new_key,
    sign_jwt,
    unverified_claims,
    unverified_header,
    verify_jwt,
)

RAW_SEND_KEY = "mcprelay.raw_send"
"""Scope key under which :class:`RawSendCapture` keeps the server's own ``send`` callable."""

_AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
_DCR_AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", JWT_BEARER, DEVICE_CODE)
_PAR_PREFIX = "urn:ietf:params:oauth:request_uri:"
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CODE_TTL = 120.0
_AADSTS9010010 = (
    "AADSTS9010010: The resource parameter provided in the request doesn't match with the requested scopes."
)


def _default_scopes() -> list[str]:
    return ["mcp:read", "mcp:tools", "offline_access"]


@dataclass
class AuthServerSettings:
    access_token_ttl: float = 3600
    refresh_token_ttl: float | None = None
    scopes_supported: list[str] = field(default_factory=_default_scopes)
    pkce_methods: list[str] | None = field(default_factory=lambda: ["S256"])
    """Methods accepted and advertised; ``None`` omits them from the metadata (S256 is still required)."""
    advertise_iss: bool = True
    dcr_enabled: bool = True
    cimd_supported: bool = False
    require_resource: bool = True
    resource: str | None = None
    """The resource indicator tokens are issued for; ``None`` means ``<base>/mcp``."""
    deny: bool = False
    issue_refresh_tokens: bool = True
    token_fail_next: int = 0
    """The next N token requests get 503 without being processed."""
    token_delay: float = 0
    """Seconds every token request waits before it is processed."""
    token_drop_after_commit: int = 0
    """The next N refresh requests rotate the token, then the connection is aborted without a response."""
    rate_limit_next: int = 0
    """The next N token requests get 429 with ``Retry-After: 1``."""
    issuer_path: str = ""
    """A path for the issuer (``/tenant1``), to exercise RFC 8414 §3.1 path insertion."""
    # -- RFC 9126, RFC 8628, RFC 9449
    par_enabled: bool = False
    require_par: bool = False
    device_enabled: bool = False
    device_interval: float = 1
    device_code_ttl: float = 60
    device_slow_down_next: int = 0
    """The next N device polls get ``slow_down``."""
    dpop_algs: list[str] | None = None
    """Advertised ``dpop_signing_alg_values_supported``; proofs are checked whenever one is sent."""
    dpop_require_nonce: bool = False
    # -- machine grants
    trusted_issuers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """issuer → public JWK whose JWTs the JWT-bearer grant accepts (workload issuers, IdPs' ID-JAGs)."""
    forbidden_scopes: list[str] = field(default_factory=list)
    """Scopes a JWT-bearer or client-credentials request is refused (``invalid_scope``)."""
    idp_client_ids: dict[str, str] = field(default_factory=dict)
    """As an enterprise IdP: target issuer → the client id the ID-JAG names for it."""
    # -- provider quirks
    reject_resource: bool = False
    """Microsoft Entra: a ``resource`` next to scopes is refused with AADSTS9010010."""
    require_scope_on_refresh: bool = False
    """Microsoft Entra: a refresh without ``scope`` is refused."""
    token_status: int = 200
    """Supabase answers token requests with 201."""
    echo_request_in_errors: bool = False
    """Error descriptions repeat the raw request body (secrets included), as some servers do."""
    token_error_next: int = 0
    """The next N token requests get ``invalid_request`` (echoing the request when that is on)."""
    revocation_fails: bool = False
    clock_skew: float = 0
    """Seconds this server's clock runs ahead (negative: behind), as its ``Date`` header shows; serve it
    on a ``ThreadedServer(date_header=False)`` so that uvicorn does not add a ``Date`` of its own."""


@dataclass
class AuthServerCounters:
    """What the server saw. Tests and the demo read these and may reset fields between phases."""

    token_requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    """Keyed ``(grant_type, status_code)``; status 0 means the connection was dropped."""
    refresh_total: int = 0
    authorize_requests: int = 0
    registrations: int = 0
    grants_revoked: int = 0
    """Grants revoked because a code or refresh token was replayed."""
    reused_refresh_tokens: int = 0
    reused_codes: int = 0
    revocations: int = 0
    """Successful RFC 7009 revocation requests."""
    par_requests: int = 0
    device_polls: int = 0
    dpop_proofs: int = 0
    dpop_nonce_challenges: int = 0
    grants: Counter[str] = field(default_factory=Counter)
    """Successful token responses by grant type."""
    rs_dpop_proofs: int = 0
    """DPoP proofs the protected MCP server accepted."""
    rs_nonce_challenges: int = 0
    token_in_flight: int = 0
    token_in_flight_peak: int = 0
    tool_in_flight: int = 0
    tool_in_flight_peak: int = 0

    def reset(self) -> None:
        fresh = AuthServerCounters()
        for name in self.__dataclass_fields__:
            if name not in ("token_in_flight", "tool_in_flight"):
                setattr(self, name, getattr(fresh, name))


@dataclass
class _Client:
    client_id: str
    secret: str | None
    redirect_uris: list[str]
    application_type: str
    token_endpoint_auth_method: str
    scope: str | None = None
    issued_at: int = field(default_factory=lambda: int(time.time()))
    jwk: dict[str, Any] | None = None  # private_key_jwt: the public key
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scopes: list[str]
    resource: str | None
    expires_at: float
    grant_id: str
    used: bool = False
    dpop_jkt: str | None = None


@dataclass
class _Token:
    client_id: str
    scopes: list[str]
    resource: str | None
    expires_at: float | None
    grant_id: str
    issued_at: float = field(default_factory=time.time)
    revoked: bool = False
    consumed: bool = False  # refresh tokens only: already rotated
    jkt: str | None = None  # DPoP: the thumbprint of the key the token is bound to


@dataclass
class _Device:
    client_id: str
    user_code: str
    scopes: list[str]
    resource: str | None
    expires_at: float
    state: str = "pending"  # pending | approved | denied | used
    grant_id: str = field(default_factory=lambda: secrets.token_hex(8))


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **self.headers}
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


class RawSendCapture:
    """Outermost ASGI wrapper that records the server's ``send`` so an endpoint can drop the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        if name == "app":
            raise AttributeError(name)
        return getattr(self.app, name)  # ``state`` and friends of the wrapped app


class _DropConnection(Response):
    """Abort the TCP connection instead of answering (the client sees no response at all)."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get(RAW_SEND_KEY)
        transport = getattr(getattr(raw, "__self__", None), "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            transport.abort()
            for _ in range(3):  # let connection_lost run so the server writes nothing more
                await asyncio.sleep(0)
            return
        # Not under uvicorn's h11/httptools protocol: start a response, then fail mid-body.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionAbortedError("token_drop_after_commit")


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _single_params(items: list[tuple[str, str]]) -> dict[str, str]:
    """Request parameters must not repeat (RFC 6749 §3.1, §3.2)."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            raise OAuthError("invalid_request", f"parameter {key!r} repeated")
        out[key] = value
    return out


def _ttl_number(ttl: float) -> int | float:
    return int(ttl) if float(ttl).is_integer() else ttl


class StrictAuthServer:
    """The authorization server; mount :meth:`routes` in an app, or serve :meth:`app` on its own."""

    def __init__(self, settings: AuthServerSettings | None = None) -> None:
        self.settings = settings or AuthServerSettings()
        self.counters = AuthServerCounters()
        self.lock = threading.Lock()
        self.base_url: str | None = None
        self._default_resource: str | None = None
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._revoked_grants: set[str] = set()
        self._par: dict[str, tuple[float, dict[str, str]]] = {}
        self._devices: dict[str, _Device] = {}
        self._jtis: set[str] = set()
        self._dpop_jtis: set[str] = set()
        self.dpop_nonce = "as-nonce-" + secrets.token_urlsafe(8)
        self.signing_key = new_key()  # signs ID tokens and ID-JAGs when this server plays the IdP
        self.states_seen: list[str] = []
        """The ``state`` of every authorization request (after resolving PAR), for tests."""
        self.token_forms: list[dict[str, str]] = []
        """Every token request's form, for tests that look for leaked secrets."""

    # ----------------------------------------------------------------- configuration and URLs

    def bind(self, base_url: str, *, default_resource: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._default_resource = default_resource

    def _base(self) -> str:
        if self.base_url is None:
            raise RuntimeError("StrictAuthServer is not bound to a base URL; call routes(base_url) first")
        return self.base_url

    @property
    def issuer(self) -> str:
        return self._base() + self._issuer_path

    @property
    def _issuer_path(self) -> str:
        path = self.settings.issuer_path.strip()
        return "/" + path.strip("/") if path.strip("/") else ""

    @property
    def expected_resource(self) -> str:
        return self.settings.resource or self._default_resource or f"{self._base()}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self._base()}/.well-known/oauth-authorization-server{self._issuer_path}"

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/{name}"

    def metadata(self) -> dict[str, Any]:
        s = self.settings
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("authorize"),
            "token_endpoint": self.endpoint("token"),
            "revocation_endpoint": self.endpoint("revoke"),
            "revocation_endpoint_auth_methods_supported": list(_AUTH_METHODS),
            "scopes_supported": list(s.scopes_supported),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(_GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
            "authorization_response_iss_parameter_supported": s.advertise_iss,
            "client_id_metadata_document_supported": s.cimd_supported,
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        }
        if s.dcr_enabled:
            doc["registration_endpoint"] = self.endpoint("register")
        if s.pkce_methods is not None:
            doc["code_challenge_methods_supported"] = list(s.pkce_methods)
        if s.par_enabled:
            doc["pushed_authorization_request_endpoint"] = self.endpoint("par")
            doc["require_pushed_authorization_requests"] = s.require_par
        if s.device_enabled:
            doc["device_authorization_endpoint"] = self.endpoint("device_authorization")
        if s.dpop_algs is not None:
            doc["dpop_signing_alg_values_supported"] = list(s.dpop_algs)
        if s.idp_client_ids:
            doc["grant_types_supported"] = [*doc["grant_types_supported"], TOKEN_EXCHANGE]
        return doc

    def routes(self, base_url: str, *, default_resource: str | None = None) -> list[Route]:
        self.bind(base_url, default_resource=default_resource)
        p = self._issuer_path
        routes = [
            Route(f"/.well-known/oauth-authorization-server{p}", self._metadata_endpoint, methods=["GET"]),
            Route(f"{p}/authorize", self._authorize_endpoint, methods=["GET"]),
            Route(f"{p}/token", self._token_endpoint, methods=["POST"]),
            Route(f"{p}/revoke", self._revoke_endpoint, methods=["POST"]),
            Route(f"{p}/par", self._par_endpoint, methods=["POST"]),
            Route(f"{p}/device_authorization", self._device_authorization_endpoint, methods=["POST"]),
            Route(f"{p}/device", self._device_page, methods=["GET"]),
        ]
        if self.settings.dcr_enabled:
            routes.append(Route(f"{p}/register", self._register_endpoint, methods=["POST"]))
        return routes

    def app(self, base_url: str) -> ASGIApp:
        return RawSendCapture(Starlette(routes=self.routes(base_url)))

    # ----------------------------------------------------------------- public helpers for tests

    def add_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        redirect_uris: list[str] | None = None,
        application_type: str = "web",
        token_endpoint_auth_method: str | None = None,
        scope: str | None = None,
        jwk: dict[str, Any] | None = None,
        grant_types: list[str] | None = None,
    ) -> None:
        method = token_endpoint_auth_method or (
            "private_key_jwt" if jwk else "client_secret_basic" if secret else "none"
        )
        if method not in _AUTH_METHODS:
            raise ValueError(f"unknown token_endpoint_auth_method {method!r}")
        if method == "private_key_jwt" and not jwk:
            raise ValueError("private_key_jwt needs the client's public jwk")
        if method not in ("none", "private_key_jwt") and not secret:
            raise ValueError(f"{method} needs a secret")
        with self.lock:
            self._clients[client_id] = _Client(
                client_id, secret, list(redirect_uris or []), application_type, method, scope, jwk=jwk,
                grant_types=list(grant_types or ["authorization_code", "refresh_token"]),
            )

    def forget_client(self, client_id: str) -> bool:
        """Delete a registration, as providers that expire dynamic clients do; its tokens stop working too."""
        with self.lock:
            forgotten = self._clients.pop(client_id, None) is not None
            for table in (self._access, self._refresh):
                for token, entry in list(table.items()):
                    if getattr(entry, "client_id", None) == client_id:
                        del table[token]
        return forgotten

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public key of :attr:`signing_key` (what a relying party trusts)."""
        return dict(self.signing_key.as_dict(private=False))

    def issue_id_token(self, subject: str, audience: str, *, ttl: float = 3600) -> str:
        """An ID token as this server, acting as the enterprise IdP, would issue it after a login."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + int(ttl),
                  "email": subject}
        return sign_jwt(self.signing_key, claims)

    def approve_device(self, user_code: str) -> bool:
        """What the user does on the verification page: approve the device login with this code."""
        with self.lock:
            for device in self._devices.values():
                if device.user_code == user_code and device.state == "pending":
                    device.state = "denied" if self.settings.deny else "approved"
                    return True
        return False

    def introspect(self, token: str) -> dict[str, Any] | None:
        """RFC 7662-shaped view of an access token; ``None`` when it was never issued."""
        with self.lock:
            record = self._access.get(token)
            if record is None:
                return None
            now = time.time()
            if record.revoked or (record.expires_at is not None and record.expires_at <= now):
                return {"active": False}
            info: dict[str, Any] = {
                "active": True,
                "client_id": record.client_id,
                "scope": " ".join(record.scopes),
                "aud": record.resource,
                "resource": record.resource,
                "exp": record.expires_at,
                "iat": record.issued_at,
                "iss": self.issuer,
                "token_type": "DPoP" if record.jkt else "Bearer",
            }
            if record.jkt:
                info["cnf"] = {"jkt": record.jkt}
            return info

    def expire_access_tokens(self) -> int:
        """Make every access token issued so far expired; returns how many were live."""
        now = time.time()
        live = 0
        with self.lock:
            for record in self._access.values():
                if record.expires_at is None or record.expires_at > now:
                    live += 1
                record.expires_at = now - 1
        return live

    def revoke_all(self) -> None:
        """Revoke every grant (as if the user removed the app's access)."""
        with self.lock:
            for grant_id in {t.grant_id for t in [*self._access.values(), *self._refresh.values()]}:
                self._revoke_grant_locked(grant_id)

    # ----------------------------------------------------------------- metadata

    async def _metadata_endpoint(self, request: Request) -> Response:
        headers = {}
        if self.settings.clock_skew:
            headers["Date"] = email.utils.formatdate(time.time() + self.settings.clock_skew, usegmt=True)
        return JSONResponse(self.metadata(), headers=headers)

    # ----------------------------------------------------------------- registration (RFC 7591)

    async def _register_endpoint(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return OAuthError("invalid_client_metadata", "body is not JSON").response()
        try:
            client, response = self._register(body)
        except OAuthError as exc:
            return exc.response()
        with self.lock:
            self._clients[client.client_id] = client
            self.counters.registrations += 1
        return JSONResponse(response, status_code=201, headers={"Cache-Control": "no-store"})

    def _register(self, body: Any) -> tuple[_Client, dict[str, Any]]:
        if not isinstance(body, dict):
            raise OAuthError("invalid_client_metadata", "body must be a JSON object")
        grant_types = body.get("grant_types", ["authorization_code"])
        redirect_based = not isinstance(grant_types, list) or "authorization_code" in grant_types
        uris = body.get("redirect_uris", [] if not redirect_based else None)
        if not isinstance(uris, list) or (redirect_based and not uris) or not all(isinstance(u, str) for u in uris):
            raise OAuthError("invalid_redirect_uri", "redirect_uris must be a non-empty list of strings")
        for uri in uris:
            self._check_registrable_redirect(uri)
        app_type = body.get("application_type", "web")
        if app_type not in ("native", "web"):
            raise OAuthError("invalid_client_metadata", f"application_type {app_type!r} is not native or web")
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in _DCR_AUTH_METHODS:
            raise OAuthError("invalid_client_metadata", f"token_endpoint_auth_method {method!r} not supported")
        allowed = {"authorization_code", "refresh_token"} | ({DEVICE_CODE} if self.settings.device_enabled else set())
        if not isinstance(grant_types, list) or not set(grant_types) <= allowed:
            raise OAuthError("invalid_client_metadata", f"grant_types {grant_types!r} not supported")
        response_types = body.get("response_types", ["code"] if redirect_based else [])
        if not isinstance(response_types, list) or not set(response_types) <= {"code"}:
            raise OAuthError("invalid_client_metadata", f"response_types {response_types!r} not supported")
        scope = body.get("scope")
        if scope is not None:
            if not isinstance(scope, str) or not set(scope.split()) <= set(self.settings.scopes_supported):
                raise OAuthError("invalid_client_metadata", f"scope {scope!r} not supported")
        client_id = "client-" + secrets.token_urlsafe(12)
        secret = secrets.token_urlsafe(24) if method != "none" else None
        client = _Client(client_id, secret, list(uris), app_type, method, scope, grant_types=list(grant_types))
        response: dict[str, Any] = {
            **{k: v for k, v in body.items() if k not in ("client_id", "client_secret")},
            "client_id": client_id,
            "client_id_issued_at": client.issued_at,
            "redirect_uris": list(uris),
            "application_type": app_type,
            "token_endpoint_auth_method": method,
            "grant_types": grant_types,
            "response_types": response_types,
        }
        if secret is not None:
            response["client_secret"] = secret
            response["client_secret_expires_at"] = 0
        return client, response

    @staticmethod
    def _check_registrable_redirect(uri: str) -> None:
        try:
            parts = urlsplit(uri)
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise OAuthError("invalid_redirect_uri", f"malformed redirect URI {uri!r}") from exc
        if parts.fragment:
            raise OAuthError("invalid_redirect_uri", f"redirect URI {uri!r} has a fragment")
        if parts.scheme == "https" and host:
            return
        if parts.scheme == "http" and _is_loopback_host(host):
            return
        raise OAuthError("invalid_redirect_uri", f"redirect URI {uri!r} must be https or http on loopback")

    # ----------------------------------------------------------------- clients (incl. CIMD)

    async def _lookup_client(self, client_id: str) -> _Client | None:
        with self.lock:
            client = self._clients.get(client_id)
        if client is not None or not self.settings.cimd_supported:
            return client
        return await self._fetch_metadata_document(client_id)

    async def _fetch_metadata_document(self, client_id: str) -> _Client | None:
        """A Client ID Metadata Document: the client_id is an https URL (loopback http allowed for tests)."""
        parts = urlsplit(client_id)
        if not (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback_host(parts.hostname))):
            return None
        if not parts.path or parts.path == "/":
            return None
        import httpx2

        try:
            async with httpx2.AsyncClient(timeout=5, follow_redirects=False) as http:
                response = await http.get(client_id, headers={"Accept": "application/json"})
            doc = response.json() if response.status_code == 200 else None
        except (httpx2.HTTPError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("client_id") != client_id:
            return None
        uris = doc.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            return None
        try:
            for uri in uris:
                self._check_registrable_redirect(uri)
        except OAuthError:
            return None
        if doc.get("token_endpoint_auth_method", "none") != "none":
            return None  # a metadata document cannot carry a shared secret
        loopback = all(_is_loopback_host(urlsplit(u).hostname) for u in uris)
        app_type = doc.get("application_type", "native" if loopback else "web")
        client = _Client(client_id, None, list(uris), str(app_type), "none", doc.get("scope"))
        with self.lock:
            self._clients.setdefault(client_id, client)
        return client

    @staticmethod
    def _redirect_allowed(client: _Client, uri: str) -> bool:
        if uri in client.redirect_uris:
            return True
        if client.application_type != "native":
            return False
        try:
            asked = urlsplit(uri)
            asked.port  # noqa: B018
        except ValueError:
            return False
        if asked.scheme != "http" or not _is_loopback_host(asked.hostname) or asked.fragment:
            return False
        for registered in client.redirect_uris:
            reg = urlsplit(registered)
            if (reg.scheme, reg.hostname, reg.path or "/", reg.query) == (
                asked.scheme,
                asked.hostname,
                asked.path or "/",
                asked.query,
            ):
                return True  # RFC 8252 §7.3: any port on loopback
        return False

    # ----------------------------------------------------------------- authorization endpoint

    async def _authorize_endpoint(self, request: Request) -> Response:
        with self.lock:
            self.counters.authorize_requests += 1
        try:
            params = _single_params(list(request.query_params.multi_items()))
        except OAuthError as exc:
            return self._error_page(exc.description)
        request_uri = params.get("request_uri")
        if request_uri is not None:
            with self.lock:
                pushed = self._par.pop(request_uri, None)  # single use (RFC 9126 §4)
            if pushed is None or pushed[0] <= time.time():
                return self._error_page("request_uri is unknown, used or expired")
            if pushed[1].get("client_id") != params.get("client_id"):
                return self._error_page("request_uri was pushed by another client")
            params = dict(pushed[1])
        elif self.settings.require_par:
            return self._error_page("this server requires pushed authorization requests (RFC 9126)")
        client_id = params.get("client_id")
        if not client_id:
            return self._error_page("client_id is missing")
        client = await self._lookup_client(client_id)
        if client is None:
            return self._error_page(f"unknown client {client_id!r}")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return self._error_page("redirect_uri is missing")
        if not self._redirect_allowed(client, redirect_uri):
            return self._error_page(f"redirect_uri {redirect_uri!r} is not registered for this client")

        state = params.get("state")

        def fail(error: str, description: str) -> Response:
            out = {"error": error, "error_description": description}
            if state is not None:
                out["state"] = state
            if self.settings.advertise_iss:
                out["iss"] = self.issuer
            return RedirectResponse(_add_query(redirect_uri, out), status_code=302)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "only response_type=code is supported")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if not challenge:
            return fail("invalid_request", "PKCE is required: code_challenge is missing")
        accepted = self.settings.pkce_methods if self.settings.pkce_methods is not None else ["S256"]
        if not method:
            return fail("invalid_request", "code_challenge_method is required (S256)")
        if method not in accepted:
            return fail("invalid_request", f"code_challenge_method {method!r} is not supported")
        if not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", challenge):
            return fail("invalid_request", "code_challenge is malformed")
        resource = params.get("resource")
        if self.settings.reject_resource and resource is not None and params.get("scope"):
            return fail("invalid_target", _AADSTS9010010)
        if resource is None and self.settings.require_resource:
            return fail("invalid_target", "the resource parameter (RFC 8707) is required")
        if resource is not None and resource != self.expected_resource:
            return fail("invalid_target", f"unknown resource {resource!r}")
        scope_param = params.get("scope")
        supported = self.settings.scopes_supported
        if scope_param is None:
            scopes = [s for s in supported if s != "offline_access"]
        else:
            scopes = scope_param.split()
            unknown = [s for s in scopes if s not in supported]
            if unknown:
                return fail("invalid_scope", f"unsupported scope(s): {' '.join(unknown)}")
        if self.settings.deny:
            return fail("access_denied", "the resource owner denied the request")

        code = secrets.token_urlsafe(32)
        with self.lock:
            if state is not None:
                self.states_seen.append(state)
            self._codes[code] = _Code(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                challenge=challenge,
                method=method,
                scopes=scopes,
                # Without a resource indicator the token is for the server's one resource (as Entra
                # derives the audience from the scopes).
                resource=resource if resource is not None else self.expected_resource,
                expires_at=time.time() + _CODE_TTL,
                grant_id=secrets.token_hex(8),
                dpop_jkt=params.get("dpop_jkt"),
            )
        out = {"code": code}
        if state is not None:
            out["state"] = state
        if self.settings.advertise_iss:
            out["iss"] = self.issuer
        return RedirectResponse(_add_query(redirect_uri, out), status_code=302)

    @staticmethod
    def _error_page(message: str) -> Response:
        """Errors about the client or redirect URI are shown, never redirected (RFC 6749 §4.1.2.1)."""
        from html import escape

        body = f"<!doctype html><title>Authorization error</title><h1>Authorization error</h1><p>{escape(message)}</p>"
        return HTMLResponse(body, status_code=400)

    # ----------------------------------------------------------------- token endpoint

    async def _token_endpoint(self, request: Request) -> Response:
        with self.lock:
            self.counters.token_in_flight += 1
            self.counters.token_in_flight_peak = max(self.counters.token_in_flight_peak, self.counters.token_in_flight)
        grant_type = "?"
        status = 500
        try:
            try:
                form = await self._read_form(request)
                grant_type = form.get("grant_type", "")
            except OAuthError as exc:
                status = exc.status
                return exc.response()
            with self.lock:
                self.token_forms.append(dict(form))
            response = await self._token(request, form, grant_type)
            if self.settings.echo_request_in_errors and 400 <= response.status_code < 500:
                response = self._echoed(response, form)
            status = 0 if isinstance(response, _DropConnection) else response.status_code
            return response
        finally:
            with self.lock:
                self.counters.token_in_flight -= 1
                self.counters.token_requests[(grant_type, status)] += 1

    @staticmethod
    async def _read_form(request: Request) -> dict[str, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
        raw = (await request.body()).decode("utf-8", errors="replace")
        return _single_params(parse_qsl(raw, keep_blank_values=True))

    async def _token(self, request: Request, form: dict[str, str], grant_type: str) -> Response:
        s = self.settings
        with self.lock:
            if grant_type == "refresh_token":
                self.counters.refresh_total += 1
        if s.token_delay > 0:
            await asyncio.sleep(s.token_delay)
        with self.lock:
            if s.token_fail_next > 0:
                s.token_fail_next -= 1
                fault: Response | None = JSONResponse(
                    {"error": "temporarily_unavailable", "error_description": "injected failure"},
                    status_code=503,
                    headers={"Cache-Control": "no-store"},
                )
            elif s.rate_limit_next > 0:
                s.rate_limit_next -= 1
                fault = JSONResponse(
                    {"error": "slow_down", "error_description": "injected rate limit"},
                    status_code=429,
                    headers={"Retry-After": "1", "Cache-Control": "no-store"},
                )
            else:
                fault = None
        if fault is not None:
            return fault
        try:
            with self.lock:
                injected = s.token_error_next > 0
                if injected:
                    s.token_error_next -= 1
            if injected:
                raise OAuthError("invalid_request", "injected failure")
            client = await self._authenticate_client(request, form)
            jkt = self._dpop_at_token_endpoint(request)
            if grant_type not in ("", "refresh_token") and grant_type not in client.grant_types and (
                grant_type != TOKEN_EXCHANGE
            ):
                raise OAuthError("unauthorized_client", f"the client may not use the {grant_type} grant")
            if grant_type == "authorization_code":
                return self._json_tokens(self._exchange_code(client, form, jkt), grant_type)
            if grant_type == "refresh_token":
                body = self._refresh_grant(client, form, jkt)
                with self.lock:
                    drop = s.token_drop_after_commit > 0
                    if drop:
                        s.token_drop_after_commit -= 1
                return _DropConnection() if drop else self._json_tokens(body, grant_type)
            if grant_type == "client_credentials":
                return self._json_tokens(self._client_credentials(client, form, jkt), grant_type)
            if grant_type == JWT_BEARER:
                return self._json_tokens(self._jwt_bearer(client, form, jkt), grant_type)
            if grant_type == TOKEN_EXCHANGE and s.idp_client_ids:
                return self._json_tokens(self._token_exchange(client, form), grant_type)
            if grant_type == DEVICE_CODE and s.device_enabled:
                return self._json_tokens(self._device_token(client, form, jkt), grant_type)
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is missing")
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        except OAuthError as exc:
            return exc.response()

    def _json_tokens(self, body: dict[str, Any], grant_type: str) -> Response:
        with self.lock:
            self.counters.grants[grant_type] += 1
        return JSONResponse(
            body, status_code=self.settings.token_status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    @staticmethod
    def _echoed(response: Response, form: dict[str, str]) -> Response:
        """The error again, its description followed by the raw request (as some servers do)."""
        try:
            body = json.loads(bytes(response.body))
        except (ValueError, AttributeError):
            return response
        if not isinstance(body, dict):
            return response
        body["error_description"] = f"{body.get('error_description', '')} (request was: {urlencode(form)})"
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse(body, status_code=response.status_code, headers=headers)

    # ----------------------------------------------------------------- DPoP (RFC 9449)

    def _dpop_at_token_endpoint(self, request: Request) -> str | None:
        """The thumbprint to bind to, when the request carries a proof; raises for a bad or nonce-less one."""
        proofs = request.headers.getlist("dpop")
        if not proofs:
            return None
        if len(proofs) > 1:
            raise OAuthError("invalid_dpop_proof", "more than one DPoP header")
        nonce = self.dpop_nonce if self.settings.dpop_require_nonce else None
        try:
            with self.lock:
                jkt, _claims = check_dpop_proof(
                    proofs[0], method="POST", url=self.endpoint("token"), nonce=nonce, seen_jtis=self._dpop_jtis
                )
                self.counters.dpop_proofs += 1
        except ProofError as exc:
            if str(exc) == "nonce":
                with self.lock:
                    self.counters.dpop_nonce_challenges += 1
                raise OAuthError(
                    "use_dpop_nonce", "the authorization server requires a DPoP nonce",
                    headers={"DPoP-Nonce": self.dpop_nonce},
                ) from None
            raise OAuthError("invalid_dpop_proof", str(exc)) from None
        return jkt

    async def _authenticate_client(self, request: Request, form: dict[str, str]) -> _Client:
        """Client authentication with exactly the registered method (RFC 6749 §2.3, §3.2.1)."""
        header = request.headers.get("authorization")
        basic_id: str | None = None
        basic_secret: str | None = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                raise self._invalid_client("unsupported Authorization scheme")
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise self._invalid_client("malformed Basic credentials") from exc
            user, sep, password = decoded.partition(":")
            if not sep:
                raise self._invalid_client("malformed Basic credentials")
            basic_id, basic_secret = unquote(user), unquote(password)
        body_id = form.get("client_id")
        if "client_assertion" in form or "client_assertion_type" in form:
            return await self._authenticate_by_assertion(form, basic_id)
        if basic_id is not None and body_id is not None and body_id != basic_id:
            raise OAuthError("invalid_request", "client_id in the body differs from the Basic credentials")
        if basic_id is not None and "client_secret" in form:
            raise OAuthError("invalid_request", "more than one client authentication method used")
        client_id = basic_id or body_id
        if not client_id:
            raise self._invalid_client("client authentication is missing")
        client = await self._lookup_client(client_id)
        if client is None:
            raise self._invalid_client(f"unknown client {client_id!r}")
        method = client.token_endpoint_auth_method
        if basic_id is not None:
            used, secret = "client_secret_basic", basic_secret
        elif "client_secret" in form:
            used, secret = "client_secret_post", form["client_secret"]
        else:
            used, secret = "none", None
        if used != method:
            raise self._invalid_client(f"client must authenticate with {method}, not {used}")
        if method != "none" and not (
            client.secret is not None and secret is not None and hmac.compare_digest(client.secret, secret)
        ):
            raise self._invalid_client("client secret does not match")
        return client

    async def _authenticate_by_assertion(self, form: dict[str, str], basic_id: str | None) -> _Client:
        """``private_key_jwt`` (RFC 7523 §2.2 / §3): a JWT signed with the client's registered key."""
        if basic_id is not None or "client_secret" in form:
            raise OAuthError("invalid_request", "more than one client authentication method used")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise self._invalid_client("client_assertion_type must be " + CLIENT_ASSERTION_TYPE)
        assertion = form.get("client_assertion", "")
        try:
            claimed = unverified_claims(assertion)
        except ProofError as exc:
            raise self._invalid_client(f"client_assertion: {exc}") from None
        client_id = str(claimed.get("iss") or "")
        if form.get("client_id") not in (None, client_id):
            raise self._invalid_client("client_id differs from the assertion's iss")
        client = await self._lookup_client(client_id)
        if client is None or client.token_endpoint_auth_method != "private_key_jwt" or not client.jwk:
            raise self._invalid_client(f"client {client_id!r} is not registered for private_key_jwt")
        try:
            claims = verify_jwt(assertion, import_public(client.jwk), audience=[self.issuer, self.endpoint("token")])
        except ProofError as exc:
            raise self._invalid_client(f"client_assertion: {exc}") from None
        if claims.get("sub") != client_id:
            raise self._invalid_client("client_assertion: sub must equal iss (the client id)")
        jti = claims.get("jti")
        with self.lock:
            if not isinstance(jti, str) or ("ca:" + jti) in self._jtis:
                raise self._invalid_client("client_assertion: jti missing or replayed")
            self._jtis.add("ca:" + jti)
        return client

    @staticmethod
    def _invalid_client(description: str) -> OAuthError:
        challenge = {"WWW-Authenticate": 'Basic realm="token"'}
        return OAuthError("invalid_client", description, status=401, headers=challenge)

    def _check_resource(self, form: dict[str, str], bound: str | None, *, required: bool) -> None:
        resource = form.get("resource")
        if resource is None and not self.settings.require_resource:
            return
        if resource is None:
            if required and self.settings.require_resource:
                raise OAuthError("invalid_target", "the resource parameter (RFC 8707) is required")
            return
        if resource != bound:
            raise OAuthError("invalid_target", f"resource {resource!r} does not match the grant")

    def _scopes_for(self, client: _Client, form: dict[str, str]) -> list[str]:
        """Requested scopes of a machine grant: known, not forbidden (``invalid_scope`` otherwise)."""
        asked = form.get("scope", "").split()
        unknown = [x for x in asked if x not in self.settings.scopes_supported]
        if unknown:
            raise OAuthError("invalid_scope", f"unsupported scope(s): {' '.join(unknown)}")
        forbidden = [x for x in asked if x in self.settings.forbidden_scopes]
        if forbidden:
            raise OAuthError("invalid_scope", f"scope(s) not allowed for this client: {' '.join(forbidden)}")
        return asked or [x for x in self.settings.scopes_supported if x != "offline_access"]

    def _quirk_resource(self, form: dict[str, str]) -> None:
        if self.settings.reject_resource and "resource" in form and form.get("scope"):
            raise OAuthError("invalid_target", _AADSTS9010010)

    def _machine_resource(self, form: dict[str, str]) -> str | None:
        self._quirk_resource(form)
        resource = form.get("resource")
        if resource is None:
            if self.settings.require_resource:
                raise OAuthError("invalid_target", "the resource parameter (RFC 8707) is required")
            return self.expected_resource
        if resource != self.expected_resource:
            raise OAuthError("invalid_target", f"unknown resource {resource!r}")
        return resource

    def _client_credentials(self, client: _Client, form: dict[str, str], jkt: str | None) -> dict[str, Any]:
        if client.token_endpoint_auth_method == "none":
            raise OAuthError("unauthorized_client", "a public client cannot use client_credentials")
        scopes = self._scopes_for(client, form)
        resource = self._machine_resource(form)
        with self.lock:
            return self._issue_locked(client.client_id, scopes, resource, secrets.token_hex(8), jkt=jkt,
                                      refresh=False)

    def _jwt_bearer(self, client: _Client, form: dict[str, str], jkt: str | None) -> dict[str, Any]:
        """RFC 7523 §2.1: a workload token, or an ID-JAG (``typ`` oauth-id-jag+jwt), from a trusted issuer."""
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "assertion is missing")
        try:
            header, claimed = unverified_header(assertion), unverified_claims(assertion)
        except ProofError as exc:
            raise OAuthError("invalid_grant", f"assertion: {exc}") from None
        issuer = str(claimed.get("iss") or "")
        jwk = self.settings.trusted_issuers.get(issuer)
        if jwk is None:
            raise OAuthError("invalid_grant", f"assertion issuer {issuer!r} is not trusted")
        try:
            claims = verify_jwt(assertion, import_public(jwk), audience=[self.issuer, self.endpoint("token")])
        except ProofError as exc:
            raise OAuthError("invalid_grant", f"assertion: {exc}") from None
        resource: str | None
        if header.get("typ") == "oauth-id-jag+jwt":
            if claims.get("client_id") != client.client_id:
                raise OAuthError("invalid_grant", "the ID-JAG was issued for another client")
            resource = claims.get("resource")
            if resource != self.expected_resource:
                raise OAuthError("invalid_grant", f"the ID-JAG is for resource {resource!r}")
        else:
            resource = self._machine_resource(form)
        jti = claims.get("jti")
        with self.lock:
            if isinstance(jti, str):
                if ("jb:" + jti) in self._jtis:
                    raise OAuthError("invalid_grant", "assertion jti replayed")
                self._jtis.add("jb:" + jti)
        scopes = self._scopes_for(client, form)
        with self.lock:
            return self._issue_locked(client.client_id, scopes, resource, secrets.token_hex(8), jkt=jkt,
                                      refresh=False)

    def _token_exchange(self, client: _Client, form: dict[str, str]) -> dict[str, Any]:
        """As the enterprise IdP (RFC 8693): an ID token this server issued → an ID-JAG for the audience."""
        if form.get("subject_token_type") != ID_TOKEN_TYPE:
            raise OAuthError("invalid_request", "subject_token_type must be the ID token type")
        if form.get("requested_token_type") != ID_JAG_TYPE:
            raise OAuthError("invalid_request", "requested_token_type must be the ID-JAG type")
        audience = form.get("audience", "")
        target_client = self.settings.idp_client_ids.get(audience)
        if target_client is None:
            raise OAuthError("invalid_target", f"no trust set up with the authorization server {audience!r}")
        resource = form.get("resource")
        if not resource:
            raise OAuthError("invalid_request", "resource is missing")
        try:
            claims = verify_jwt(form.get("subject_token", ""), self.signing_key, audience=client.client_id)
        except ProofError as exc:
            raise OAuthError("invalid_grant", f"subject_token: {exc}") from None
        if claims.get("iss") != self.issuer:
            raise OAuthError("invalid_grant", "subject_token was not issued here")
        now = int(time.time())
        jag = sign_jwt(
            self.signing_key,
            {"iss": self.issuer, "sub": claims.get("sub"), "aud": audience, "client_id": target_client,
             "resource": resource, "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(12)},
            typ="oauth-id-jag+jwt",
        )
        return {"access_token": jag, "issued_token_type": ID_JAG_TYPE, "token_type": "N_A", "expires_in": 300}

    def _device_token(self, client: _Client, form: dict[str, str], jkt: str | None) -> dict[str, Any]:
        code = form.get("device_code", "")
        with self.lock:
            self.counters.device_polls += 1
            device = self._devices.get(code)
            if device is None or device.client_id != client.client_id:
                raise OAuthError("invalid_grant", "unknown device_code")
            if self.settings.device_slow_down_next > 0:
                self.settings.device_slow_down_next -= 1
                raise OAuthError("slow_down", "polling too fast")
            if device.expires_at <= time.time():
                raise OAuthError("expired_token", "the device code expired")
            if device.state == "pending":
                raise OAuthError("authorization_pending", "the user has not approved yet")
            if device.state == "denied":
                raise OAuthError("access_denied", "the user denied the request")
            if device.state == "used":
                raise OAuthError("invalid_grant", "the device code was already used")
            device.state = "used"
            return self._issue_locked(client.client_id, device.scopes, device.resource, device.grant_id, jkt=jkt)

    def _exchange_code(self, client: _Client, form: dict[str, str], jkt: str | None = None) -> dict[str, Any]:
        code_value = form.get("code")
        redirect_uri = form.get("redirect_uri")
        verifier = form.get("code_verifier")
        if not code_value:
            raise OAuthError("invalid_request", "code is missing")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is missing (PKCE is required)")
        with self.lock:
            code = self._codes.get(code_value)
            if code is None:
                raise OAuthError("invalid_grant", "unknown authorization code")
            if code.client_id != client.client_id:
                raise OAuthError("invalid_grant", "the code was issued to another client")
            if code.used:
                self.counters.reused_codes += 1
                self._revoke_grant_locked(code.grant_id)
                raise OAuthError("invalid_grant", "the authorization code was already used; its tokens are revoked")
            if code.expires_at <= time.time():
                raise OAuthError("invalid_grant", "the authorization code expired")
            if redirect_uri != code.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
            if not _VERIFIER_RE.fullmatch(verifier):
                raise OAuthError("invalid_grant", "code_verifier is malformed")
            expected = _s256(verifier) if code.method == "S256" else verifier
            if not hmac.compare_digest(expected, code.challenge):
                raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
            self._quirk_resource(form)
            self._check_resource(form, code.resource, required=True)
            if code.dpop_jkt is not None and code.dpop_jkt != jkt:
                raise OAuthError("invalid_grant", "the code is bound to another DPoP key (dpop_jkt)")
            code.used = True
            return self._issue_locked(client.client_id, code.scopes, code.resource, code.grant_id, jkt=jkt)

    def _refresh_grant(self, client: _Client, form: dict[str, str], jkt: str | None = None) -> dict[str, Any]:
        value = form.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "refresh_token is missing")
        with self.lock:
            record = self._refresh.get(value)
            if record is None:
                raise OAuthError("invalid_grant", "unknown refresh token")
            if record.client_id != client.client_id:
                raise OAuthError("invalid_grant", "the refresh token was issued to another client")
            if record.revoked:
                raise OAuthError("invalid_grant", "the refresh token was revoked")
            if record.consumed:
                self.counters.reused_refresh_tokens += 1
                self._revoke_grant_locked(record.grant_id)
                raise OAuthError("invalid_grant", "refresh token reuse detected; the grant is revoked")
            if record.expires_at is not None and record.expires_at <= time.time():
                raise OAuthError("invalid_grant", "the refresh token expired")
            if record.jkt is not None and record.jkt != jkt:
                raise OAuthError("invalid_grant", "the refresh token is bound to another DPoP key")
            if self.settings.require_scope_on_refresh and "scope" not in form:
                raise OAuthError(
                    "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'scope'."
                )
            self._quirk_resource(form)
            scopes = record.scopes
            if "scope" in form:
                asked = form["scope"].split()
                if not set(asked) <= set(record.scopes):
                    raise OAuthError("invalid_scope", "the requested scope exceeds the original grant")
                scopes = asked
            self._check_resource(form, record.resource, required=False)
            record.consumed = True
            return self._issue_locked(client.client_id, scopes, record.resource, record.grant_id, jkt=jkt)

    def _issue_locked(
        self, client_id: str, scopes: list[str], resource: str | None, grant_id: str, *, jkt: str | None = None,
        refresh: bool = True,
    ) -> dict[str, Any]:
        s = self.settings
        now = time.time()
        access = "at-" + secrets.token_urlsafe(32)
        self._access[access] = _Token(
            client_id, list(scopes), resource, now + s.access_token_ttl, grant_id, now, jkt=jkt
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": _ttl_number(s.access_token_ttl),
            "scope": " ".join(scopes),
        }
        if s.issue_refresh_tokens and refresh:
            token = "rt-" + secrets.token_urlsafe(32)
            expiry = now + s.refresh_token_ttl if s.refresh_token_ttl is not None else None
            self._refresh[token] = _Token(client_id, list(scopes), resource, expiry, grant_id, now, jkt=jkt)
            body["refresh_token"] = token
        return body

    def _revoke_grant_locked(self, grant_id: str) -> None:
        if grant_id in self._revoked_grants:
            return
        self._revoked_grants.add(grant_id)
        self.counters.grants_revoked += 1
        for record in [*self._access.values(), *self._refresh.values()]:
            if record.grant_id == grant_id:
                record.revoked = True

    # ----------------------------------------------------------------- revocation (RFC 7009)

    async def _revoke_endpoint(self, request: Request) -> Response:
        if self.settings.revocation_fails:
            return JSONResponse({"error": "temporarily_unavailable", "error_description": "injected"}, status_code=503)
        try:
            form = await self._read_form(request)
            client = await self._authenticate_client(request, form)
        except OAuthError as exc:
            return exc.response()
        token = form.get("token")
        if not token:
            return OAuthError("invalid_request", "token is missing").response()
        with self.lock:
            refresh = self._refresh.get(token)
            access = self._access.get(token)
            if refresh is not None and refresh.client_id == client.client_id:
                # Revoking a refresh token ends the grant (RFC 7009 §2.1), without counting it as reuse.
                for record in [*self._access.values(), *self._refresh.values()]:
                    if record.grant_id == refresh.grant_id:
                        record.revoked = True
                self.counters.revocations += 1
            elif access is not None and access.client_id == client.client_id:
                access.revoked = True
                self.counters.revocations += 1
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    # ----------------------------------------------------------------- PAR (RFC 9126)

    async def _par_endpoint(self, request: Request) -> Response:
        if not self.settings.par_enabled:
            return OAuthError("invalid_request", "pushed authorization requests are not enabled", 404).response()
        try:
            form = await self._read_form(request)
            client = await self._authenticate_client(request, form)
        except OAuthError as exc:
            return exc.response()
        if "request_uri" in form:
            return OAuthError("invalid_request", "request_uri must not be pushed").response()
        if form.get("client_id") != client.client_id:
            return OAuthError("invalid_request", "client_id must be the authenticated client").response()
        redirect_uri = form.get("redirect_uri", "")
        if not self._redirect_allowed(client, redirect_uri):
            return OAuthError("invalid_request", "redirect_uri is not registered for this client").response()
        request_uri = _PAR_PREFIX + secrets.token_urlsafe(24)
        with self.lock:
            self._par[request_uri] = (time.time() + 60, {k: v for k, v in form.items() if k != "client_secret"})
            self.counters.par_requests += 1
        return JSONResponse({"request_uri": request_uri, "expires_in": 60}, status_code=201,
                            headers={"Cache-Control": "no-store"})

    # ----------------------------------------------------------------- device grant (RFC 8628)

    async def _device_authorization_endpoint(self, request: Request) -> Response:
        s = self.settings
        if not s.device_enabled:
            return OAuthError("invalid_request", "the device grant is not enabled", 404).response()
        try:
            form = await self._read_form(request)
            client = await self._authenticate_client(request, form)
            if DEVICE_CODE not in client.grant_types:
                raise OAuthError("unauthorized_client", "the client is not registered for the device grant")
            asked = form.get("scope")
            scopes = asked.split() if asked else [x for x in s.scopes_supported if x != "offline_access"]
            unknown = [x for x in scopes if x not in s.scopes_supported]
            if unknown:
                raise OAuthError("invalid_scope", f"unsupported scope(s): {' '.join(unknown)}")
            resource = form.get("resource")
            if resource is not None and resource != self.expected_resource:
                raise OAuthError("invalid_target", f"unknown resource {resource!r}")
        except OAuthError as exc:
            return exc.response()
        device_code = secrets.token_urlsafe(32)
        alphabet = "BCDFGHJKLMNPQRSTVWXZ"
        user_code = "".join(secrets.choice(alphabet) for _ in range(4)) + "-" + "".join(
            secrets.choice(alphabet) for _ in range(4)
        )
        with self.lock:
            self._devices[device_code] = _Device(
                client.client_id, user_code, scopes, resource or self.expected_resource,
                time.time() + s.device_code_ttl,
            )
        verification = self.endpoint("device")
        return JSONResponse(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": verification,
                "verification_uri_complete": _add_query(verification, {"user_code": user_code}),
                "expires_in": _ttl_number(s.device_code_ttl),
                "interval": _ttl_number(s.device_interval),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _device_page(self, request: Request) -> Response:
        """The verification page: with ``user_code`` it consents at once (like the authorize endpoint)."""
        code = request.query_params.get("user_code", "")
        if code and self.approve_device(code):
            word = "denied" if self.settings.deny else "approved"
            return HTMLResponse(f"<!doctype html><title>Device {word}</title><p>Device login {word}.</p>")
        return HTMLResponse("<!doctype html><title>Enter code</title><p>Unknown or used code.</p>", status_code=400)
