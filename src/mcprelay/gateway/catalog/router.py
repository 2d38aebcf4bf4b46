"""The gateway object: the upstream supervisors, the aggregated catalogue, and routing between them.

Both doors into the gateway — the MCP endpoint and the REST API — talk to this one object, so a
login started through REST makes tools appear on every connected MCP client, and a config edit is
applied in one place. It knows nothing of transports: ``serving/`` maps it onto the MCP protocol.

The catalogue is what the ready upstreams last listed, each under its :class:`Namespace` (see
``names.py``): built once per change (``version``), so a listing or a lookup is a dict read. Requests
are forwarded by :class:`mcprelay.gateway.catalog.forward.Forwarder`, which this object owns.

A list request should never see a half-connected gateway: :meth:`settle` waits (bounded by the
config's ``first_list_timeout``) until every enabled upstream's first connection attempt has ended,
ready, ``login_required`` or failed; one slower than that joins later with ``list_changed``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.shared.inbound import x_mcp_header_map
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from mcprelay.activity import ActivityLog
from mcprelay.config import Config, LoadedConfig, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.names import SEPARATOR, Namespace, split_name, split_uri
from mcprelay.gateway.catalog.origin import LOG_LEVELS
from mcprelay.gateway.catalog.pinbook import PinBook, held_error
from mcprelay.gateway.catalog.pins import Held
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamEnv, UpstreamHooks
from mcprelay.store.base import TokenStore

logger = logging.getLogger(__name__)

#: A downstream sink for "the aggregated lists changed" (the MCP server broadcasts list_changed).
ChangeListener = Callable[[], Awaitable[None]]
#: A downstream sink for "this (exposed) resource URI changed" (resources/updated to its subscribers).
UpdateListener = Callable[[str], Coroutine[Any, Any, None]]
#: Told, synchronously, whenever an upstream's state may have changed (the control plane's logins).
StateListener = Callable[[Upstream], None]


@dataclass(frozen=True)
class RoutedTool:
    name: str
    upstream: Upstream
    tool: types.Tool
    #: Its input schema marks parameters as ``x-mcp-header`` (2026-07-28): an HTTP request for it carries
    #: ``Mcp-Param-*`` headers the SDK's server validates against the body.
    param_headers: bool = False


@dataclass
class _Catalog:
    """The exposed catalogue at one ``version``: lists for listing, maps for routing."""

    version: int
    tools: list[RoutedTool] = field(default_factory=list)
    tool_map: dict[str, RoutedTool] = field(default_factory=dict)
    prompts: list[types.Prompt] = field(default_factory=list)
    prompt_map: dict[str, tuple[Upstream, str]] = field(default_factory=dict)
    resources: list[types.Resource] = field(default_factory=list)
    resource_map: dict[str, tuple[Upstream, str]] = field(default_factory=dict)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    #: Unprefixed upstreams' templates, for resolving a URI none of them listed.
    own_templates: list[tuple[UriTemplate, Upstream]] = field(default_factory=list)
    #: Tools held back until a person approves them (pins.py), by the name they would be exposed under.
    held: dict[str, Held] = field(default_factory=dict)


class Gateway:
    """The aggregated catalogue and the routing of every request the MCP endpoint forwards."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        home: Path,
        store: TokenStore,
        http: httpx2.AsyncClient,
        activity: ActivityLog,
        env: UpstreamEnv | None = None,
    ) -> None:
        from mcprelay.gateway.catalog.forward import Forwarder

        self.loaded = loaded
        self.home = home
        self.store = store
        self.http = http
        self.activity = activity
        self.env = env or UpstreamEnv(store=store, http=http, home=home)
        self.upstreams: dict[str, Upstream] = {}
        self.version = 0  # bumped whenever the aggregated lists may have changed
        self.forward = Forwarder(self)
        self._hooks = UpstreamHooks(
            on_input=self.forward.on_input, on_log=self.forward.on_log,
            on_elicitation_complete=self.forward.on_elicitation_complete,
        )
        self._catalog = _Catalog(version=-1)
        self._listeners: list[ChangeListener] = []
        self._update_listeners: list[UpdateListener] = []
        self._state_listeners: list[StateListener] = []
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None
        self._log_levels: dict[object, str] = {}  # downstream session → the level it asked for
        self._namespaces: dict[str, Namespace] = {}
        self.pins = PinBook(home, lambda: self.config.tool_pinning, self._mark_changed)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def task_group(self) -> TaskGroup:
        """The gateway's own task group, for work that outlives the request that started it."""
        if self._tg is None:
            raise McpRelayError(ErrorType.UPSTREAM_ERROR, "the gateway is not running")
        return self._tg

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every upstream in the background and report started at once; runs until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for server in self.config.mcp_servers:
                self._start(server)
            tg.start_soon(self._broadcast_changes)
            tg.start_soon(self.pins.run)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_update_listener(self, listener: UpdateListener) -> None:
        self._update_listeners.append(listener)

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def _resource_updated(self, upstream: Upstream, uri: str) -> None:
        if self._tg is not None and self.upstreams.get(upstream.name) is upstream:
            exposed = self.namespace(upstream).uri(uri)
            for listener in list(self._update_listeners):
                self._tg.start_soon(listener, exposed)

    def _start(self, server: ServerConfig) -> None:
        assert self._tg is not None
        upstream = Upstream(server, self.env, self._upstream_changed, self._hooks)
        upstream.on_resource_updated = self._resource_updated
        upstream.log_level = self._wanted_log_level()
        self.upstreams[server.name] = upstream
        self._tg.start_soon(upstream.run, name=f"upstream-{server.name}")

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Adopt a new config without a restart: add, remove and restart the servers that changed."""
        old = {s.name: s for s in self.config.mcp_servers}
        new = {s.name: s for s in loaded.config.mcp_servers}
        mode_changed = (loaded.config.routing_mode, loaded.config.tool_pinning) != (
            self.config.routing_mode, self.config.tool_pinning)
        old_store = self.config.token_store
        self.loaded = loaded
        dropped = False
        for name, server in old.items():
            if name not in new or new[name] != server:
                dropped = True
                upstream = self.upstreams.pop(name, None)
                if upstream is not None:
                    upstream.stop()
                logger.info("upstream %s %s", name, "removed" if name not in new else "restarting")
        for name, server in new.items():
            if name not in self.upstreams:
                self._start(server)
        if loaded.config.token_store != old_store:
            logger.warning("token_store changed in the config; it takes effect when the gateway restarts")
        # A restarted server's old tools are gone now, and the new ones may never come (a broken edit):
        # clients must hear of it now, not only when (if) it connects again.
        if mode_changed or dropped or old.keys() != new.keys():
            self._mark_changed()

    async def settle(self, limit: float | None = None) -> None:
        """Wait until every enabled upstream's first connection attempt has ended, at most ``limit``
        seconds (default: the config's ``first_list_timeout``)."""
        limit = self.config.first_list_timeout if limit is None else limit
        pending = [u for u in self.upstreams.values() if u.config.enabled and not u.settled.is_set()]
        if not pending:
            return
        with anyio.move_on_after(limit):
            for upstream in pending:
                await upstream.settled.wait()

    # ------------------------------------------------------------------ change notifications

    def _upstream_changed(self, upstream: Upstream, catalog_changed: bool) -> None:
        if self.upstreams.get(upstream.name) is not upstream:
            return  # a stopped supervisor reporting its own shutdown
        if catalog_changed:
            self._mark_changed()
        for listener in list(self._state_listeners):
            try:
                listener(upstream)
            except Exception:  # a listener's bug must not stop the supervisor that reported
                logger.exception("upstream state listener failed")

    def _mark_changed(self) -> None:
        self.version += 1
        self._changed.set()

    async def _broadcast_changes(self) -> None:
        """Coalesce bursts (several upstreams connecting together) into one list_changed per client."""
        while True:
            await self._changed.wait()
            await anyio.sleep(0.05)
            self._changed = anyio.Event()
            # Build the catalogue now, not at the next listing: screening pins what a server offers the
            # moment the gateway sees it, so a server that changes before any agent lists is still held.
            try:
                self.catalog()
            except Exception:
                logger.exception("building the catalogue failed")
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception:  # one broken client must not stop the others from hearing about it
                    logger.exception("list_changed listener failed")

    # ------------------------------------------------------------------ what the control plane reads

    def list_servers(self) -> list[dict[str, Any]]:
        return [row for s in self.config.mcp_servers if (row := self.get_server(s.name)) is not None]

    def get_server(self, name: str) -> dict[str, Any] | None:
        upstream = self.upstreams.get(name)
        if upstream is not None:
            row = upstream.describe()
        else:
            server = self.server_config(name)
            if server is None:
                return None
            row = {
                "name": name, "url": server.url or None, "transport": server.transport,
                "enabled": server.enabled, "state": "disabled" if not server.enabled else "connecting",
                "auth_state": "unknown", "tool_count": 0, "last_error": None, "expires_at": None,
            }
        if row["transport"] == "http":
            row["transport"] = "streamable-http"
        return row

    def list_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/v1/tools``: what ``mcprelay tools list`` prints, without connecting to every upstream again."""
        return [
            {"name": r.name, "server": r.upstream.name, "tool": r.tool.name,
             "description": r.tool.description or "", "input_schema": r.tool.input_schema}
            for r in self.tools() if server is None or r.upstream.name == server
        ]

    def server_config(self, name: str) -> ServerConfig | None:
        return next((s for s in self.config.mcp_servers if s.name == name), None)

    def restart_upstream(self, name: str) -> bool:
        """Stop ``name``'s supervisor and start a fresh one (``mcprelay upstream restart``); False if unknown.

        The new supervisor connects from scratch: a stdio server is started again, an HTTP session
        opened again, the stored grant read again. Its tools leave the catalogue until it is ready.
        """
        server = self.server_config(name)
        if server is None or self._tg is None:
            return False
        upstream = self.upstreams.pop(name, None)
        if upstream is not None:
            upstream.stop()
        logger.info("upstream %s restarting (asked for)", name)
        self._start(server)
        self._mark_changed()
        return True

    def wake_upstream(self, name: str) -> None:
        """A login for ``name`` just stored a grant: look again now instead of at the next poll."""
        upstream = self.upstreams.get(name)
        if upstream is not None:
            upstream.wake()

    # ------------------------------------------------------------------ the aggregated catalogue

    def namespace(self, upstream: Upstream) -> Namespace:
        ns = self._namespaces.get(upstream.name)
        if ns is None or ns.prefixed != upstream.config.prefix:
            ns = self._namespaces[upstream.name] = Namespace(upstream.name, upstream.config.prefix)
        return ns

    def _ready(self) -> Iterator[Upstream]:
        """The upstreams whose offer is listed: the ready ones, and the ones that were ready until a login
        ran out (their tools stay, so that calling one can bring the login to the agent's user)."""
        for server in self.config.mcp_servers:
            upstream = self.upstreams.get(server.name)
            if upstream is not None and upstream.state in ("ready", "login_required"):
                yield upstream

    def catalog(self) -> _Catalog:
        """The exposed catalogue, rebuilt only when something changed since it was last built."""
        if self._catalog.version == self.version:
            return self._catalog
        catalog = _Catalog(version=self.version)
        for upstream in self._ready():
            ns = self.namespace(upstream)
            screened = self.pins.screen(upstream.name, upstream.catalog.tools)
            for held in screened.held:
                catalog.held.setdefault(ns.name(held.tool), held)
            for tool in screened.exposed:
                name = ns.name(tool.name)
                if name in catalog.tool_map:
                    _shadowed(upstream, "tool", name, catalog.tool_map[name].upstream)
                    continue
                routed = RoutedTool(name, upstream, tool, _has_param_headers(tool.input_schema))
                catalog.tools.append(routed)
                catalog.tool_map[name] = routed
            for prompt in upstream.catalog.prompts:
                name = ns.name(prompt.name)
                if name in catalog.prompt_map:
                    _shadowed(upstream, "prompt", name, catalog.prompt_map[name][0])
                    continue
                catalog.prompts.append(prompt.model_copy(update={"name": name}))
                catalog.prompt_map[name] = (upstream, prompt.name)
            for resource in upstream.catalog.resources:
                uri = ns.uri(resource.uri)
                if uri in catalog.resource_map:
                    _shadowed(upstream, "resource", uri, catalog.resource_map[uri][0])
                    continue
                catalog.resources.append(resource.model_copy(update={"uri": uri, "name": ns.name(resource.name)}))
                catalog.resource_map[uri] = (upstream, resource.uri)
            for template in upstream.catalog.templates:
                catalog.templates.append(template.model_copy(
                    update={"uri_template": ns.uri(template.uri_template), "name": ns.name(template.name)}
                ))
                if not ns.prefixed:
                    try:
                        catalog.own_templates.append((UriTemplate.parse(template.uri_template), upstream))
                    except (InvalidUriTemplate, ValueError):
                        logger.debug("%s: template %r does not parse", upstream.name, template.uri_template)
        self._catalog = catalog
        return catalog

    def tools(self) -> list[RoutedTool]:
        return self.catalog().tools

    def resources(self) -> list[types.Resource]:
        return self.catalog().resources

    def resource_templates(self) -> list[types.ResourceTemplate]:
        return self.catalog().templates

    def prompts(self) -> list[types.Prompt]:
        return self.catalog().prompts

    # ------------------------------------------------------------------ routing

    def route_tool(self, name: str, request_id: str) -> tuple[Upstream, str]:
        """The upstream serving the exposed tool ``name``, and the tool's own name there."""
        catalog = self.catalog()
        routed = catalog.tool_map.get(name)
        if routed is not None:
            return routed.upstream, routed.tool.name
        held = catalog.held.get(name)
        if held is not None:
            raise held_error(held, name, request_id)
        return self._route_by_prefix(name, request_id, "tool")

    def route_prompt(self, name: str, request_id: str) -> tuple[Upstream, str]:
        routed = self.catalog().prompt_map.get(name)
        if routed is not None:
            return routed
        return self._route_by_prefix(name, request_id, "prompt")

    def route_uri(self, uri: str, request_id: str) -> tuple[Upstream, str]:
        """The upstream serving the exposed resource ``uri`` (or URI template), and its own URI there."""
        catalog = self.catalog()
        routed = catalog.resource_map.get(uri)
        if routed is not None:
            return routed
        parts = split_uri(uri)
        if parts is not None:
            upstream = self.upstreams.get(parts[0])
            if upstream is not None and upstream.config.prefix:
                return upstream, parts[1]
        for template, upstream in catalog.own_templates:
            if template.match(uri) is not None:
                return upstream, uri
        own = [u for u in self.upstreams.values() if not u.config.prefix and u.config.enabled]
        if len(own) == 1:  # one server exposed under its own URIs: whatever is not ours is its
            return own[0], uri
        raise self._unknown("resource", uri, request_id)

    def _route_by_prefix(self, name: str, request_id: str, what: str) -> tuple[Upstream, str]:
        """A name the catalogue does not list (yet): a prefixed one still names its server."""
        parts = split_name(name)
        if parts is not None:
            upstream = self.upstreams.get(parts[0])
            if upstream is not None and upstream.config.prefix:
                return upstream, parts[1]
        raise self._unknown(what, name, request_id)

    def _unknown(self, what: str, name: str, request_id: str) -> McpRelayError:
        known = ", ".join(self.upstreams) or "none"
        expected = "mcprelay://SERVER/URI" if what == "resource" else f"SERVER{SEPARATOR}NAME"
        return McpRelayError(
            ErrorType.USAGE_ERROR,
            f"unknown {what} {name!r}: expected {expected} with a configured server, or the name of a "
            f"{what} a server without prefix lists (configured: {known})",
            # An agent in search mode cannot run the CLI, but it can search.
            suggestion="find the tool's name with retrieve_tools"
            if what == "tool" and self.config.routing_mode == "search"
            else "list what is available with `mcprelay tools list`",
            request_id=request_id,
        )

    # ------------------------------------------------------------------ log levels

    def set_log_level(self, session: object, level: str | None) -> None:
        """A handshake-era agent session asked for ``level`` (``None``: it went away); upstreams follow soon."""
        self._record_level(session, level)
        if self._tg is not None:
            self._tg.start_soon(self._tell_upstreams_level)

    async def apply_log_level(self, session: object, level: str) -> None:
        """Like :meth:`set_log_level`, returning once the upstreams were told (``logging/setLevel`` answers
        after that, so a message logged by the agent's very next call is not filtered at the old level)."""
        self._record_level(session, level)
        with anyio.move_on_after(5):
            await self._tell_upstreams_level()

    def _record_level(self, session: object, level: str | None) -> None:
        if level is None:
            self._log_levels.pop(session, None)
        else:
            self._log_levels[session] = level

    async def _tell_upstreams_level(self) -> None:
        wanted = self._wanted_log_level()
        async with anyio.create_task_group() as tg:
            for upstream in list(self.upstreams.values()):
                if upstream.log_level != wanted:
                    tg.start_soon(upstream.set_log_level, wanted)

    def session_log_level(self, session: object) -> str | None:
        return self._log_levels.get(session)

    def _wanted_log_level(self) -> str | None:
        """The most verbose level any session asked for: the upstreams filter to it, each session further."""
        if not self._log_levels:
            return None
        return min(self._log_levels.values(), key=lambda level: LOG_LEVELS.index(level)
                   if level in LOG_LEVELS else 0)


def _has_param_headers(schema: Any) -> bool:
    try:
        return bool(x_mcp_header_map(schema))
    except Exception:  # a schema too odd to read is the SDK's to judge: treat it as carrying headers
        return True


def _shadowed(upstream: Upstream, what: str, name: str, holder: Upstream) -> None:
    logger.warning(
        "%s: %s %r is not exposed: %s (earlier in the config) already exposes that name; "
        "set \"prefix\": true on one of them", upstream.name, what, name, holder.name,
    )
