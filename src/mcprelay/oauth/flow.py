"""One login, start to finish: discovery → registration → loopback listener → browser → code → tokens.

The order of the steps is the design:
- the listener is bound *before* anything is registered or any browser opens, so a port that is
  busy either heals (a cached port: register again on the port we hold) or fails at once (a port
  the user configured) — the browser never lands on someone else's process;
- the browser is opened off the event loop, because a text browser blocks until it exits while
  the callback must still be served;
- the page the browser shows says "success" only after the code exchange succeeded.
"""

from __future__ import annotations

import socket
import sys
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import anyio
import anyio.to_thread
import httpx2

from mcprelay import diaglog
from mcprelay.config import ServerConfig
from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id
from mcprelay.oauth.discovery import DiscoveryResult, discover, probe, select_scope
from mcprelay.oauth.grant import StoredGrant, token_key
from mcprelay.oauth.pkce import PKCE, new_state
from mcprelay.oauth.rfc6749 import TokenEndpointError, token_request
from mcprelay.oauth.rfc6750 import Challenge
from mcprelay.oauth.rfc7591 import (
    ClientRegistration,
    client_id_metadata_document,
    preregistered,
    register,
    registration_key,
)
from mcprelay.oauth.rfc8252 import CallbackResult, LoopbackListener, acquire_listener
from mcprelay.store.base import TokenStore


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class LoginOptions:
    headless: bool = False
    open_browser: Callable[[str], bool] = webbrowser.open
    notify: Callable[[str], None] = _stderr
    # Headless in a terminal: a blocking reader of the pasted redirect URL (None: only the loopback).
    read_pasted_url: Callable[[], str] | None = None
    timeout: float | None = None
    # How the loopback socket is bound; tests inject failures such as EACCES (Windows excluded ports).
    bind: Callable[[str, int], socket.socket] | None = None


@dataclass
class LoginOutcome:
    server: str
    correlation_id: str
    grant: StoredGrant | None
    discovery: DiscoveryResult | None = None
    registration: ClientRegistration | None = None
    browser_opened: bool = False
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def auth_required(self) -> bool:
        return self.grant is not None


class _Steps:
    def __init__(self, outcome: LoginOutcome) -> None:
        self.outcome = outcome
        self.last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.outcome.steps.append((name, round((now - self.last) * 1000, 1)))
        self.last = now


def authorization_url(
    discovery: DiscoveryResult,
    registration: ClientRegistration,
    *,
    redirect_uri: str,
    pkce: PKCE,
    state: str,
    scope: str | None,
    extra_params: dict[str, str],
) -> str:
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": registration.client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        "state": state,
        "resource": discovery.resource,
    }
    if scope:
        params["scope"] = scope
    # extra_params may add (audience, prompt, ...) and may override resource, never PKCE or state.
    protected = {"response_type", "client_id", "redirect_uri", "code_challenge", "code_challenge_method", "state"}
    params.update({k: v for k, v in extra_params.items() if k not in protected})
    endpoint = discovery.metadata.authorization_endpoint
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


async def _registration(
    http: httpx2.AsyncClient,
    server: ServerConfig,
    discovery: DiscoveryResult,
    store: TokenStore,
    correlation_id: str,
) -> tuple[ClientRegistration | None, ClientRegistration | None]:
    """(fixed registration, cached DCR registration): the first when no registration is needed."""
    oauth, metadata = server.oauth, discovery.metadata
    if oauth.client_id:
        return preregistered(metadata, oauth.client_id, oauth.client_secret or None), None
    if oauth.client_metadata_url and metadata.client_id_metadata_document_supported:
        return client_id_metadata_document(metadata, oauth.client_metadata_url), None
    cached = await anyio.to_thread.run_sync(store.get, registration_key(server.name, metadata.issuer))
    if cached:
        registration = ClientRegistration.from_dict(cached)
        if registration.kind == "dcr" and registration.issuer == metadata.issuer and registration.usable():
            return None, registration
    return None, None


async def _exchange_code(
    http: httpx2.AsyncClient,
    discovery: DiscoveryResult,
    registration: ClientRegistration,
    *,
    code: str,
    redirect_uri: str,
    pkce: PKCE,
    resource: str,
    server: str,
    correlation_id: str,
) -> StoredGrant:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": pkce.verifier,
        "resource": resource,
    }
    tokens = await token_request(
        http,
        discovery.metadata.token_endpoint,
        registration.credentials,
        form,
        server=server,
        correlation_id=correlation_id,
        failure_type=ErrorType.CODE_FLOW_FAILED,
    )
    return StoredGrant(
        server=server,
        issuer=discovery.metadata.issuer,
        client_id=registration.client_id,
        resource=resource,
        token_endpoint=discovery.metadata.token_endpoint,
        registration_kind=registration.kind,
        tokens=tokens,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method=registration.credentials.auth_method,
    )


async def _open_browser(url: str, options: LoginOptions, server: str, correlation_id: str) -> None:
    try:
        opened = bool(await anyio.to_thread.run_sync(options.open_browser, url, abandon_on_cancel=True))
    except Exception as exc:  # a broken BROWSER setting must not kill the login
        diaglog.event("browser_failed", server=server, correlation_id=correlation_id, error=type(exc).__name__)
        opened = False
    if not opened:
        options.notify(f"Could not open a browser. Open this URL to log in to {server}:\n\n  {url}\n")


async def _paste_loop(listener: LoopbackListener, options: LoginOptions) -> None:
    assert options.read_pasted_url is not None
    options.notify("Or paste the URL the browser was redirected to, then press Enter:")
    while True:
        line = await anyio.to_thread.run_sync(options.read_pasted_url, abandon_on_cancel=True)
        if not line:
            return  # end of input: the loopback may still deliver
        try:
            listener.submit_redirect_url(line.strip())
            return
        except McpRelayError as exc:
            options.notify(f"{exc.message}. Paste the full redirect URL again:")


async def _authorize(
    url: str, listener: LoopbackListener, options: LoginOptions, wait_s: float, server: str, correlation_id: str
) -> tuple[str, bool]:
    """Send the user to ``url`` and wait for the code: (code, whether a browser was launched).

    The browser runs beside the wait, never before it: a text browser (or the test's redirect
    follower) only returns once the callback page arrives, and the listener sends that page only
    after the code exchange — waiting for the browser first would deadlock until a timeout.
    Once the code is in, a browser still running is left to receive its page.
    """
    async with anyio.create_task_group() as tg:
        if options.headless:
            options.notify(f"Open this URL in a browser to log in to {server}:\n\n  {url}\n")
            if options.read_pasted_url is not None:
                tg.start_soon(_paste_loop, listener, options)
        else:
            tg.start_soon(_open_browser, url, options, server, correlation_id)
        try:
            result: CallbackResult | McpRelayError = await listener.wait(wait_s)
        except McpRelayError as exc:
            result = exc  # raised outside the task group, so it is not wrapped in an ExceptionGroup
        tg.cancel_scope.cancel()
    if isinstance(result, McpRelayError):
        raise result
    return result.code, not options.headless


async def login(
    server: ServerConfig,
    store: TokenStore,
    http: httpx2.AsyncClient,
    options: LoginOptions | None = None,
    *,
    correlation_id: str | None = None,
    scopes: list[str] | None = None,
    challenge: Challenge | None = None,
) -> LoginOutcome:
    """Log in to ``server`` and store the grant. Raises :class:`McpRelayError` on every failure.

    ``scopes`` overrides the scope selection (a step-up asks for granted ∪ challenged scopes).
    ``challenge`` is a Bearer challenge the caller already received (a 401 in the middle of a
    session); then the server is not probed again and discovery starts from that challenge.
    """
    options = options or LoginOptions()
    cid = correlation_id or new_correlation_id()
    outcome = LoginOutcome(server=server.name, correlation_id=cid, grant=None)
    steps = _Steps(outcome)
    diaglog.event("login_start", server=server.name, correlation_id=cid, url=server.url)
    try:
        await _login(server, store, http, options, cid, outcome, steps, scopes, challenge)
    except McpRelayError as exc:
        exc.with_context(server=server.name, correlation_id=cid)
        diaglog.event(
            "login_failed", server=server.name, correlation_id=cid, level="error",
            error_type=str(exc.error_type), message=exc.message,
        )
        raise
    diaglog.event(
        "login_succeeded" if outcome.grant else "login_not_required", server=server.name, correlation_id=cid,
        steps=dict(outcome.steps),
    )
    return outcome


async def _login(
    server: ServerConfig,
    store: TokenStore,
    http: httpx2.AsyncClient,
    options: LoginOptions,
    cid: str,
    outcome: LoginOutcome,
    steps: _Steps,
    scopes: list[str] | None,
    received: Challenge | None,
) -> None:
    challenge = received or await probe(http, server.url)
    steps.mark("probe")
    if challenge is None:
        return
    discovery = await discover(http, server.url, challenge=challenge, server=server.name, correlation_id=cid)
    outcome.discovery = discovery
    steps.mark("discovery")
    scope = select_scope(discovery, scopes or server.oauth.scopes or None)
    fixed, cached = await _registration(http, server, discovery, store, cid)

    listener, cached_usable = await acquire_listener(
        server=server.name,
        correlation_id=cid,
        configured_port=server.oauth.callback_port,
        configured_redirect_uri=server.oauth.redirect_uri or None,
        cached_redirect_uri=cached.redirect_uri if cached else None,
        bind=options.bind,
    )
    async with listener:
        steps.mark("listener")
        registration = fixed or (cached if cached and cached_usable else None)
        if registration is None:
            registration = await register(
                http, discovery.metadata, redirect_uri=listener.redirect_uri, scope=scope,
                server=server.name, correlation_id=cid,
            )
            await anyio.to_thread.run_sync(
                store.put, registration_key(server.name, discovery.metadata.issuer), registration.to_dict()
            )
            steps.mark("registration")
        outcome.registration = registration

        pkce, state = PKCE(), new_state()
        listener.expect(
            state=state,
            issuer=discovery.metadata.issuer,
            iss_supported=discovery.metadata.authorization_response_iss_parameter_supported,
        )
        resource = server.oauth.extra_params.get("resource", discovery.resource)
        url = authorization_url(
            discovery, registration, redirect_uri=listener.redirect_uri, pkce=pkce, state=state,
            scope=scope, extra_params=server.oauth.extra_params,
        )
        diaglog.event(
            "authorization_started", server=server.name, correlation_id=cid,
            authorization_endpoint=discovery.metadata.authorization_endpoint, redirect_uri=listener.redirect_uri,
            scope=scope, resource=resource, client_id=registration.client_id,
        )
        timeout = options.timeout or server.oauth.login_timeout
        code, outcome.browser_opened = await _authorize(url, listener, options, timeout, server.name, cid)
        steps.mark("authorization")
        try:
            grant = await _exchange_code(
                http, discovery, registration, code=code, redirect_uri=listener.redirect_uri, pkce=pkce,
                resource=resource, server=server.name, correlation_id=cid,
            )
        except TokenEndpointError as exc:
            listener.finish(False, f"The authorization server refused the code: {exc.oauth_error}.")
            if exc.oauth_error == "invalid_client" and registration.kind == "dcr":
                # The AS forgot this client: drop it so that the next login registers again.
                await anyio.to_thread.run_sync(
                    store.delete, registration_key(server.name, discovery.metadata.issuer)
                )
                exc.suggestion = (
                    "the cached registration was dropped; run "
                    f"`mcprelay auth login --server {server.name}` again"
                )
            raise
        grant.requested_scope = scope
        try:
            await anyio.to_thread.run_sync(store.put, token_key(server.name), grant.to_dict())
        except McpRelayError:
            listener.finish(False, "Logged in, but the tokens could not be stored. See the terminal.")
            raise
        listener.finish(True, f"Logged in to {server.name}. You can close this tab.")
        steps.mark("token_exchange")
        outcome.grant = grant

