"""One supervisor per upstream server: connect, keep the session, cache its lists, reconnect, wait for logins.

Every upstream runs in its own task and reports through a callback, so one slow or broken server
never delays another or the gateway's start. A server that needs a login is parked in
``login_required`` and watches the token store (cheaply, every couple of seconds) instead of opening
a browser: the gateway runs unattended, and the login happens in a terminal or through the REST API.
Calls are forwarded on the shared SDK session without any lock, so concurrent calls overlap; the
token manager underneath makes sure concurrent 401s still cause one refresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import anyio
import anyio.to_thread
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.client.client import Client
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged
from mcp_types import CLIENT_CAPABILITIES_META_KEY, LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcprelay import diaglog, metrics, seam
from mcprelay.config import ServerConfig
from mcprelay.connect import open_upstream
from mcprelay.errors import ErrorType, McpRelayError, login_required, new_correlation_id
from mcprelay.gateway.upstreams.stderrlog import captured_stderr, upstream_log_path
from mcprelay.inbound import Liveness
from mcprelay.oauth.auth import OAuth
from mcprelay.oauth.grant import load_grant, token_key
from mcprelay.related import related_request, untagged
from mcprelay.store.base import TokenStore, watching
from mcprelay.transport import SYNTHESIZED_ERROR_KEY, ClientHandlers, LogOrder

logger = logging.getLogger(__name__)

UpstreamState = Literal["connecting", "ready", "login_required", "error", "disabled"]
AuthState = Literal["authenticated", "login_required", "none", "unknown"]

_T = TypeVar("_T")


@dataclass
class UpstreamEnv:
    """What every supervisor shares: where tokens and logs live, and its timing policy."""

    store: TokenStore
    http: httpx2.AsyncClient
    home: Path
    call_timeout: float = 120.0
    connect_timeout: float = 30.0
    login_poll_interval: float = 2.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    wait_for_connect: float = 10.0


@dataclass(frozen=True)
class Catalog:
    """What one upstream offers, as last listed."""

    tools: tuple[types.Tool, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    templates: tuple[types.ResourceTemplate, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()


def root_cause(exc: BaseException) -> BaseException:
    """The structured error inside SDK task-group wrappers, else the first leaf exception."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        stack: list[BaseException] = [exc]
        while stack:
            current = stack.pop(0)
            if isinstance(current, BaseExceptionGroup):
                stack.extend(current.exceptions)
            else:
                leaves.append(current)
        for leaf in leaves:
            if isinstance(leaf, McpRelayError):
                return leaf
        return leaves[0] if leaves else exc
    return exc


def _grant_fingerprint(store: TokenStore, server: str) -> str | None:
    grant = load_grant(store, server)
    if grant is None:
        return None
    return hashlib.sha256(json.dumps(grant.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


class UpstreamRpcError(Exception):
    """The upstream answered a forwarded request with a JSON-RPC error: its own answer, to pass on as it is.

    Kept apart from :class:`McpRelayError` (the gateway's own failures — not connected, no login, no
    answer in time), which become structured ``isError`` results; an upstream's protocol error stays a
    protocol error, with the code, message and data the upstream chose.
    """

    def __init__(self, error: types.ErrorData, *, server: str, what: str) -> None:
        super().__init__(f"{what} on {server}: {error.message}")
        self.error = error
        self.server = server


@dataclass
class UpstreamHooks:
    """How an upstream reaches the agents, set by the catalog and called from the upstream's session.

    ``origin`` is whatever the catalog passed to :meth:`Upstream.request` for the downstream request
    the message belongs to (``None`` when it belongs to none; the flag passed with it says whether the wire
    said so, or it is the request in flight that it was guessed from). ``on_input`` answers a request for input
    (``elicitation/create``, ``sampling/createMessage``, ``roots/list``) with its result as JSON, or
    raises ``MCPError`` with the error the upstream gets; ``on_log`` relays a ``notifications/message``.
    """

    on_input: Callable[[Upstream, object | None, str, dict[str, Any], bool], Awaitable[dict[str, Any]]]
    on_log: Callable[[Upstream, object | None, dict[str, Any]], Awaitable[None]]
    #: ``notifications/elicitation/complete`` (2025-11-25, URL mode): for the agent that got that elicitation.
    on_elicitation_complete: Callable[[Upstream, str], None]


@dataclass
class _Signals:
    """Why the supervisor's session loop should wake up: a relist, a broken session, a login."""

    event: anyio.Event = field(default_factory=anyio.Event)
    relist: bool = False
    relisten: bool = False
    broken: str | None = None

    def kick(self) -> None:
        self.event.set()


class Upstream:
    """One configured server: its supervisor task, state, cached lists and the forwarding of requests."""

    def __init__(
        self,
        config: ServerConfig,
        env: UpstreamEnv,
        on_change: Callable[[Upstream, bool], None],
        hooks: UpstreamHooks | None = None,
    ) -> None:
        self.config = config
        self.env = env
        self.on_change = on_change
        self.hooks = hooks
        #: Set once the first connection attempt has ended (ready, login_required or failed), for good.
        self.settled = anyio.Event()
        self.log_level: str | None = None  # asked of handshake-era upstreams; see set_log_level
        self._wire_ids = itertools.count(1)
        #: Requests in flight on the session, by the id they went out under: (origin, group), oldest first.
        self._inflight: dict[str | int, tuple[object | None, object | None]] = {}
        self._wire: seam.SessionWire | None = None  # the live session's, looked up once
        self._log_order = LogOrder()  # replaced for each session (see _handlers)
        self.state: UpstreamState = "connecting" if config.enabled else "disabled"
        self.catalog = Catalog()
        self.last_error: McpRelayError | None = None
        self.needs_oauth: bool | None = False if config.transport == "stdio" else None
        self.connected_at: float | None = None
        self._client: Client | None = None
        self._auth: OAuth | None = None
        self._signals = _Signals()
        self._liveness = Liveness()  # when the session's transport last received bytes
        self._state_changed = anyio.Event()
        self._scope = anyio.CancelScope()
        #: Told of ``notifications/resources/updated`` (the upstream's own URI); set by the gateway.
        self.on_resource_updated: Callable[[Upstream, str], None] | None = None
        self.subscriptions: set[str] = set()  # upstream URIs subscribed to, renewed on every new session

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def protocol_version(self) -> str | None:
        """The protocol version of the live session, or ``None`` while there is none."""
        client = self._client
        return client.protocol_version if client is not None else None

    @property
    def auth_state(self) -> AuthState:
        if self.state == "login_required":
            return "login_required"
        if self.needs_oauth is False:
            return "none"
        if self.needs_oauth and self.state == "ready":
            return "authenticated"
        return "unknown"

    def describe(self) -> dict[str, Any]:
        """The row the REST API and ``upstream list`` show."""
        return {
            "name": self.name,
            "url": self.config.url or None,
            "transport": self.config.transport,
            "enabled": self.config.enabled,
            "state": self.state,
            "auth_state": self.auth_state,
            "tool_count": len(self.catalog.tools),
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "expires_at": self.token_expiry(),
        }

    def token_expiry(self) -> float | None:
        """When the access token of the live session expires (seconds since the epoch); None without one."""
        grant = self._auth.manager.grant if self._auth is not None else None
        return grant.tokens.expires_at if grant is not None else None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._scope.cancel()

    def wake(self) -> None:
        """Look again now (a login just completed) instead of at the next poll."""
        self._signals.kick()

    async def run(self) -> None:
        """Supervise until stopped: connect, serve, and after a failure back off or wait for a login."""
        if not self.config.enabled:
            self._set_state("disabled")
            return
        with self._scope:
            backoff = self.env.backoff_initial
            while True:
                self._set_state("connecting")
                try:
                    served = await self._attempt()
                except McpRelayError as exc:
                    self._failed(exc)
                    if exc.error_type == ErrorType.LOGIN_REQUIRED:
                        await self._wait_for_login(exc)
                        backoff = self.env.backoff_initial
                        continue
                else:
                    if served:
                        backoff = self.env.backoff_initial
                        continue  # the session ended after it was up: reconnect at once
                await self._sleep_or_wake(backoff)
                backoff = min(backoff * 2, self.env.backoff_max)

    async def _attempt(self) -> bool:
        """One session; returns whether it got ready. Failures are raised as :class:`McpRelayError`."""
        ready = anyio.Event()
        timed_out = False
        served = False
        try:
            async with anyio.create_task_group() as tg:

                async def watchdog() -> None:
                    nonlocal timed_out
                    with anyio.move_on_after(self.env.connect_timeout):
                        await ready.wait()
                        return
                    timed_out = True
                    tg.cancel_scope.cancel()

                tg.start_soon(watchdog)
                served = await self._session(ready)
                tg.cancel_scope.cancel()
        except Exception as exc:  # the SDK wraps transport failures in groups; classify the real cause
            raise self._as_error(root_cause(exc)) from None
        finally:
            self._client = None
            self._wire = None
            self._auth = None
            self.connected_at = None
        if timed_out:
            raise McpRelayError(
                ErrorType.UPSTREAM_ERROR,
                f"{self.name} did not finish connecting within {self.env.connect_timeout:g} s",
                suggestion=f"check that {self.name} is reachable; see `mcprelay upstream logs {self.name}`",
                server=self.name,
            )
        if not served:
            return False
        self._failed(
            McpRelayError(
                ErrorType.UPSTREAM_ERROR, f"the session to {self.name} ended", server=self.name,
                suggestion="mcprelay reconnects on its own",
            ),
            quiet=True,
        )
        return True

    async def _session(self, ready: anyio.Event) -> bool:
        errlog: contextlib.AbstractContextManager[TextIO | None] = (
            captured_stderr(upstream_log_path(self.env.home, self.name))
            if self.config.transport == "stdio"
            else contextlib.nullcontext(None)
        )
        serving = False

        def closed() -> None:
            # Only while serving: before that the failing list request reports it, and during teardown
            # a wake-up would cut short the backoff before the next attempt.
            if serving:
                self._broken(f"the connection to {self.name} closed")

        with errlog as stderr:
            async with open_upstream(
                self.config,
                store=self.env.store,
                http=self.env.http,
                home=self.env.home,
                login=None,
                errlog=stderr,
                request_timeout=self.env.call_timeout,
                handlers=self._handlers(),
                on_closed=closed,
                liveness=self._liveness,
            ) as (client, auth):
                self._auth = auth
                self.needs_oauth = auth is not None
                self._signals = _Signals()
                catalog = await self._list_all(client)
                if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                    for uri in sorted(self.subscriptions):
                        with contextlib.suppress(MCPError), anyio.fail_after(self.env.connect_timeout):
                            await client.subscribe_resource(uri)
                    await self._apply_log_level(client)
                self._client = client
                self._wire = seam.session_wire(client.session)
                self.connected_at = time.time()
                self.last_error = None
                ready.set()
                self._set_catalog(catalog, state="ready")
                diaglog.event("upstream_ready", server=self.name, correlation_id=None, tools=len(catalog.tools))
                serving = True
                try:
                    await self._serve(client)
                finally:
                    serving = False
                return True

    async def _serve(self, client: Client) -> None:
        """Wait for work on the open session: relists on notifications, pings to notice a dead peer.

        A peer whose connection ends (a stdio process exits) is noticed at once through ``on_closed``;
        the pings are for the ones that hang or vanish without closing anything (a remote host gone).
        A 2026-07-28 upstream sends its changes only on a ``subscriptions/listen`` stream, which runs
        beside this loop and is reopened when the resource subscriptions change.
        """
        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        async with anyio.create_task_group() as tg:
            listen_scope = self._start_listen(tg, client) if modern else None
            while True:
                with anyio.move_on_after(self.env.ping_interval):
                    await self._signals.event.wait()
                signals = self._signals
                self._signals = _Signals()
                if signals.broken:
                    self._client = None  # no new request goes out on a session that is going away
                    raise McpRelayError(ErrorType.UPSTREAM_ERROR, signals.broken, server=self.name)
                if signals.relisten and listen_scope is not None:
                    listen_scope.cancel()
                    listen_scope = self._start_listen(tg, client)
                if signals.relist:
                    self._set_catalog(await self._list_all(client))
                elif not signals.event.is_set() and not signals.relisten:
                    await self._ping(client)

    def _start_listen(self, tg: TaskGroup, client: Client) -> anyio.CancelScope:
        scope = anyio.CancelScope()

        async def listen() -> None:
            with scope:
                await self._listen(client)

        tg.start_soon(listen)
        return scope

    async def _listen(self, client: Client) -> None:
        """Follow a 2026-07-28 upstream's change events: list changes and the subscribed resources."""
        caps = client.server_capabilities
        try:
            async with client.listen(
                tools_list_changed=bool(caps.tools and caps.tools.list_changed),
                prompts_list_changed=bool(caps.prompts and caps.prompts.list_changed),
                resources_list_changed=bool(caps.resources and caps.resources.list_changed),
                resource_subscriptions=sorted(self.subscriptions),
            ) as subscription:
                async for event in subscription:
                    if isinstance(event, ToolsListChanged | PromptsListChanged | ResourcesListChanged):
                        self._signals.relist = True
                        self._signals.kick()
                    elif isinstance(event, ResourceUpdated) and self.on_resource_updated is not None:
                        self.on_resource_updated(self, str(event.uri))
        except (ListenNotSupportedError, SubscriptionLost, MCPError, TimeoutError) as exc:
            logger.debug("%s: no change events (%s)", self.name, exc)

    async def _ping(self, client: Client) -> None:
        """Any JSON-RPC answer proves the peer alive, an error included: SDK 2.3 servers answer a
        ``ping`` on a ``server/discover`` session with "method not found". So do bytes arriving while
        the ping waits: its answer queues behind a big message still in transit (see
        ``mcprelay/inbound.py``). Only silence (the timeout) or a broken transport counts as dead."""
        asked = time.monotonic()
        with anyio.move_on_after(self.env.ping_timeout):
            try:
                await client.session.send_ping()
            except MCPError:
                pass
            return
        if not self._liveness.active_since(asked):
            raise TimeoutError(f"{self.name} answered no ping within {self.env.ping_timeout:g} s and sent nothing")

    async def _on_message(self, message: IncomingMessage) -> None:
        """Runs inline in the session's reader: only flag the work, never await a request here."""
        if isinstance(
            message,
            types.ToolListChangedNotification | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self._signals.relist = True
            self._signals.kick()
        elif isinstance(message, types.ResourceUpdatedNotification) and self.on_resource_updated is not None:
            self.on_resource_updated(self, str(message.params.uri))
        elif isinstance(message, types.ElicitCompleteNotification) and self.hooks is not None:
            self.hooks.on_elicitation_complete(self, message.params.elicitation_id)
        elif isinstance(message, Exception):
            logger.debug("%s: transport reported %r", self.name, message)

    async def _list_all(self, client: Client) -> Catalog:
        caps = client.server_capabilities
        tools: list[types.Tool] = []
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        prompts: list[types.Prompt] = []
        with anyio.fail_after(self.env.connect_timeout):
            if caps.tools is not None:
                cursor: str | None = None
                while True:
                    page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                    tools.extend(page.tools)
                    if not (cursor := page.next_cursor):
                        break
            if caps.resources is not None:
                cursor = None
                while True:
                    rpage = await client.list_resources(cursor=cursor, cache_mode="bypass")
                    resources.extend(rpage.resources)
                    if not (cursor := rpage.next_cursor):
                        break
                with contextlib.suppress(MCPError):
                    tpage = await client.list_resource_templates(cache_mode="bypass")
                    templates.extend(tpage.resource_templates)
            if caps.prompts is not None:
                cursor = None
                while True:
                    ppage = await client.list_prompts(cursor=cursor, cache_mode="bypass")
                    prompts.extend(ppage.prompts)
                    if not (cursor := ppage.next_cursor):
                        break
        return Catalog(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))

    async def _wait_for_login(self, error: McpRelayError) -> None:
        """Park until the token store holds a grant different from the one that failed (or none)."""
        seen = await self._fingerprint()
        diaglog.event(
            "upstream_login_required", server=self.name, correlation_id=error.correlation_id,
            message=error.message,
        )
        # A shared store (Redis) pushes changes, so a login on another replica lands within a round trip.
        async with watching(self.env.store, token_key(self.name), lambda _op: self.wake()):
            while True:
                await self._sleep_or_wake(self.env.login_poll_interval)
                current = await self._fingerprint()
                if current is not None and current != seen:
                    return

    async def _fingerprint(self) -> str | None:
        try:
            return await anyio.to_thread.run_sync(_grant_fingerprint, self.env.store, self.name)
        except McpRelayError:
            return None

    async def _sleep_or_wake(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._signals.event.wait()
        self._signals = _Signals()

    # ------------------------------------------------------------------ state

    def _set_state(self, state: UpstreamState) -> None:
        if state == self.state:
            return
        self.state = state
        self._notify_state()
        self.on_change(self, False)

    def _set_catalog(self, catalog: Catalog, *, state: UpstreamState | None = None) -> None:
        changed = catalog != self.catalog
        self.catalog = catalog
        if state is not None and state != self.state:
            self.state = state
            self._notify_state()
        self.on_change(self, changed)

    def _notify_state(self) -> None:
        metrics.upstream_state(self.name, self.state)
        if self.state != "connecting":
            self.settled.set()
        self._state_changed.set()
        self._state_changed = anyio.Event()

    def _failed(self, error: McpRelayError, *, quiet: bool = False) -> None:
        error.with_context(server=self.name, correlation_id=new_correlation_id())
        self.last_error = error
        had_tools = bool(self.catalog.tools or self.catalog.resources or self.catalog.prompts)
        state: UpstreamState = "login_required" if error.error_type == ErrorType.LOGIN_REQUIRED else "error"
        if state == "login_required":
            # What it offered stays listed: a call to one of its tools is how an agent whose client can
            # send its user to a URL gets the login done, and the others get the login_required error.
            had_tools = False
        else:
            self.catalog = Catalog()
        if not quiet:
            diaglog.event(
                "upstream_failed", server=self.name, correlation_id=error.correlation_id, level="warning",
                error_type=str(error.error_type), message=error.message,
            )
        self.state = state
        self._notify_state()
        self.on_change(self, had_tools)

    def _as_error(self, exc: BaseException) -> McpRelayError:
        if isinstance(exc, McpRelayError):
            return exc
        if self._auth is not None and self._auth.last_error is not None:
            return self._auth.last_error
        message = str(exc) or type(exc).__name__
        return McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"cannot connect to {self.name}: {type(exc).__name__}: {message[:300]}",
            suggestion=f"check that {self.name} is reachable; see `mcprelay upstream logs {self.name}` for stdio",
            server=self.name,
            correlation_id=new_correlation_id(),
        )

    # ------------------------------------------------------------------ forwarding

    async def wait_until_ready(self, limit: float) -> bool:
        """Wait at most ``limit`` seconds for the session to be ready (after a login: through reconnecting)."""
        with anyio.move_on_after(limit):
            while self.state != "ready" or self._client is None:
                await self._state_changed.wait()
        return self.state == "ready"

    async def _ready_client(self, request_id: str) -> Client:
        """The live session, waiting briefly while a first connection is under way; never hangs."""
        deadline = anyio.current_time() + self.env.wait_for_connect
        # "ready" without a client: the session is going away and what comes next (a reconnect, a login
        # required) is about to be known — the caller hears that, not "connection closed".
        while self.state in ("connecting", "ready") and self._client is None:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                await self._state_changed.wait()
        client = self._client
        if client is not None and self.state == "ready":
            return client
        raise self.unavailable(request_id)

    def unavailable(self, request_id: str) -> McpRelayError:
        """The structured error for a request to a server that is not connected."""
        base = self.last_error
        if self.state == "login_required":
            return login_required(
                self.name,
                f"{self.name} requires a login before its tools can be used",
                correlation_id=base.correlation_id if base else None,
                request_id=request_id,
            )
        detail = f": {base.message}" if base else ""
        return McpRelayError(
            base.error_type if base else ErrorType.UPSTREAM_ERROR,
            f"{self.name} is not connected (state: {self.state}){detail}",
            suggestion=(base.suggestion if base and base.suggestion else f"check `mcprelay upstream list`; "
                        f"stdio servers log to `mcprelay upstream logs {self.name}`"),
            server=self.name,
            correlation_id=base.correlation_id if base else None,
            request_id=request_id,
            details=base.details if base else None,
        )

    async def _forward(self, what: str, request_id: str, call: Callable[[Client], Awaitable[_T]]) -> _T:
        client = await self._ready_client(request_id)
        auth = self._auth
        before = auth.last_error if auth else None
        try:
            with anyio.fail_after(self.env.call_timeout + 5):
                return await call(client)
        except TimeoutError:
            raise self._call_error(what, request_id, f"no answer within {self.env.call_timeout:g} s") from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                failure = auth.last_error if auth is not None else None
                if failure is not None and (failure is not before or failure.error_type == ErrorType.LOGIN_REQUIRED):
                    # The transport gave up because the auth flow did (now, or the grant is dead): that is the news.
                    self._broken(failure.message)
                    raise self._auth_failed(failure, request_id) from None
                self._broken(f"the connection to {self.name} closed")
            if exc.code == types.REQUEST_TIMEOUT:
                raise self._call_error(what, request_id, f"no answer within {self.env.call_timeout:g} s") from None
            if exc.code == types.CONNECTION_CLOSED or (
                isinstance(exc.data, dict) and exc.data.get(SYNTHESIZED_ERROR_KEY)
            ):
                raise self._call_error(what, request_id, exc.message) from None
            raise UpstreamRpcError(exc.error, server=self.name, what=what) from None
        except Exception as exc:
            cause = root_cause(exc)
            if auth is not None and auth.last_error is not None and auth.last_error is not before:
                cause = auth.last_error
            if isinstance(cause, McpRelayError):
                raise self._auth_failed(cause, request_id) from None
            self._broken(f"{type(cause).__name__}: {cause}")
            raise self._call_error(what, request_id, f"{type(cause).__name__}: {str(cause)[:300]}") from None

    def _broken(self, why: str) -> None:
        """The session is going away: no request goes out on it any more, and the supervisor reconnects."""
        self._client = None
        self._signals.broken = why
        self._signals.kick()

    def _auth_failed(self, cause: McpRelayError, request_id: str) -> McpRelayError:
        """A request failed because its authentication did: the structured error, and, when the grant is
        dead, the session given up (the supervisor waits for a login)."""
        if cause.error_type == ErrorType.LOGIN_REQUIRED:
            self._broken(cause.message)
        return McpRelayError(
            cause.error_type, cause.message, suggestion=cause.suggestion, server=self.name,
            correlation_id=cause.correlation_id, request_id=request_id, details=cause.details,
        )

    def _call_error(self, what: str, request_id: str, message: str) -> McpRelayError:
        return McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"{what} on {self.name} failed: {message}",
            suggestion=f"check `mcprelay upstream list` and `mcprelay upstream logs {self.name}`",
            server=self.name,
            request_id=request_id,
        )

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        request_id: str,
        what: str,
        origin: object | None = None,
        group: object | None = None,
        progress: ProgressFnT | None = None,
        capabilities: dict[str, Any] | None = None,
        log_level: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Forward one request as JSON; returns the upstream's result as received and the protocol version
        it was sent under, so the caller shapes it for its own client without a model round trip.

        ``origin`` (opaque here) is what the downstream request is to the catalog: while this request
        runs, whatever the upstream sends about it — a request for input, a log message — is handed to
        the hooks with it. ``group`` is the downstream connection it belongs to. ``capabilities`` and
        ``log_level`` are the downstream client's, which a 2026-07-28 upstream reads from each
        request's ``_meta`` (a handshake-era upstream learnt the gateway's at ``initialize``).
        An ``input_required`` result is returned like any other: the catalog decides who answers it.
        """
        return await self._forward(
            what, request_id,
            lambda c: self._send(c, method, params, origin, group, progress, capabilities, log_level),
        )

    async def _send(
        self,
        client: Client,
        method: str,
        params: dict[str, Any],
        origin: object | None,
        group: object | None,
        progress: ProgressFnT | None,
        capabilities: dict[str, Any] | None,
        log_level: str | None,
    ) -> tuple[dict[str, Any], str]:
        """One request on the session's dispatcher, as JSON both ways.

        Why not the SDK's typed methods: they build the request from models, validate the result against
        the negotiated schema, parse it into models and (for tools) check it against the output schema —
        work the downstream client repeats on what we forward, and the largest share of the gateway's own
        CPU per call once the transports are cheap. The session still stamps the request (protocol
        version, client info, ``Mcp-*`` headers including a tool's ``Mcp-Param-*``), the dispatcher
        routes its progress and sends ``notifications/cancelled`` when the caller gives up. The request
        goes out under an id minted here, so that what the upstream sends about it can be attributed.
        A ``HEADER_MISMATCH`` (2026-07-28: the server refused the request before running it, because the
        tool's ``x-mcp-header`` parameters changed) is answered as the SDK does: relist, send once more.
        """
        version = client.protocol_version or "2025-11-25"
        wire = self._wire if self._wire is not None and client is self._client else seam.session_wire(client.session)
        for attempt in (1, 2):
            data: dict[str, Any] = {"method": method, "params": dict(params)}
            wire_id = f"mcprelay-{next(self._wire_ids)}"
            opts: CallOptions = {"timeout": self.env.call_timeout, "request_id": wire_id}
            if progress is not None:
                opts["on_progress"] = progress
            wire.stamp(data, opts)
            if version in MODERN_PROTOCOL_VERSIONS:
                meta = data["params"].setdefault("_meta", {})
                if capabilities is not None:
                    meta[CLIENT_CAPABILITIES_META_KEY] = capabilities
                if log_level is not None:
                    meta[LOG_LEVEL_META_KEY] = log_level
            self._inflight[wire_id] = (origin, group)
            try:
                # What the upstream logged before answering goes out before the answer, and while this
                # request is still in flight to be attributed to it (see transport.LogOrder).
                try:
                    raw: dict[str, Any] = await wire.send_raw_request(method, data["params"], opts)
                except MCPError:
                    await self._log_order.caught_up()
                    raise
                await self._log_order.caught_up()
            except MCPError as exc:
                if exc.code != types.HEADER_MISMATCH or method != "tools/call" or attempt == 2:
                    raise
                await client.list_tools(cache_mode="bypass")
                continue
            finally:
                self._inflight.pop(wire_id, None)
            return raw, version
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ what the upstream sends on its own

    def _handlers(self) -> ClientHandlers:
        """The session's handlers: list changes always; requests and logs only where a gateway relays them."""
        if self.hooks is None:
            return ClientHandlers(message=self._on_message)
        self._log_order = LogOrder()  # one per session: it counts that session's wire
        return ClientHandlers(
            message=self._on_message,
            sampling=self._on_sampling,
            elicitation=self._on_elicitation,
            list_roots=self._on_list_roots,
            logging=self._on_log,
            tag_related=self.config.transport == "http",
            log_order=self._log_order,
        )

    def _attribute(self, meta: Any, *, request: bool) -> tuple[object | None, bool]:
        """The origin of the downstream request an upstream message belongs to (or ``None``), and whether
        the wire said so.

        Over streamable HTTP the message names its request (see :mod:`mcprelay.related`). Elsewhere (stdio,
        SSE) nothing on the wire does: a request for input then belongs to the request in flight (the most
        recent one, when several are), and a log message too when every request in flight comes from one
        downstream connection, since a server logs mostly while it works. A log message while requests of
        several connections are in flight could be any of theirs — guessing the newest gave one agent's
        log lines to another, whose call had merely started later — so it is the server's own, like one
        with nothing in flight: for every agent whose log level admits it. A log message that arrived
        untagged over HTTP came on the server's standalone stream: its own.
        """
        tag = related_request(meta)
        if tag is not None:
            entry = self._inflight.get(tag)
            if entry is not None:
                return entry[0], True
        elif not request and self.config.transport == "http":
            return None, True
        if not self._inflight:
            return None, False
        if not request and len({id(group) for _origin, group in self._inflight.values()}) > 1:
            return None, False
        return next(reversed(self._inflight.values()))[0], False

    async def _ask(self, context: ClientRequestContext, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.hooks is not None
        origin, certain = self._attribute(context.meta, request=True)
        meta = untagged(params.get("_meta"))
        params = {k: v for k, v in params.items() if k != "_meta"}
        if meta:
            params["_meta"] = meta
        return await self.hooks.on_input(self, origin, method, params, certain)

    async def _on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        try:
            result = await self._ask(context, "elicitation/create", _json(params))
            return types.ElicitResult.model_validate(result, by_name=False)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _bad_answer("elicitation/create", exc)

    async def _on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        try:
            result = await self._ask(context, "sampling/createMessage", _json(params))
            if isinstance(result.get("content"), list):
                return types.CreateMessageResultWithTools.model_validate(result, by_name=False)
            return types.CreateMessageResult.model_validate(result, by_name=False)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _bad_answer("sampling/createMessage", exc)

    async def _on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        try:
            result = await self._ask(context, "roots/list", {})
            return types.ListRootsResult.model_validate(result, by_name=False)
        except MCPError as exc:
            return exc.error
        except ValidationError as exc:
            return _bad_answer("roots/list", exc)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        assert self.hooks is not None
        origin, _ = self._attribute(params.meta, request=False)
        data = _json(params)
        meta = untagged(data.pop("_meta", None))
        if meta:
            data["_meta"] = meta
        try:
            await self.hooks.on_log(self, origin, data)
        except Exception:  # a client that cannot take a log message must not stop the session's reader
            logger.debug("%s: relaying a log message failed", self.name, exc_info=True)
        finally:
            self._log_order.done()

    async def set_log_level(self, level: str | None) -> None:
        """The level handshake-era upstreams are asked to log at (the most verbose any agent asked for)."""
        self.log_level = level
        client = self._client
        if client is not None:
            await self._apply_log_level(client)

    async def _apply_log_level(self, client: Client) -> None:
        level = self.log_level
        if level is None or client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return  # 2026-07-28 upstreams are told per request
        if client.server_capabilities.logging is None:
            return
        with (
            contextlib.suppress(MCPError, TimeoutError),
            anyio.fail_after(self.env.connect_timeout),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # deprecated in 2026-07-28, still the way before
            await client.session.set_logging_level(level)  # type: ignore[arg-type]

    async def roots_changed(self) -> None:
        """Tell a handshake-era upstream that the agents' roots changed (it asks ``roots/list`` again)."""
        client = self._client
        if client is None or client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        with contextlib.suppress(Exception), anyio.fail_after(5):
            await client.session.send_notification(types.RootsListChangedNotification())

    async def subscribe_resource(self, uri: str, subscribe: bool, *, request_id: str) -> None:
        """Forward ``resources/(un)subscribe`` where the upstream supports it; remembered for reconnects.

        A 2026-07-28 upstream has no such request: its ``subscriptions/listen`` stream is reopened with
        the new set instead.
        """
        (self.subscriptions.add if subscribe else self.subscriptions.discard)(uri)
        client = self._client
        if client is None:
            return  # renewed when it connects
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self._signals.relisten = True
            self._signals.kick()
            return
        caps = client.server_capabilities.resources
        if caps is None or not caps.subscribe:
            return  # no subscriptions there: nothing will ever fire
        method = client.subscribe_resource if subscribe else client.unsubscribe_resource
        await self._forward(f"resource {uri}", request_id, lambda c: method(uri))


def _json(params: Any) -> dict[str, Any]:
    data: dict[str, Any] = params.model_dump(by_alias=True, mode="json", exclude_none=True)
    return data


def _bad_answer(method: str, exc: ValidationError) -> types.ErrorData:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    what = errors[0]["msg"] if errors else str(exc)
    return types.ErrorData(
        code=types.INTERNAL_ERROR, message=f"the client's answer to {method} is not valid: {where}: {what}"[:300]
    )
