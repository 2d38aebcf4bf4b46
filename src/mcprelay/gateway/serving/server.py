"""The agent-facing MCP server: the aggregated catalogue on the SDK's low-level ``Server``.

The SDK's server speaks both protocol eras on both wires (the ``initialize`` handshake and the
2026-07-28 per-request envelope, ``server/discover``, ``subscriptions/listen``), so everything an agent
sends reaches a handler here in one form. Listings are answered from the gateway's catalogue (no
upstream round trip) once the gateway has settled; everything else — tool calls, prompts, resource
reads, completions — is forwarded by the catalogue's forwarder with an :class:`SdkOrigin`, the
channel back to this request's client. Handlers return the forwarder's JSON; nothing is rebuilt
into models on the way.

What the server keeps per handshake-era connection (:class:`Connected`): its capabilities, the log
level it asked for, its roots (fetched when an upstream asks and no request explains the question,
dropped on ``notifications/roots/list_changed``), and the session to tell it of list changes.
2026-era clients hear of changes through ``subscriptions/listen``; their resource subscriptions are
forwarded upstream for as long as their stream is open.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.methods import parse_server_request
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcprelay import __version__, seam
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.forward import error_result
from mcprelay.gateway.catalog.origin import level_admits
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.catalog.search import ToolIndex, tools_from_schema
from mcprelay.gateway.upstreams.supervisor import UpstreamRpcError

logger = logging.getLogger(__name__)

Ctx = ServerRequestContext[Any, Any]

#: Connections remembered for list_changed at most; the oldest are forgotten first.
MAX_SESSIONS = 1000
#: How long an agent may take to answer ``roots/list`` when an upstream asks for everyone's roots.
ROOTS_TIMEOUT = 5.0
#: The retry fields of a multi round-trip request, forwarded as they came.
_RETRY_FIELDS = ("inputResponses", "requestState")

INSTRUCTIONS = (
    "mcprelay is a gateway: every tool here belongs to an upstream MCP server and is named SERVER__TOOL. "
    "A failed call returns isError with a JSON error (error_type, message, suggestion)."
)
SEARCH_INSTRUCTIONS = (
    "mcprelay is a gateway in search mode: call retrieve_tools with what you want to do, then call_tool with "
    "the returned name (SERVER__TOOL) and arguments matching its input schema."
)

RETRIEVE_TOOLS = types.Tool(
    name="retrieve_tools",
    description="Find the upstream tools that fit a task. Returns names, descriptions, input schemas and scores.",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What you want to do, in words."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
        },
        "required": ["query"],
    },
)
CALL_TOOL = types.Tool(
    name="call_tool",
    description="Call an upstream tool found with retrieve_tools, by its SERVER__TOOL name.",
    input_schema={
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The tool's name as retrieve_tools returned it."},
            "args": {"type": "object", "description": "The tool's arguments.", "default": {}},
        },
        "required": ["name"],
    },
)
_LIST_CHANGED = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
#: The catalogue changes at will: a 2026-07-28 client must not cache what it lists or reads.
_NO_CACHE = CacheHint(ttl_ms=0, scope="private")


class _RelayServer(Server[Any]):
    """Advertises ``listChanged`` on every transport (HTTP sessions build their options themselves)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or _LIST_CHANGED, experimental_capabilities, extensions
        )


@dataclass
class Connected:
    """One handshake-era agent connection, as the gateway keeps it."""

    session: ServerSession  # for what is not about a request: list changes, log messages, roots
    capabilities: dict[str, Any]
    session_id: str | None
    roots: list[dict[str, Any]] | None = None
    subscriptions: set[str] = field(default_factory=set)
    initialized: bool = False  # it sent notifications/initialized: notifications may go to it now


class Downstream:
    """Builds the MCP server for a :class:`Gateway` and keeps what it knows of the connected agents."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.bus = InMemorySubscriptionBus()
        self.connections: OrderedDict[object, Connected] = OrderedDict()  # keyed by the SDK's Connection
        self._by_session_id: dict[str, object] = {}
        self._index: tuple[int, ToolIndex] | None = None
        self._subscribers: dict[str, int] = {}  # exposed resource URI → subscriptions (both eras)
        self._listen = ListenHandler(self.bus)
        self.server = _RelayServer(
            "mcprelay",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_list_prompts=self._list_prompts,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            # What the SDK checks a 2026-07-28 call's Mcp-Param-* headers against: the exposed tool's schema.
            get_tool_input_schema=self._input_schema,
            cache_hints={
                "tools/list": _NO_CACHE, "prompts/list": _NO_CACHE, "resources/list": _NO_CACHE,
                "resources/templates/list": _NO_CACHE, "resources/read": _NO_CACHE,
            },
        )
        # Handlers that return the forwarder's JSON as it is (the typed on_* slots expect models).
        self.server.add_request_handler("tools/call", types.CallToolRequestParams, self._call_tool)
        self.server.add_request_handler("prompts/get", types.GetPromptRequestParams, self._get_prompt)
        self.server.add_request_handler("resources/read", types.ReadResourceRequestParams, self._read_resource)
        self.server.add_request_handler("completion/complete", types.CompleteRequestParams, self._complete)
        self.server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, self._subscriptions_listen
        )
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        self.server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, self._roots_changed
        )
        self.server.middleware.append(self._track_connections)
        gateway.add_listener(self.broadcast)
        gateway.add_update_listener(self._resource_updated)
        gateway.forward.broadcast_log = self.broadcast_log
        gateway.forward.roots_source = self.everyones_roots
        gateway.forward.elicitation_done = self._elicitation_done

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        routed = self.gateway.catalog().tool_map.get(name)
        return routed.tool.input_schema if routed is not None else None

    def server_info(self) -> dict[str, Any]:
        """The ``serverInfo`` stamp the SDK server puts on 2026-era results (for answers given beside it)."""
        return self.server.server_info_stamp

    @property
    def search_mode(self) -> bool:
        return self.gateway.config.routing_mode == "search"

    def connection_key(self, session_id: str) -> object | None:
        """The handshake-era connection of an HTTP session id, if it is known."""
        return self._by_session_id.get(session_id)

    def only_connection(self) -> tuple[object, Connected] | None:
        """The one connection of a stdio gateway (``None`` before ``initialize`` or when there are several)."""
        if len(self.connections) != 1:
            return None
        return next(iter(self.connections.items()))

    # ------------------------------------------------------------------ connections

    async def _track_connections(self, ctx: Ctx, call_next: CallNext) -> HandlerResult:
        """Know each handshake-era connection from its ``initialize`` on (a fast path may serve its very next
        request, before the SDK has processed ``notifications/initialized``); tell it of changes once it
        has said it is initialized."""
        if ctx.method == "initialize" and ctx.request_id is not None:
            result = await call_next(ctx)
            key = seam.connection_of(ctx.session)
            caps = (ctx.params or {}).get("capabilities")
            session_id = getattr(key, "session_id", None)
            self.connections[key] = Connected(
                ctx.session, caps if isinstance(caps, dict) else {},
                session_id if isinstance(session_id, str) else None,
            )
            if isinstance(session_id, str):
                self._by_session_id[session_id] = key
            while len(self.connections) > MAX_SESSIONS:
                self._forget(next(iter(self.connections)))
            seam.on_connection_closed(ctx.session, lambda: self._forget(key))
            return result
        if ctx.method == "notifications/initialized" and ctx.request_id is None:
            connected = self.connections.get(seam.connection_of(ctx.session))
            if connected is not None:
                connected.initialized = True
        return await call_next(ctx)

    def _initialized(self) -> list[tuple[object, Connected]]:
        return [(k, c) for k, c in self.connections.items() if c.initialized]

    def _forget(self, key: object) -> None:
        connected = self.connections.pop(key, None)
        if connected is None:
            return
        if connected.session_id is not None:
            self._by_session_id.pop(connected.session_id, None)
        self.gateway.set_log_level(key, None)
        for uri in connected.subscriptions:
            self._release(uri)
        if connected.roots is not None or "roots" in connected.capabilities:
            self._tell_upstreams_roots_changed()

    def capabilities_of(self, ctx: Ctx) -> dict[str, Any]:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connected = self.connections.get(seam.connection_of(ctx.session))
            if connected is not None:
                return connected.capabilities
        caps = ctx.session.client_capabilities
        return caps.model_dump(by_alias=True, mode="json", exclude_none=True) if caps else {}

    # ------------------------------------------------------------------ list_changed

    async def broadcast(self) -> None:
        """Tell every connected client that the lists changed; each one best-effort, bounded in time."""
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        await self.bus.publish(PromptsListChanged())
        for key, connected in self._initialized():
            try:
                with anyio.fail_after(5):
                    await connected.session.send_tool_list_changed()
                    await connected.session.send_resource_list_changed()
                    await connected.session.send_prompt_list_changed()
            except Exception:
                logger.debug("dropping a downstream connection that cannot be notified", exc_info=True)
                self._forget(key)

    # ------------------------------------------------------------------ logging

    async def _set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> HandlerResult:
        """``logging/setLevel`` (handshake era): this connection's threshold, and the upstreams' if lower."""
        await self.gateway.apply_log_level(seam.connection_of(ctx.session), params.level)
        return types.EmptyResult()

    async def broadcast_log(self, params: dict[str, Any]) -> None:
        """A log message no request explains: to every handshake-era connection whose level admits it."""
        level = params.get("level")
        notification: types.LoggingMessageNotification | None = None
        for key, connected in self._initialized():
            if isinstance(level, str) and not level_admits(self.gateway.session_log_level(key), level):
                continue
            notification = notification or types.LoggingMessageNotification(
                params=types.LoggingMessageNotificationParams.model_validate(params, by_name=False)
            )
            try:
                with anyio.fail_after(5):
                    await connected.session.send_notification(notification)
            except Exception:
                logger.debug("a downstream connection could not take a log message", exc_info=True)

    async def _elicitation_done(self, key: object, elicitation_id: str) -> None:
        connected = self.connections.get(key)
        if connected is None:
            return
        notification = types.ElicitCompleteNotification(
            params=types.ElicitCompleteNotificationParams(elicitation_id=elicitation_id)
        )
        try:
            with anyio.fail_after(5):
                await connected.session.send_notification(notification)
        except Exception:
            logger.debug("a downstream connection could not take elicitation/complete", exc_info=True)

    # ------------------------------------------------------------------ roots

    async def everyones_roots(self) -> list[dict[str, Any]] | None:
        """The roots of every handshake-era agent that offers them (``None`` when none does)."""
        offering = [(k, c) for k, c in self._initialized() if "roots" in c.capabilities]
        if not offering:
            return None
        roots: dict[str, dict[str, Any]] = {}
        for _key, connected in offering:
            if connected.roots is None:
                try:
                    with anyio.fail_after(ROOTS_TIMEOUT):
                        result = await connected.session.send_request(types.ListRootsRequest(), types.ListRootsResult)
                    connected.roots = [_json(root) for root in result.roots]
                except Exception:
                    logger.debug("an agent did not answer roots/list", exc_info=True)
                    continue
            for root in connected.roots:
                roots.setdefault(str(root.get("uri")), root)
        return list(roots.values())

    async def _roots_changed(self, ctx: Ctx, params: types.NotificationParams) -> None:
        connected = self.connections.get(seam.connection_of(ctx.session))
        if connected is not None:
            connected.roots = None
        self._tell_upstreams_roots_changed()

    def _tell_upstreams_roots_changed(self) -> None:
        try:
            tg = self.gateway.task_group
        except McpRelayError:
            return
        for upstream in self.gateway.upstreams.values():
            tg.start_soon(upstream.roots_changed)

    # ------------------------------------------------------------------ tools

    async def _list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        await self.gateway.settle()
        if self.search_mode:
            return types.ListToolsResult(tools=[RETRIEVE_TOOLS, CALL_TOOL])
        tools = [routed.tool.model_copy(update={"name": routed.name}) for routed in self.gateway.tools()]
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> HandlerResult:
        if "input_responses" in params.model_fields_set and params.input_responses is None:
            # A protocol error (the schema wants an object), so a JSON-RPC error rather than a tool result.
            raise MCPError(types.INVALID_PARAMS, "inputResponses must be an object when present")
        raw = ctx.params or {}
        name, arguments = params.name, raw.get("arguments")
        origin = SdkOrigin(self, ctx)
        if self.search_mode:
            if name == RETRIEVE_TOOLS.name:
                return self._retrieve(arguments or {}, ctx.protocol_version)
            if name != CALL_TOOL.name:
                return _usage_result(f"in search mode the tools are retrieve_tools and call_tool, not {name!r}",
                                     ctx.protocol_version)
            target, inner = (arguments or {}).get("name"), (arguments or {}).get("args", {})
            if not isinstance(target, str) or not isinstance(inner, dict):
                return _usage_result("call_tool needs name (a string) and args (an object)", ctx.protocol_version)
            name, arguments = target, inner
        return await self.gateway.forward.call_tool(name, arguments, origin, extra=_retry_fields(raw))

    def _tool_index(self) -> ToolIndex:
        version = self.gateway.version
        if self._index is None or self._index[0] != version:
            index = ToolIndex.build(
                tools_from_schema(r.upstream.name, r.tool.name, r.tool.description, r.tool.input_schema)
                for r in self.gateway.tools()
            )
            self._index = (version, index)
        return self._index[1]

    def _retrieve(self, arguments: Mapping[str, Any], version: str) -> HandlerResult:
        query, limit = arguments.get("query"), arguments.get("limit", 5)
        if not isinstance(query, str) or not isinstance(limit, int) or not 1 <= limit <= 50:
            return _usage_result("retrieve_tools needs query (a string) and limit (an integer from 1 to 50)", version)
        schemas = {r.name: r.tool for r in self.gateway.tools()}
        found = []
        for hit, score in self._tool_index().search(query, limit):
            tool = schemas.get(hit.name)
            if tool is not None:
                found.append({"name": hit.name, "server": hit.server, "description": tool.description or "",
                              "input_schema": tool.input_schema, "score": round(score, 4)})
        return types.CallToolResult(content=[types.TextContent(text=json.dumps({"tools": found}))],
                                    structured_content={"tools": found})

    # ------------------------------------------------------------------ resources and prompts

    async def _list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        await self.gateway.settle()
        return types.ListResourcesResult(resources=self.gateway.resources())

    async def _list_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        await self.gateway.settle()
        return types.ListResourceTemplatesResult(resource_templates=self.gateway.resource_templates())

    async def _list_prompts(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        await self.gateway.settle()
        return types.ListPromptsResult(prompts=self.gateway.prompts())

    async def _read_resource(self, ctx: Ctx, params: types.ReadResourceRequestParams) -> HandlerResult:
        try:
            return await self.gateway.forward.read_resource(
                params.uri, SdkOrigin(self, ctx), extra=_retry_fields(ctx.params or {})
            )
        except McpRelayError as exc:
            raise _protocol_error(exc) from None
        except UpstreamRpcError as exc:  # the upstream's own error, passed on as it is
            raise MCPError.from_error_data(exc.error) from None

    async def _get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> HandlerResult:
        try:
            return await self.gateway.forward.get_prompt(
                params.name, (ctx.params or {}).get("arguments"), SdkOrigin(self, ctx),
                extra=_retry_fields(ctx.params or {}),
            )
        except McpRelayError as exc:
            raise _protocol_error(exc) from None
        except UpstreamRpcError as exc:  # the upstream's own error, passed on as it is
            raise MCPError.from_error_data(exc.error) from None

    async def _complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> HandlerResult:
        raw = {k: v for k, v in (ctx.params or {}).items() if k != "_meta"}
        try:
            return await self.gateway.forward.complete(raw, SdkOrigin(self, ctx))
        except McpRelayError as exc:
            raise _protocol_error(exc) from None
        except UpstreamRpcError as exc:  # the upstream's own error, passed on as it is
            raise MCPError.from_error_data(exc.error) from None

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        connected = self.connections.get(seam.connection_of(ctx.session))
        uri = str(params.uri)
        if connected is not None and uri not in connected.subscriptions:
            connected.subscriptions.add(uri)
            await self._hold(uri)
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        connected = self.connections.get(seam.connection_of(ctx.session))
        uri = str(params.uri)
        if connected is not None and uri in connected.subscriptions:
            connected.subscriptions.discard(uri)
            self._release(uri)
        return types.EmptyResult()

    async def _subscriptions_listen(self, ctx: Ctx, params: types.SubscriptionsListenRequestParams) -> HandlerResult:
        """``subscriptions/listen`` (2026-07-28): the SDK's stream, with its resources subscribed upstream."""
        uris = sorted(set(params.notifications.resource_subscriptions or ()))
        for uri in uris:
            await self._hold(uri)
        try:
            return await self._listen(ctx, params)
        finally:
            for uri in uris:
                self._release(uri)

    async def _hold(self, uri: str) -> None:
        self._subscribers[uri] = self._subscribers.get(uri, 0) + 1
        if self._subscribers[uri] == 1:
            await self.gateway.forward.subscribe(uri, True)

    def _release(self, uri: str) -> None:
        count = self._subscribers.get(uri, 0) - 1
        if count > 0:
            self._subscribers[uri] = count
            return
        self._subscribers.pop(uri, None)
        try:
            self.gateway.task_group.start_soon(self.gateway.forward.subscribe, uri, False)
        except McpRelayError:
            pass

    async def _resource_updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for key, connected in self._initialized():
            if uri not in connected.subscriptions:
                continue
            try:
                with anyio.fail_after(5):
                    await connected.session.send_resource_updated(uri)
            except Exception:
                logger.debug("dropping a resource subscriber that cannot be notified", exc_info=True)
                self._forget(key)


class SdkOrigin:
    """A request served by the SDK's server, as the forwarder's :class:`~mcprelay.gateway.catalog.origin.Origin`."""

    def __init__(self, downstream: Downstream, ctx: Ctx) -> None:
        self._downstream = downstream
        self._ctx = ctx
        self.version: str = ctx.protocol_version
        self._modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        self.session: object = seam.connection_of(ctx.session)
        meta = ctx.meta or {}
        self.wants_progress = meta.get("progress_token") is not None
        level = meta.get(LOG_LEVEL_META_KEY)
        self.log_level: str | None = (
            (level if isinstance(level, str) else None) if self._modern
            else downstream.gateway.session_log_level(self.session)
        )

    @property
    def capabilities(self) -> dict[str, Any]:
        return self._downstream.capabilities_of(self._ctx)

    @property
    def can_ask(self) -> bool:
        return not self._modern and self._ctx.session.can_send_request

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        await self._ctx.session.report_progress(progress, total, message)

    async def log(self, params: dict[str, Any]) -> None:
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams.model_validate(params, by_name=False)
        )
        await self._ctx.session.send_notification(notification, related_request_id=self._ctx.request_id)

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request = parse_server_request(method, self.version, params)
        result_type: Any = {
            "elicitation/create": types.ElicitResult,
            "roots/list": types.ListRootsResult,
        }.get(method)
        if method == "sampling/createMessage":
            result_type = types.CreateMessageResultWithTools if params.get("tools") else types.CreateMessageResult
        if result_type is None:
            raise MCPError(types.METHOD_NOT_FOUND, f"mcprelay does not relay {method}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await self._ctx.session.send_request(
                request,  # type: ignore[arg-type]
                result_type,
                metadata=ServerMessageMetadata(related_request_id=self._ctx.request_id),
            )
        data: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return data


def _json(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return data


def _retry_fields(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    found = {k: raw[k] for k in _RETRY_FIELDS if k in raw}
    return found or None


def _usage_result(message: str, version: str | None) -> dict[str, Any]:
    return error_result(McpRelayError(ErrorType.USAGE_ERROR, message, suggestion="call retrieve_tools first"),
                        version)


def _protocol_error(error: McpRelayError) -> MCPError:
    """Resources and prompts have no isError result: the structured error rides in the JSON-RPC error data."""
    code = types.INVALID_PARAMS if error.error_type == ErrorType.USAGE_ERROR else types.INTERNAL_ERROR
    return MCPError(code, error.message, data=error.to_dict())
