"""An OAuth-protected MCP server (and an open one) built on the official SDK, for tests and the demo.

The SDK's streamable HTTP app does the MCP part. In front of it sits :class:`BearerGate`, our own
resource-server check, because a strict server must do more than the SDK's stock middleware:

* a 401 carries ``WWW-Authenticate: Bearer resource_metadata="…", scope="…"`` (MCP authorization,
  RFC 9728 §5.1), with ``error="invalid_token"`` only when a token was actually presented;
* the token's audience (its RFC 8707 resource) must be this server's URL, or it is refused;
* missing scopes give 403 ``insufficient_scope``.

The authorization server (when given) is served from the same origin, and the protected resource
metadata is served at both ``/.well-known/oauth-protected-resource/mcp`` and the root form.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcprelay.testing.authserver import AuthServerCounters, RawSendCapture, StrictAuthServer
from mcprelay.testing.jwtcheck import ProofError, check_dpop_proof

_RESOURCE_SCOPES_EXCLUDED = {"offline_access", "openid"}


def _metadata_path(resource: str, base_url: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the origin and the resource's path."""
    path = resource[len(base_url) :] if resource.startswith(base_url) else ""
    return "/.well-known/oauth-protected-resource" + (path if path != "/" else "")


class BearerGate:
    """Resource-server check in front of an ASGI app: token known, live, for this audience, with scopes."""

    def __init__(
        self,
        app: ASGIApp,
        auth: StrictAuthServer,
        *,
        resource: str,
        resource_metadata_url: str,
        challenge_scopes: list[str],
        required_scopes: list[str],
        dpop_required: bool = False,
        dpop_nonce: bool = False,
    ) -> None:
        self.app = app
        self.auth = auth
        self.resource = resource
        self.resource_metadata_url = resource_metadata_url
        self.challenge_scopes = challenge_scopes
        self.required_scopes = required_scopes
        self.dpop_required = dpop_required
        self.nonce = ("rs-nonce-" + secrets.token_urlsafe(8)) if dpop_nonce else None
        self._jtis: set[str] = set()

    def _challenge(self, error: str | None, description: str | None, scopes: list[str], scheme: str) -> str:
        parts = [f'resource_metadata="{self.resource_metadata_url}"']
        if scopes:
            parts.append(f'scope="{" ".join(scopes)}"')
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{description}"')
        if scheme == "DPoP":
            parts.append('algs="ES256 RS256"')
        return f"{scheme} " + ", ".join(parts)

    async def _refuse(
        self, send: Send, status: int, error: str | None, description: str, scopes: list[str],
        *, scheme: str | None = None, nonce: bool = False,
    ) -> None:
        scheme = scheme or ("DPoP" if self.dpop_required else "Bearer")
        challenge = self._challenge(error, description if error else None, scopes, scheme)
        body = json.dumps({"error": error or "unauthorized", "error_description": description}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        if nonce and self.nonce:
            headers.append((b"dpop-nonce", self.nonce.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = ""
        proofs: list[str] = []
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization" and not header:
                header = value.decode("latin-1")
            elif key.lower() == b"dpop":
                proofs.append(value.decode("latin-1"))
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "dpop") or not token:
            await self._refuse(send, 401, None, "authentication required", self.challenge_scopes)
            return
        info = self.auth.introspect(token)
        if not info or not info.get("active"):
            await self._refuse(send, 401, "invalid_token", "token unknown, expired or revoked", self.challenge_scopes)
            return
        bound = (info.get("cnf") or {}).get("jkt")
        if scheme.lower() == "dpop":
            if not bound:
                await self._refuse(send, 401, "invalid_token", "a Bearer token presented as DPoP", [], scheme="DPoP")
                return
            try:
                jkt, _claims = check_dpop_proof(
                    proofs[0] if len(proofs) == 1 else ",".join(proofs), method=scope.get("method", "GET"),
                    url=self.resource, access_token=token, nonce=self.nonce, seen_jtis=self._jtis,
                )
            except ProofError as exc:
                if str(exc) == "nonce":
                    self.auth.counters.rs_nonce_challenges += 1
                    await self._refuse(send, 401, "use_dpop_nonce", "a DPoP nonce is required", [], scheme="DPoP",
                                       nonce=True)
                    return
                await self._refuse(send, 401, "invalid_dpop_proof", str(exc), [], scheme="DPoP")
                return
            if jkt != bound:
                await self._refuse(send, 401, "invalid_dpop_proof", "the proof key is not the token's key", [],
                                   scheme="DPoP")
                return
            self.auth.counters.rs_dpop_proofs += 1
        elif bound:
            await self._refuse(send, 401, "invalid_token", "the token is DPoP-bound; present it with DPoP", [],
                               scheme="DPoP")
            return
        elif self.dpop_required:
            await self._refuse(send, 401, "invalid_token", "this resource requires DPoP-bound tokens",
                               self.challenge_scopes)
            return
        exp = info.get("exp")
        if exp is not None and float(exp) <= time.time():
            await self._refuse(send, 401, "invalid_token", "token expired", self.challenge_scopes)
            return
        if info.get("aud") != self.resource:
            reason = "token was issued for another resource"
            await self._refuse(send, 401, "invalid_token", reason, self.challenge_scopes)
            return
        scopes = str(info.get("scope") or "").split()
        missing = [s for s in self.required_scopes if s not in scopes]
        if missing:
            wanted = list(dict.fromkeys([*scopes, *self.required_scopes]))
            await self._refuse(send, 403, "insufficient_scope", f"missing scope(s): {' '.join(missing)}", wanted)
            return
        access = AccessToken(
            token=token,
            client_id=str(info["client_id"]),
            scopes=scopes,
            expires_at=int(exp) if exp is not None else None,
            resource=self.resource,
            claims={"iss": info.get("iss")},
        )
        user = AuthenticatedUser(access)
        scope["user"] = user
        scope["auth"] = AuthCredentials(scopes)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)


def _caller(ctx: Context) -> dict[str, Any]:
    request = ctx.request_context.request
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if isinstance(user, AuthenticatedUser):
        return {"client_id": user.access_token.client_id, "scopes": list(user.access_token.scopes)}
    return {"client_id": None, "scopes": []}


def build_mcp(counters: AuthServerCounters) -> MCPServer[Any]:
    """The SDK server with the test tools; ``sleep`` tracks concurrency in ``counters``."""
    server: MCPServer[Any] = MCPServer("mcprelay-test", version="0.1.0", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep asynchronously; counts how many calls are in flight at once."""
        counters.tool_in_flight += 1
        counters.tool_in_flight_peak = max(counters.tool_in_flight_peak, counters.tool_in_flight)
        try:
            await anyio.sleep(seconds)
        finally:
            counters.tool_in_flight -= 1
        return "slept"

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """The OAuth client and scopes of the caller's token."""
        return _caller(ctx)

    @server.tool()
    def add(a: int, b: int) -> int:
        """a + b."""
        return a + b

    return server


def _mcp_route(server: MCPServer[Any], mcp_path: str) -> tuple[ASGIApp, Any]:
    """The SDK's streamable HTTP handler and the lifespan that runs its session manager."""
    server.streamable_http_app(streamable_http_path=mcp_path, host="127.0.0.1")
    manager = server.session_manager
    handler = StreamableHTTPASGIApp(manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return handler, lifespan


def build_app(
    base_url: str,
    *,
    auth: StrictAuthServer | None,
    mcp_path: str = "/mcp",
    required_scopes: list[str] | None = None,
    dpop_required: bool = False,
    dpop_nonce: bool = False,
) -> ASGIApp:
    """The authorization server (if any) and the MCP server at ``<base_url><mcp_path>``, on one origin.

    ``dpop_required``: the resource demands DPoP-bound tokens (metadata and ``DPoP`` challenges);
    ``dpop_nonce``: DPoP proofs must carry the resource's nonce (RFC 9449 §9).
    """
    if auth is None:
        return build_open_app(base_url, mcp_path=mcp_path)
    base = base_url.rstrip("/")
    resource = f"{base}{mcp_path}"
    routes: list[Route] = list(auth.routes(base, default_resource=resource))
    server = build_mcp(auth.counters)
    handler, lifespan = _mcp_route(server, mcp_path)

    resource_scopes = [s for s in auth.settings.scopes_supported if s not in _RESOURCE_SCOPES_EXCLUDED]
    required = list(required_scopes or [])
    metadata_path = _metadata_path(resource, base)
    metadata_url = base + metadata_path
    prm: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [auth.issuer],
        "scopes_supported": resource_scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcprelay test server",
    }
    if dpop_required:
        prm["dpop_bound_access_tokens_required"] = True
        prm["dpop_signing_alg_values_supported"] = ["ES256", "RS256"]

    async def protected_resource_metadata(request: Request) -> Response:
        return JSONResponse(prm, headers={"Access-Control-Allow-Origin": "*"})

    routes.append(Route(metadata_path, protected_resource_metadata, methods=["GET"]))
    if metadata_path != "/.well-known/oauth-protected-resource":
        routes.append(Route("/.well-known/oauth-protected-resource", protected_resource_metadata, methods=["GET"]))
    gate = BearerGate(
        handler,
        auth,
        resource=resource,
        resource_metadata_url=metadata_url,
        challenge_scopes=required or resource_scopes,
        required_scopes=required,
        dpop_required=dpop_required,
        dpop_nonce=dpop_nonce,
    )
    routes.append(Route(mcp_path, gate))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.counters = auth.counters
    app.state.mcp = server
    return RawSendCapture(app)


def build_open_app(base_url: str, *, mcp_path: str = "/mcp", counters: AuthServerCounters | None = None) -> ASGIApp:
    """The same tools without any authorization; counters are at ``app.state.counters``."""
    counters = counters or AuthServerCounters()
    server = build_mcp(counters)
    handler, lifespan = _mcp_route(server, mcp_path)
    app = Starlette(routes=[Route(mcp_path, handler)], lifespan=lifespan)
    app.state.counters = counters
    app.state.mcp = server
    return app


def _big_result_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("mcprelay-big", version="0.1.0", log_level="WARNING")

    @server.tool()
    def big(size: int) -> str:
        """``size`` bytes of text."""
        return "x" * size

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server


def build_big_result_sse_app(sse_path: str = "/sse") -> Starlette:
    """The ``big(size)`` and ``echo`` tools over the legacy HTTP+SSE transport (its per-event cap's tests)."""
    return _big_result_server().sse_app(sse_path=sse_path, message_path="/messages/", host="127.0.0.1")


def build_big_result_app(base_url: str, *, json_response: bool, mcp_path: str = "/mcp") -> ASGIApp:
    """An open server whose ``big(size)`` tool answers with ``size`` bytes of text (the size cap's tests);
    ``json_response``: answers as one JSON body, else as an event stream."""
    server = _big_result_server()
    server.streamable_http_app(streamable_http_path=mcp_path, host="127.0.0.1", json_response=json_response)
    manager = server.session_manager

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(mcp_path, StreamableHTTPASGIApp(manager))], lifespan=lifespan)
