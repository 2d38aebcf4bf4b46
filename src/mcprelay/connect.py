"""From a configured server to an authenticated MCP client session.

This is where the data flow ends: config → (stored grant from a login) → token manager → transport.
The ``call`` command and the gateway both open upstreams through here, so a server is reached the
same way whichever door the request came in by.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import TextIO

import anyio.to_thread
import httpx2
from mcp.client.client import Client

from mcprelay.config import MACHINE_GRANTS, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError, login_required, new_correlation_id
from mcprelay.inbound import Liveness
from mcprelay.oauth.auth import OAuth, StepUp
from mcprelay.oauth.discovery import probe
from mcprelay.oauth.grant import StoredGrant, load_grant, token_key
from mcprelay.oauth.grantlock import FileGrantLock, GrantLock
from mcprelay.oauth.recovery import RecoveryBox
from mcprelay.oauth.refresher import GrantRefresher, ReacquireRequest, RefreshTokenRequest, RenewalByGrant
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenSet
from mcprelay.oauth.rfc7591 import ClientRegistration, registration_key
from mcprelay.oauth.tokens import TokenManager
from mcprelay.secretref import resolve_server
from mcprelay.status import note_auth
from mcprelay.store.base import TokenStore, watching
from mcprelay.transport import DEFAULT_MAX_MESSAGE_BYTES, ClientHandlers, OnClosed, open_session, open_stdio_session

#: Runs an interactive login for the server (optionally with the given scopes) and stores the grant.
Login = Callable[[list[str] | None], Awaitable[None]]


def credentials_for(server: ServerConfig, store: TokenStore) -> Callable[[StoredGrant], ClientCredentials]:
    """How to authenticate a refresh of ``grant``: read at refresh time, since a login may change it."""

    def resolve(grant: StoredGrant) -> ClientCredentials:
        if grant.extra.get("grant"):  # a machine grant: the configured client, key included
            from mcprelay.oauth.clientcreds import configured_client

            return configured_client(
                server.oauth, server=server.name, issuer=grant.issuer, auth_methods=grant.extra.get("auth_methods"),
                signing_algs=grant.extra.get("signing_algs"),
            )
        if grant.registration_kind == "dcr":
            data = store.get(registration_key(server.name, grant.issuer))
            if data:
                registration = ClientRegistration.from_dict(data)
                if registration.client_id == grant.client_id:
                    return registration.credentials
            return ClientCredentials(grant.client_id)
        if grant.registration_kind == "preregistered":
            return ClientCredentials(
                grant.client_id, server.oauth.client_secret or None, grant.token_endpoint_auth_method
            )
        return ClientCredentials(grant.client_id)

    return resolve


def grant_lock(store: TokenStore, home: Path) -> GrantLock:
    """The grant lock that matches the store: a Redis lease for a shared store, else an OS file lock."""
    lease = getattr(store, "grant_lock", None)
    if callable(lease):
        lock: GrantLock = lease()
        return lock
    return FileGrantLock(home / "locks")


def token_manager(server: ServerConfig, store: TokenStore, http: httpx2.AsyncClient, home: Path) -> TokenManager:
    """The token manager for ``server``: single flight in front of the refresher, failures kept for ``auth status``.

    A grant with a refresh token is refreshed; a machine grant (client credentials, JWT bearer, token
    exchange) has none and is renewed by asking again — both under the same single flight and grant lock.
    """
    from mcprelay import status

    def outcome(error: McpRelayError | None) -> None:
        shared = getattr(store, "shared", False)
        if error is not None and error.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE and shared:
            return  # the status lives in that store: nothing to write it to
        if error is None:
            status.clear_refresh_error(home, server.name, store)
        else:
            status.record_error(home, server.name, error, store)

    async def reacquire(grant: StoredGrant, correlation_id: str) -> TokenSet:
        from mcprelay.oauth.acquire import reacquire as ask_again

        return await ask_again(http, server, grant, correlation_id)

    request = RenewalByGrant(RefreshTokenRequest(http, credentials_for(server, store)), ReacquireRequest(reacquire))
    refresher = GrantRefresher(
        server.name, store, grant_lock(store, home), request, recovery=RecoveryBox(home), on_outcome=outcome,
    )

    async def renewed(grant: StoredGrant, started: float, error: BaseException | None) -> None:
        """A row in the activity log per refresh (or machine re-acquisition), under a request id of its own
        that a failure carries, so that ``activity list --request-id`` finds it."""
        from mcprelay.activity import ActivityRecord, record_now

        request_id = new_correlation_id()
        failure = error if isinstance(error, McpRelayError) else None
        if failure is not None:
            failure.with_context(request_id=request_id)
        status = "ok" if error is None else "error"
        error_type = str(failure.error_type) if failure else (type(error).__name__ if error else None)
        record = ActivityRecord(
            request_id=request_id, correlation_id=(failure.correlation_id if failure else None)
            or refresher.last_correlation_id, server=server.name, tool=str(grant.extra.get("grant") or "refresh_token"),
            started_at=started, duration_ms=round((time.time() - started) * 1000, 1), status=status,
            error_type=error_type, request_bytes=0, response_bytes=0, kind="refresh",
        )
        await anyio.to_thread.run_sync(record_now, home, record)

    return TokenManager(server.name, refresher, on_renewal=renewed)


async def ensure_login(
    server: ServerConfig, store: TokenStore, http: httpx2.AsyncClient, login: Login | None
) -> bool:
    """Make sure a grant exists when the server needs one; return whether the server needs OAuth.

    Without a stored grant the server is probed: one that answers without a challenge needs no
    login. One that challenges gets the interactive ``login`` when there is one, else
    ``login_required`` — a background process never opens a browser on its own.
    """
    if await anyio.to_thread.run_sync(load_grant, store, server.name) is not None:
        return True
    challenge = await probe(http, server.url)
    if challenge is None:
        return False
    if server.oauth.grant in MACHINE_GRANTS:
        # No person needed: the configured credentials log in by themselves, in the background too.
        from mcprelay.oauth.flow import LoginOptions
        from mcprelay.oauth.flow import login as machine

        await machine(server, store, http, LoginOptions(headless=True), challenge=challenge)
        return True
    if login is None:
        raise login_required(server.name, f"{server.name} requires a login and none is stored")
    await login(None)
    return True


def _following_logouts(
    store: TokenStore, server: str, auth: OAuth | None, on_closed: OnClosed | None
) -> AbstractAsyncContextManager[None]:
    """While a session is open: when the grant is deleted anywhere (a logout on another machine, a sibling
    that found it dead), forget it here and end the session, so this process stops using it at once and
    reconnects into ``login_required``. A store without a change feed has nothing to follow."""
    if auth is None:
        return nullcontext()
    manager = auth.manager

    def changed(op: str) -> None:
        if op == "del":
            manager.forget()
            if on_closed is not None:
                on_closed()

    return watching(store, token_key(server), changed)


@asynccontextmanager
async def open_upstream(
    server: ServerConfig,
    *,
    store: TokenStore,
    http: httpx2.AsyncClient,
    home: Path,
    login: Login | None = None,
    errlog: TextIO | None = None,
    request_timeout: float = 60.0,
    handlers: ClientHandlers | None = None,
    on_closed: OnClosed | None = None,
    liveness: Liveness | None = None,
) -> AsyncIterator[tuple[Client, OAuth | None]]:
    """An initialized session to ``server`` and the auth plugged into it (None: no OAuth).

    ``handlers`` get the server's notifications and requests from the start of the session (the gateway
    relists on ``list_changed`` and relays the rest); ``on_closed`` hears when the server's side ends
    (the gateway reconnects); ``liveness`` when bytes last arrived (the gateway's ping consults it).
    Every message from the server is capped at the server's ``max_result_bytes``.
    """
    server = resolve_server(server, home, store)  # ${env:…}/${keyring:…}: at use, in this copy only
    cap = server.max_result_bytes or DEFAULT_MAX_MESSAGE_BYTES
    if server.transport == "stdio":
        async with open_stdio_session(
            server.command, server.args, server.env, errlog=errlog, handlers=handlers, on_closed=on_closed,
            max_message_bytes=cap, liveness=liveness,
        ) as client:
            yield client, None
        return
    needs_oauth = await ensure_login(server, store, http, login)
    await anyio.to_thread.run_sync(note_auth, home, server.name, needs_oauth, store)
    auth: OAuth | None = None
    if needs_oauth:
        step_up: StepUp | None = None
        if login is not None:
            interactive = login

            async def step_up(scopes: list[str]) -> None:
                await interactive(scopes)

        auth = OAuth(token_manager(server, store, http, home), step_up=step_up)
    try:
        async with _following_logouts(store, server.name, auth, on_closed), open_session(
            server.url, transport=server.transport, auth=auth, headers=server.headers,
            request_timeout=request_timeout, handlers=handlers, on_closed=on_closed,
            max_message_bytes=cap, liveness=liveness,
        ) as client:
            yield client, auth
    except Exception:
        # The SDK transport wraps what the auth flow raised; the structured error is the real cause.
        if auth is not None and auth.last_error is not None:
            raise auth.last_error from None
        raise
