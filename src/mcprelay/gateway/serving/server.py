"""The downstream MCP server: the aggregated catalog on the SDK's low-level ``Server``.

Handlers read the gateway's cached lists (no upstream round trip for a listing) and forward calls
concurrently: each request runs in its own SDK task and awaits its upstream, with no lock between
them. Progress from an upstream is passed to the caller's request; a cancelled downstream request
cancels the awaiting task, and the SDK client then tells the upstream it was cancelled.

``list_changed`` reaches clients of both protocol eras: handshake-era clients get
``notifications/tools/list_changed`` on their connection (recorded when they send
``notifications/initialized``), 2026-era clients through ``subscriptions/listen``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError

from mcprelay import __version__, seam
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.router import Gateway, error_result
from mcprelay.gateway.catalog.search import ToolIndex, tools_from_schema

logger = logging.getLogger(__name__)

Ctx = ServerRequestContext[Any, Any]

#: Connections remembered for list_changed at most; the oldest are forgotten first.
MAX_SESSIONS = 1000

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


class Downstream:
    """Builds the MCP server for a :class:`Gateway` and broadcasts its list changes."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.bus = InMemorySubscriptionBus()
        self._sessions: OrderedDict[int, ServerSession] = OrderedDict()
        self._index: tuple[int, ToolIndex] | None = None
        self._subscribers: dict[str, dict[int, ServerSession]] = {}  # exposed resource URI → sessions
        self.server = _RelayServer(
            "mcprelay",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        # logging/setLevel: accepted (the level is the client's to choose); the gateway sends no log
        # messages of its own, and upstreams' notifications/message are not relayed.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _accept_level)
        self.server.middleware.append(self._track_connections)
        gateway.add_listener(self.broadcast)
        gateway.add_update_listener(self._resource_updated)

    def server_info(self) -> dict[str, Any]:
        """The ``serverInfo`` stamp the SDK server puts on 2026-era results (for answers given beside it)."""
        return self.server.server_info_stamp

    @property
    def search_mode(self) -> bool:
        return self.gateway.config.routing_mode == "search"

    # ------------------------------------------------------------------ list_changed

    async def _track_connections(self, ctx: Ctx, call_next: CallNext) -> HandlerResult:
        if ctx.method == "notifications/initialized" and ctx.request_id is None:
            key = id(ctx.session)
            self._sessions[key] = ctx.session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            seam.on_connection_closed(ctx.session, lambda: self._sessions.pop(key, None))
        return await call_next(ctx)

    async def broadcast(self) -> None:
        """Tell every connected client that the lists changed; each one best-effort, bounded in time."""
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        await self.bus.publish(PromptsListChanged())
        for key, session in list(self._sessions.items()):
            try:
                with anyio.fail_after(5):
                    await session.send_tool_list_changed()
                    await session.send_resource_list_changed()
                    await session.send_prompt_list_changed()
            except Exception:
                logger.debug("dropping a downstream connection that cannot be notified", exc_info=True)
                self._sessions.pop(key, None)

    # ------------------------------------------------------------------ tools

    async def _list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        if self.search_mode:
            return types.ListToolsResult(tools=[RETRIEVE_TOOLS, CALL_TOOL])
        tools = [routed.tool.model_copy(update={"name": routed.name}) for routed in self.gateway.tools()]
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        if "input_responses" in params.model_fields_set and params.input_responses is None:
            # A protocol error (the schema wants an object), so a JSON-RPC error rather than a tool result.
            raise MCPError(types.INVALID_PARAMS, "inputResponses must be an object when present")
        name, arguments = params.name, params.arguments
        if self.search_mode:
            if name == RETRIEVE_TOOLS.name:
                return self._retrieve(arguments or {})
            if name != CALL_TOOL.name:
                return _usage_result(f"in search mode the tools are retrieve_tools and call_tool, not {name!r}")
            args = arguments or {}
            target, inner = args.get("name"), args.get("args", {})
            if not isinstance(target, str) or not isinstance(inner, dict):
                return _usage_result("call_tool needs name (a string) and args (an object)")
            name, arguments = target, inner

        return await self.gateway.call_tool(name, arguments, progress=_Progress(ctx.session))

    def _tool_index(self) -> ToolIndex:
        version = self.gateway.version
        if self._index is None or self._index[0] != version:
            index = ToolIndex.build(
                tools_from_schema(r.upstream.name, r.tool.name, r.tool.description, r.tool.input_schema)
                for r in self.gateway.tools()
            )
            self._index = (version, index)
        return self._index[1]

    def _retrieve(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        query, limit = arguments.get("query"), arguments.get("limit", 5)
        if not isinstance(query, str) or not isinstance(limit, int) or not 1 <= limit <= 50:
            return _usage_result("retrieve_tools needs query (a string) and limit (an integer from 1 to 50)")
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
        return types.ListResourcesResult(resources=self.gateway.resources())

    async def _list_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=self.gateway.resource_templates())

    async def _read_resource(self, ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        try:
            return await self.gateway.read_resource(str(params.uri))
        except McpRelayError as exc:
            raise _protocol_error(exc) from None

    async def _subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        self._subscribers.setdefault(uri, {})[id(ctx.session)] = ctx.session
        try:
            await self.gateway.subscribe_resource(uri, True)
        except McpRelayError as exc:
            raise _protocol_error(exc) from None
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        sessions = self._subscribers.get(uri, {})
        sessions.pop(id(ctx.session), None)
        if not sessions:
            self._subscribers.pop(uri, None)
            try:
                await self.gateway.subscribe_resource(uri, False)
            except McpRelayError as exc:
                raise _protocol_error(exc) from None
        return types.EmptyResult()

    async def _resource_updated(self, uri: str) -> None:
        for key, session in list(self._subscribers.get(uri, {}).items()):
            try:
                with anyio.fail_after(5):
                    await session.send_resource_updated(uri)
            except Exception:
                logger.debug("dropping a resource subscriber that cannot be notified", exc_info=True)
                self._subscribers.get(uri, {}).pop(key, None)

    async def _list_prompts(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=self.gateway.prompts())

    async def _get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        try:
            return await self.gateway.get_prompt(params.name, params.arguments)
        except McpRelayError as exc:
            raise _protocol_error(exc) from None


class _Progress:
    """Passes an upstream's progress on to the downstream request (a no-op when the caller sent no token)."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        await self.session.report_progress(progress, total, message)


async def _accept_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


def _usage_result(message: str) -> types.CallToolResult:
    return error_result(McpRelayError(ErrorType.USAGE_ERROR, message, suggestion="call retrieve_tools first"))


def _protocol_error(error: McpRelayError) -> MCPError:
    """Resources and prompts have no isError result: the structured error rides in the JSON-RPC error data."""
    return MCPError(types.INTERNAL_ERROR, error.message, data=error.to_dict())
