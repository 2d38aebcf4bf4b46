"""The three OAuth clients the benchmarks compare, each as ``async with session(...) as client``.

* mcprelay: a login through ``mcprelay.oauth.flow.login`` into a file store, then the token manager
  plugged into the SDK transport — the same path ``mcprelay call`` and the gateway take.
* the official SDK: ``mcp.client.auth.OAuthClientProvider`` with an in-memory ``TokenStorage``; its
  redirect handler plays the browser of an auto-consent server (GET the authorization URL, read the
  302's ``Location`` without following it) and the callback handler hands back that redirect's
  ``code``, ``state`` and ``iss``.
* naive: the seeded failure. It holds the tokens of an mcprelay login and refreshes on its own in
  every request that finds the token expired (or gets a 401), with no coordination between requests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from mcprelay import diaglog
from mcprelay.config import OAuthConfig, ServerConfig
from mcprelay.connect import token_manager
from mcprelay.httpclient import new_http_client
from mcprelay.oauth.auth import OAuth
from mcprelay.oauth.flow import LoginOptions, login
from mcprelay.oauth.grant import StoredGrant, load_grant
from mcprelay.store.file import FileStore
from mcprelay.testing.browser import follow
from mcprelay.transport import open_session

# --------------------------------------------------------------------------------------------- mcprelay


@dataclass
class RelayLogin:
    home: Path
    cfg: ServerConfig
    store: FileStore

    def grant(self) -> StoredGrant:
        grant = load_grant(self.store, self.cfg.name)
        assert grant is not None
        return grant


async def relay_login(url: str, home: Path, name: str = "bench") -> RelayLogin:
    """Log in to ``url`` with mcprelay (auto-consent browser), tokens in a file store under ``home``."""
    diaglog.configure(home)
    cfg = ServerConfig(name=name, url=url, oauth=OAuthConfig())
    store = FileStore(home)
    async with new_http_client() as http:
        await login(cfg, store, http, LoginOptions(open_browser=follow, notify=lambda _m: None))
    return RelayLogin(home, cfg, store)


@asynccontextmanager
async def relay_session(relay: RelayLogin) -> AsyncIterator[Client]:
    async with new_http_client() as http:
        oauth = OAuth(token_manager(relay.cfg, relay.store, http, relay.home))
        async with open_session(relay.cfg.url, auth=oauth) as client:
            yield client


# --------------------------------------------------------------------------------------------- SDK


class MemoryStorage:
    """The SDK's ``TokenStorage`` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class AutoConsent:
    """Redirect + callback handlers for an auto-consent server: the 302 carries the code at once."""

    def __init__(self) -> None:
        self.location: str | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
            response = await http.get(authorization_url)
        assert response.status_code in (302, 303), response.text
        self.location = response.headers["location"]

    async def callback(self) -> AuthorizationCodeResult:
        assert self.location is not None
        query = parse_qs(urlsplit(self.location).query)
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )


def sdk_provider(url: str) -> OAuthClientProvider:
    handlers = AutoConsent()
    metadata = OAuthClientMetadata(
        redirect_uris=["http://127.0.0.1:9/callback"],  # never reached: the handler reads the 302
        client_name="bench-sdk",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="mcp:read mcp:tools offline_access",
    )
    return OAuthClientProvider(
        url, metadata, MemoryStorage(), redirect_handler=handlers.redirect, callback_handler=handlers.callback
    )


@asynccontextmanager
async def sdk_session(url: str, provider: OAuthClientProvider) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(60, read=300))
    async with http, Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        yield client


def sdk_expiry(provider: OAuthClientProvider) -> float | None:
    """When the SDK client believes its access token expires (it keeps this in memory only)."""
    return provider.context.token_expiry_time


# --------------------------------------------------------------------------------------------- naive


class NaiveAuth(httpx2.Auth):
    """Refreshes inside every request that finds the token expired: N requests, N refreshes."""

    def __init__(self, grant: StoredGrant) -> None:
        self.grant = grant
        self.access = grant.tokens.access_token
        self.refresh_token = grant.tokens.refresh_token
        self.expires_at = grant.tokens.expires_at or float("inf")

    def _refresh_request(self) -> httpx2.Request:
        form = {"grant_type": "refresh_token", "refresh_token": self.refresh_token or "",
                "client_id": self.grant.client_id, "resource": self.grant.resource}
        return httpx2.Request("POST", self.grant.token_endpoint, data=form)

    def _take(self, response: httpx2.Response) -> None:
        if response.status_code == 200:
            body = response.json()
            self.access = body["access_token"]
            self.refresh_token = body.get("refresh_token", self.refresh_token)
            self.expires_at = time.time() + float(body.get("expires_in", 3600))

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if time.time() >= self.expires_at:
            refresh = yield self._refresh_request()
            await refresh.aread()
            self._take(refresh)
        request.headers["Authorization"] = f"Bearer {self.access}"
        response = yield request
        if response.status_code == 401:
            refresh = yield self._refresh_request()
            await refresh.aread()
            self._take(refresh)
            request.headers["Authorization"] = f"Bearer {self.access}"
            yield request


@asynccontextmanager
async def naive_session(url: str, grant: StoredGrant) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(auth=NaiveAuth(grant), timeout=httpx2.Timeout(60, read=300))
    async with http, Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        yield client


# --------------------------------------------------------------------------------------------- no auth


@asynccontextmanager
async def plain_session(url: str) -> AsyncIterator[Client]:
    async with open_session(url) as client:
        yield client
