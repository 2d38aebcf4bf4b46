"""A strict OAuth 2.1 authorization server for tests and ``mcprelay demo``.

It implements what an MCP client meets in the wild, and refuses what a careful server refuses:

* RFC 8414 metadata (with path insertion when the issuer has a path), RFC 9207 ``iss`` on redirects;
* RFC 7591 dynamic client registration (native and web clients, three client auth methods);
* the authorization code grant with mandatory PKCE S256 and RFC 8707 resource indicators;
  native clients may use any loopback port (RFC 8252 §7.3), web clients must match exactly;
* single-use codes (a replayed code revokes what it produced);
* refresh token rotation with reuse detection: presenting a spent refresh token revokes the grant;
* RFC 7009 revocation, and an ``introspect`` method for the co-hosted resource server.

Fault knobs in :class:`AuthServerSettings` (503, 429, slow responses, a connection dropped after the
rotation was committed) let tests drive a client through the failures that break real ones.
Everything runs in one uvicorn thread while tests read :attr:`StrictAuthServer.counters` from
another, so state changes happen under a lock and never across an ``await``.
"""

from __future__ import annotations

import asyncio
import base64
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

RAW_SEND_KEY = "mcprelay.raw_send"
"""Scope key under which :class:`RawSendCapture` keeps the server's own ``send`` callable."""

_AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
_GRANT_TYPES = ("authorization_code", "refresh_token")
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CODE_TTL = 120.0


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
        }
        if s.dcr_enabled:
            doc["registration_endpoint"] = self.endpoint("register")
        if s.pkce_methods is not None:
            doc["code_challenge_methods_supported"] = list(s.pkce_methods)
        return doc

    def routes(self, base_url: str, *, default_resource: str | None = None) -> list[Route]:
        self.bind(base_url, default_resource=default_resource)
        p = self._issuer_path
        routes = [
            Route(f"/.well-known/oauth-authorization-server{p}", self._metadata_endpoint, methods=["GET"]),
            Route(f"{p}/authorize", self._authorize_endpoint, methods=["GET"]),
            Route(f"{p}/token", self._token_endpoint, methods=["POST"]),
            Route(f"{p}/revoke", self._revoke_endpoint, methods=["POST"]),
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
    ) -> None:
        method = token_endpoint_auth_method or ("client_secret_basic" if secret else "none")
        if method not in _AUTH_METHODS:
            raise ValueError(f"unknown token_endpoint_auth_method {method!r}")
        if method != "none" and not secret:
            raise ValueError(f"{method} needs a secret")
        with self.lock:
            self._clients[client_id] = _Client(
                client_id, secret, list(redirect_uris or []), application_type, method, scope
            )

    def introspect(self, token: str) -> dict[str, Any] | None:
        """RFC 7662-shaped view of an access token; ``None`` when it was never issued."""
        with self.lock:
            record = self._access.get(token)
            if record is None:
                return None
            now = time.time()
            if record.revoked or (record.expires_at is not None and record.expires_at <= now):
                return {"active": False}
            return {
                "active": True,
                "client_id": record.client_id,
                "scope": " ".join(record.scopes),
                "aud": record.resource,
                "resource": record.resource,
                "exp": record.expires_at,
                "iat": record.issued_at,
                "iss": self.issuer,
                "token_type": "Bearer",
            }

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
        return JSONResponse(self.metadata())

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
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            raise OAuthError("invalid_redirect_uri", "redirect_uris must be a non-empty list of strings")
        for uri in uris:
            self._check_registrable_redirect(uri)
        app_type = body.get("application_type", "web")
        if app_type not in ("native", "web"):
            raise OAuthError("invalid_client_metadata", f"application_type {app_type!r} is not native or web")
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in _AUTH_METHODS:
            raise OAuthError("invalid_client_metadata", f"token_endpoint_auth_method {method!r} not supported")
        grant_types = body.get("grant_types", ["authorization_code"])
        if not isinstance(grant_types, list) or not set(grant_types) <= set(_GRANT_TYPES):
            raise OAuthError("invalid_client_metadata", f"grant_types {grant_types!r} not supported")
        response_types = body.get("response_types", ["code"])
        if not isinstance(response_types, list) or not set(response_types) <= {"code"}:
            raise OAuthError("invalid_client_metadata", f"response_types {response_types!r} not supported")
        scope = body.get("scope")
        if scope is not None:
            if not isinstance(scope, str) or not set(scope.split()) <= set(self.settings.scopes_supported):
                raise OAuthError("invalid_client_metadata", f"scope {scope!r} not supported")
        client_id = "client-" + secrets.token_urlsafe(12)
        secret = secrets.token_urlsafe(24) if method != "none" else None
        client = _Client(client_id, secret, list(uris), app_type, method, scope)
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
            self._codes[code] = _Code(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                challenge=challenge,
                method=method,
                scopes=scopes,
                resource=resource,
                expires_at=time.time() + _CODE_TTL,
                grant_id=secrets.token_hex(8),
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
            response = await self._token(request, form, grant_type)
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
            client = await self._authenticate_client(request, form)
            if grant_type == "authorization_code":
                return self._json_tokens(self._exchange_code(client, form))
            if grant_type == "refresh_token":
                body = self._refresh_grant(client, form)
                with self.lock:
                    drop = s.token_drop_after_commit > 0
                    if drop:
                        s.token_drop_after_commit -= 1
                return _DropConnection() if drop else self._json_tokens(body)
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is missing")
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        except OAuthError as exc:
            return exc.response()

    @staticmethod
    def _json_tokens(body: dict[str, Any]) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

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

    @staticmethod
    def _invalid_client(description: str) -> OAuthError:
        challenge = {"WWW-Authenticate": 'Basic realm="token"'}
        return OAuthError("invalid_client", description, status=401, headers=challenge)

    def _check_resource(self, form: dict[str, str], bound: str | None, *, required: bool) -> None:
        resource = form.get("resource")
        if resource is None:
            if required and self.settings.require_resource:
                raise OAuthError("invalid_target", "the resource parameter (RFC 8707) is required")
            return
        if resource != bound:
            raise OAuthError("invalid_target", f"resource {resource!r} does not match the grant")

    def _exchange_code(self, client: _Client, form: dict[str, str]) -> dict[str, Any]:
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
            self._check_resource(form, code.resource, required=True)
            code.used = True
            return self._issue_locked(client.client_id, code.scopes, code.resource, code.grant_id)

    def _refresh_grant(self, client: _Client, form: dict[str, str]) -> dict[str, Any]:
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
            scopes = record.scopes
            if "scope" in form:
                asked = form["scope"].split()
                if not set(asked) <= set(record.scopes):
                    raise OAuthError("invalid_scope", "the requested scope exceeds the original grant")
                scopes = asked
            self._check_resource(form, record.resource, required=False)
            record.consumed = True
            return self._issue_locked(client.client_id, scopes, record.resource, record.grant_id)

    def _issue_locked(self, client_id: str, scopes: list[str], resource: str | None, grant_id: str) -> dict[str, Any]:
        s = self.settings
        now = time.time()
        access = "at-" + secrets.token_urlsafe(32)
        self._access[access] = _Token(client_id, list(scopes), resource, now + s.access_token_ttl, grant_id, now)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": _ttl_number(s.access_token_ttl),
            "scope": " ".join(scopes),
        }
        if s.issue_refresh_tokens:
            refresh = "rt-" + secrets.token_urlsafe(32)
            expiry = now + s.refresh_token_ttl if s.refresh_token_ttl is not None else None
            self._refresh[refresh] = _Token(client_id, list(scopes), resource, expiry, grant_id, now)
            body["refresh_token"] = refresh
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
