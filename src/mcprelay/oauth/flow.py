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
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import anyio
import anyio.to_thread
import httpx2

from mcprelay import diaglog
from mcprelay.config import MACHINE_GRANTS, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id
from mcprelay.oauth.acquire import machine_login
from mcprelay.oauth.discovery import DiscoveryResult, discover, probe, select_scope
from mcprelay.oauth.grant import StoredGrant, token_key
from mcprelay.oauth.handoff import LoginPage
from mcprelay.oauth.pkce import PKCE, new_state
from mcprelay.oauth.renewal import SCOPE_ON_REFRESH
from mcprelay.oauth.rfc6749 import TokenEndpointError, TokenSet, token_request
from mcprelay.oauth.rfc6750 import Challenge
from mcprelay.oauth.rfc7009 import REVOCATION_ENDPOINT_KEY
from mcprelay.oauth.rfc7591 import (
    ClientRegistration,
    client_id_metadata_document,
    load_cached_registration,
    preregistered,
    register,
    registration_key,
)
from mcprelay.oauth.rfc8252 import CallbackResult, LoopbackListener, acquire_listener
from mcprelay.oauth.rfc8628 import DEVICE_CODE_GRANT, instructions, poll_for_tokens, request_device_code
from mcprelay.oauth.rfc9126 import front_channel_url, push_authorization_request
from mcprelay.oauth.rfc9449 import GRANT_EXTRA_KEY, DPoPKey, choose_alg, wanted
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
    # The device authorization grant (RFC 8628): asked for (`auth login --device`), or chosen by itself
    # for a headless login in a remote shell, where no loopback callback can arrive.
    device: bool = False
    remote_shell: bool = False
    # Where the private page handing the authorization URL to the browser goes (a directory under the
    # home; None: the system's temporary directory). The browser's argv then holds only its path.
    page_dir: Path | None = None
    # Told the real authorization URL (the REST API returns it); the browser gets the page instead.
    on_authorization_url: Callable[[str], None] | None = None
    # Whether the user reads a terminal: the device login then draws a QR code.
    terminal: bool = False
    # Shown while the browser login is awaited: ``waiting(server, seconds)`` (the CLI's spinner in a terminal).
    waiting: Callable[[str, float], AbstractAsyncContextManager[None]] | None = None


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


def authorization_params(
    discovery: DiscoveryResult,
    registration: ClientRegistration,
    *,
    redirect_uri: str,
    pkce: PKCE,
    state: str,
    scope: str | None,
    extra_params: dict[str, str],
    send_resource: bool = True,
    dpop_jkt: str | None = None,
) -> dict[str, str]:
    """The authorization request's parameters (for the URL, or for a pushed request)."""
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": registration.client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        "state": state,
    }
    if send_resource:
        params["resource"] = discovery.resource
    if scope:
        params["scope"] = scope
    if dpop_jkt:
        params["dpop_jkt"] = dpop_jkt  # RFC 9449 §10: bind the code to the DPoP key
    # extra_params may add (audience, prompt, ...) and may override resource, never PKCE or state.
    protected = {"response_type", "client_id", "redirect_uri", "code_challenge", "code_challenge_method", "state"}
    params.update({k: v for k, v in extra_params.items() if k not in protected})
    if not send_resource:
        params.pop("resource", None)
    return params


def authorization_url(discovery: DiscoveryResult, registration: ClientRegistration, **kwargs: object) -> str:
    params = authorization_params(discovery, registration, **kwargs)  # type: ignore[arg-type]
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
    registration = await load_cached_registration(store, server.name, metadata.issuer)
    if registration is not None and registration.kind == "dcr" and registration.issuer == metadata.issuer and (
        registration.usable()
    ):
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
    resource: str | None,
    server: str,
    correlation_id: str,
    dpop: DPoPKey | None = None,
) -> StoredGrant:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": pkce.verifier,
    }
    if resource:
        form["resource"] = resource
    tokens = await token_request(
        http,
        discovery.metadata.token_endpoint,
        registration.credentials,
        form,
        server=server,
        correlation_id=correlation_id,
        failure_type=ErrorType.CODE_FLOW_FAILED,
        dpop=dpop,
    )
    return _grant(discovery, registration, tokens, server=server, resource=resource, redirect_uri=redirect_uri,
                  dpop=dpop)


def _grant(
    discovery: DiscoveryResult, registration: ClientRegistration, tokens: TokenSet, *, server: str,
    resource: str | None, redirect_uri: str | None, dpop: DPoPKey | None,
) -> StoredGrant:
    """The grant to store; the DPoP key goes into its sealed record beside the tokens."""
    extra: dict[str, object] = {GRANT_EXTRA_KEY: dpop.to_dict()} if dpop is not None else {}
    if discovery.metadata.revocation_endpoint:
        extra[REVOCATION_ENDPOINT_KEY] = discovery.metadata.revocation_endpoint  # for `auth logout`
    return StoredGrant(
        server=server,
        issuer=discovery.metadata.issuer,
        client_id=registration.client_id,
        resource=resource or "",
        token_endpoint=discovery.metadata.token_endpoint,
        registration_kind=registration.kind,
        tokens=tokens,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method=registration.credentials.auth_method,
        extra=extra,
    )


async def _open_browser(page_url: str, url: str, options: LoginOptions, server: str, correlation_id: str) -> None:
    try:
        opened = bool(await anyio.to_thread.run_sync(options.open_browser, page_url, abandon_on_cancel=True))
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
    Once the code is in, a browser still running is left to receive its page. The browser is given
    a private page that forwards to ``url``, never ``url`` itself (see :mod:`.handoff`).
    """
    if options.on_authorization_url is not None:
        options.on_authorization_url(url)
    with LoginPage(url, server=server, parent=options.page_dir) as page:
        return await _authorize_via(url, page.file_url, listener, options, wait_s, server, correlation_id)


async def _authorize_via(
    url: str, page_url: str, listener: LoopbackListener, options: LoginOptions, wait_s: float, server: str,
    correlation_id: str,
) -> tuple[str, bool]:
    async with anyio.create_task_group() as tg:
        if options.headless:
            options.notify(f"Open this URL in a browser to log in to {server}:\n\n  {url}\n")
            if options.read_pasted_url is not None:
                tg.start_soon(_paste_loop, listener, options)
        else:
            tg.start_soon(_open_browser, page_url, url, options, server, correlation_id)
        waiting = options.waiting(server, wait_s) if options.waiting is not None and not options.headless else (
            nullcontext())
        try:
            async with waiting:
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


def _dpop_key(server: ServerConfig, discovery: DiscoveryResult, cid: str) -> DPoPKey | None:
    """A fresh key pair when this login's tokens are to be DPoP-bound (see :mod:`.rfc9449`)."""
    prm = discovery.protected_resource
    if not wanted(server.oauth.dpop, discovery.challenge, prm):
        return None
    alg = choose_alg(
        discovery.metadata.dpop_signing_alg_values_supported,
        prm.dpop_signing_alg_values_supported if prm else None,
        server=server.name,
    )
    key = DPoPKey.generate(alg)
    reason = "configuration" if server.oauth.dpop else (
        "protected resource metadata" if prm and prm.dpop_bound_access_tokens_required else "DPoP challenge"
    )
    diaglog.event("dpop_key_created", server=server.name, correlation_id=cid, alg=alg, jkt=key.thumbprint,
                  reason=reason)
    return key


def _resource(server: ServerConfig, discovery: DiscoveryResult) -> str | None:
    if not server.oauth.send_resource:
        return None
    return server.oauth.extra_params.get("resource", discovery.resource)


def _use_device(server: ServerConfig, options: LoginOptions, discovery: DiscoveryResult) -> bool:
    """The device grant: configured, asked for, or a headless login where the loopback cannot be reached."""
    if server.oauth.grant == "device_code" or options.device:
        if not discovery.metadata.device_authorization_endpoint:
            raise McpRelayError(
                ErrorType.METADATA_DISCOVERY_FAILED,
                f"the authorization server {discovery.metadata.issuer} offers no device login "
                "(no device_authorization_endpoint in its metadata)",
                suggestion=f"log in with the browser (`mcprelay auth login --server {server.name}`, "
                "--headless to paste the redirect URL)",
                server=server.name,
            )
        return True
    return bool(options.headless and options.remote_shell and discovery.metadata.device_authorization_endpoint)


async def _store_grant(store: TokenStore, grant: StoredGrant) -> None:
    await anyio.to_thread.run_sync(store.put, token_key(grant.server), grant.to_dict())


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
    machine = server.oauth.grant in MACHINE_GRANTS
    discovery = await discover(
        http, server.url, challenge=challenge, server=server.name, correlation_id=cid, interactive=not machine
    )
    outcome.discovery = discovery
    steps.mark("discovery")
    scope = select_scope(discovery, scopes or server.oauth.scopes or None)
    dpop = _dpop_key(server, discovery, cid)
    if machine:
        grant = await machine_login(http, server, discovery, scope=scope, dpop=dpop, correlation_id=cid)
        steps.mark("token_request")
        outcome.registration = ClientRegistration(
            kind="preregistered", issuer=discovery.metadata.issuer, client_id=server.oauth.client_id,
            token_endpoint_auth_method=grant.token_endpoint_auth_method,
        )
        await _store_grant(store, grant)
        outcome.grant = grant
        return
    if _use_device(server, options, discovery):
        await _device_login(server, store, http, options, cid, outcome, steps, discovery, scope, dpop)
        return
    await _browser_login(server, store, http, options, cid, outcome, steps, discovery, scope, dpop)


async def _device_login(
    server: ServerConfig,
    store: TokenStore,
    http: httpx2.AsyncClient,
    options: LoginOptions,
    cid: str,
    outcome: LoginOutcome,
    steps: _Steps,
    discovery: DiscoveryResult,
    scope: str | None,
    dpop: DPoPKey | None,
) -> None:
    """RFC 8628: a user code to enter elsewhere; no listener, no browser on this machine."""
    metadata = discovery.metadata
    assert metadata.device_authorization_endpoint
    registration, _ = await _registration(http, server, discovery, store, cid)
    if registration is not None and registration.kind == "cimd":
        registration = None  # a metadata document names redirect URIs; the device grant needs none
    if registration is None:
        cached = await anyio.to_thread.run_sync(store.get, registration_key(server.name, metadata.issuer))
        candidate = ClientRegistration.from_dict(cached) if cached else None
        if candidate and candidate.kind == "dcr" and candidate.usable() and DEVICE_CODE_GRANT in (
            candidate.grant_types or []
        ):
            registration = candidate
        else:
            registration = await register(
                http, metadata, redirect_uri=None, scope=scope, server=server.name, correlation_id=cid,
                grant_types=[DEVICE_CODE_GRANT, "refresh_token"],
            )
            await anyio.to_thread.run_sync(
                store.put, registration_key(server.name, metadata.issuer), registration.to_dict()
            )
            steps.mark("registration")
    outcome.registration = registration
    resource = _resource(server, discovery)
    device = await request_device_code(
        http, metadata.device_authorization_endpoint, registration.credentials, scope=scope, resource=resource,
        server=server.name, correlation_id=cid,
    )
    options.notify(instructions(device, server=server.name, terminal=options.terminal))
    if options.on_authorization_url is not None:
        options.on_authorization_url(device.verification_uri_complete or device.verification_uri)
    tokens = await poll_for_tokens(
        http, metadata.token_endpoint, registration.credentials, device, resource=resource, dpop=dpop,
        server=server.name, correlation_id=cid,
    )
    steps.mark("device_authorization")
    grant = _grant(discovery, registration, tokens, server=server.name, resource=resource, redirect_uri=None,
                   dpop=dpop)
    grant.requested_scope = scope
    if server.oauth.scope_on_refresh:
        grant.extra[SCOPE_ON_REFRESH] = True
    await _store_grant(store, grant)
    steps.mark("token_exchange")
    outcome.grant = grant


async def _browser_login(
    server: ServerConfig,
    store: TokenStore,
    http: httpx2.AsyncClient,
    options: LoginOptions,
    cid: str,
    outcome: LoginOutcome,
    steps: _Steps,
    discovery: DiscoveryResult,
    scope: str | None,
    dpop: DPoPKey | None,
) -> None:
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
        resource = _resource(server, discovery)
        params = authorization_params(
            discovery, registration, redirect_uri=listener.redirect_uri, pkce=pkce, state=state,
            scope=scope, extra_params=server.oauth.extra_params, send_resource=server.oauth.send_resource,
            dpop_jkt=dpop.thumbprint if dpop else None,
        )
        endpoint = discovery.metadata.authorization_endpoint
        par_endpoint = discovery.metadata.pushed_authorization_request_endpoint
        if par_endpoint:
            # RFC 9126: the request goes to the server directly; the browser carries only a reference.
            request_uri = await push_authorization_request(
                http, par_endpoint, registration.credentials, params, server=server.name, correlation_id=cid,
            )
            url = front_channel_url(endpoint, client_id=registration.client_id, request_uri=request_uri)
            steps.mark("pushed_authorization_request")
        else:
            url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        diaglog.event(
            "authorization_started", server=server.name, correlation_id=cid,
            authorization_endpoint=endpoint, redirect_uri=listener.redirect_uri,
            scope=scope, resource=resource, client_id=registration.client_id, pushed=bool(par_endpoint),
            dpop=dpop is not None,
        )
        timeout = options.timeout or server.oauth.login_timeout
        code, outcome.browser_opened = await _authorize(url, listener, options, timeout, server.name, cid)
        steps.mark("authorization")
        try:
            grant = await _exchange_code(
                http, discovery, registration, code=code, redirect_uri=listener.redirect_uri, pkce=pkce,
                resource=resource, server=server.name, correlation_id=cid, dpop=dpop,
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
        if server.oauth.scope_on_refresh:
            grant.extra[SCOPE_ON_REFRESH] = True
        try:
            await _store_grant(store, grant)
        except McpRelayError:
            listener.finish(False, "Logged in, but the tokens could not be stored. See the terminal.")
            raise
        listener.finish(True, f"Logged in to {server.name}. You can close this tab.")
        steps.mark("token_exchange")
        outcome.grant = grant
