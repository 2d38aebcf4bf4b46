"""The fixture MCP server: the SDK's low-level ``Server`` with every fixture handler registered.

The low-level server (not ``MCPServer``) because the fixtures must control their wire shape
exactly: raw JSON Schema input schemas, ``input_required`` results with their own keys,
elicitation schemas the high-level helpers would rewrite. The SDK still does everything a real
server does around them, in both eras: the ``initialize`` handshake and sessions (2025-11-25), the
per-request envelope, ``server/discover``, cache hints, the ``serverInfo`` stamp, sealed
``requestState`` (``RequestStateBoundary``) and ``subscriptions/listen`` streams (2026-07-28),
per-version result validation, progress, cancellation and the HTTP rules (status codes,
header validation, DNS rebinding protection, resumable SSE).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.caching import CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from mcprelay.testing.fixture_server import catalog
from mcprelay.testing.fixture_server.asking import CapabilityMissing, InputRequired, is_modern
from mcprelay.testing.fixture_server.content import SERVER_NAME, SERVER_VERSION
from mcprelay.testing.fixture_server.state import FixtureState
from mcprelay.testing.fixture_server.tools import BY_NAME, TOOLS, describe, tool_error

Ctx = ServerRequestContext[Any, Any]

INSTRUCTIONS = (
    "mcprelay's fixture server: tools, resources and prompts named test_* for protocol conformance "
    "tests. It exercises every server feature in both protocol eras; it does nothing useful."
)

_CACHE_HINTS: dict[Any, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=300_000, scope="public"),
    "prompts/list": CacheHint(ttl_ms=300_000, scope="public"),
    "resources/list": CacheHint(ttl_ms=300_000, scope="public"),
    "resources/templates/list": CacheHint(ttl_ms=300_000, scope="public"),
    "resources/read": CacheHint(ttl_ms=0, scope="private"),
}


class FixtureServer(Server[Any]):
    """The SDK server, advertising list-change notifications in the handshake era too.

    Every transport entry (stdio, and each streamable HTTP session) builds its ``initialize``
    result from :meth:`create_initialization_options`; the SDK's default there declares no
    ``listChanged``, though these lists do announce changes.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(options, experimental_capabilities, extensions)


def _tool_input_schema(name: str) -> Mapping[str, Any] | None:
    tool = BY_NAME.get(name)
    return tool.listing()["inputSchema"] if tool else None


Handler = Callable[[Ctx, Any], Awaitable[dict[str, Any]]]


def _complete(handler: Handler) -> Handler:
    """Mark a wire-dict result ``resultType: "complete"`` in the 2026 era (the field is required there).

    The SDK adds it for results built from its models; the fixtures return wire dicts so that
    their shape is exactly what is written here, so they say it themselves. Handshake-era
    results never carry it: the per-version validation drops what that era does not define.
    """

    @functools.wraps(handler)
    async def wrapped(ctx: Ctx, params: Any) -> dict[str, Any]:
        result = await handler(ctx, params)
        if is_modern(ctx) and "resultType" not in result:
            result = {**result, "resultType": "complete"}
        return result

    return wrapped


def build_server(state: FixtureState | None = None) -> FixtureServer:
    """A fresh fixture server (one per process; every connection shares ``state``)."""
    state = state or FixtureState()
    listen = ListenHandler(state.bus)

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return {"tools": [describe(tool, state) for tool in TOOLS]}

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
        tool = BY_NAME.get(params.name)
        if tool is None:
            raise MCPError(
                code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}", data={"name": params.name}
            )
        try:
            return await tool.handler(ctx, state, dict(params.arguments or {}))
        except InputRequired as needed:
            return needed.result()
        except CapabilityMissing as missing:
            if is_modern(ctx):
                raise missing.error() from None
            return tool_error(str(missing))  # the handshake era has no error code for it
        except MCPError as error:
            if is_modern(ctx):
                raise
            return tool_error(f"the client refused a request this tool made: {error.error.message}")

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return {"resources": [dict(r) for r in catalog.RESOURCES]}

    async def list_templates(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return {"resourceTemplates": [dict(t) for t in catalog.TEMPLATES]}

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        return catalog.read(state, params.uri)

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> dict[str, Any]:
        state.subscribe(ctx, params.uri)  # any URI: one that names nothing is honored and never fires
        return {}

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
        state.unsubscribe(ctx, params.uri)
        return {}

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return {"prompts": catalog.list_prompts(state)}

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
        try:
            return await catalog.get_prompt(ctx, params.name, params.arguments or {})
        except InputRequired as needed:
            return needed.result()
        except CapabilityMissing as missing:
            if is_modern(ctx):
                raise missing.error() from None
            raise MCPError(code=types.INVALID_REQUEST, message=str(missing)) from None

    async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> dict[str, Any]:
        raw = ctx.params or {}
        return catalog.complete(raw.get("ref") or {}, raw.get("argument") or {})

    async def set_level(ctx: Ctx, params: types.SetLevelRequestParams) -> dict[str, Any]:
        state.set_log_level(ctx, params.level)
        return {}

    with warnings.catch_warnings():
        # Logging is deprecated in 2026-07-28 but still part of the protocol: the fixture serves it on purpose.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = FixtureServer(
            SERVER_NAME,
            version=SERVER_VERSION,
            title="mcprelay fixture server",
            instructions=INSTRUCTIONS,
            cache_hints=_CACHE_HINTS,
            get_tool_input_schema=_tool_input_schema,
            on_list_tools=_complete(list_tools),  # type: ignore[arg-type]
            on_call_tool=_complete(call_tool),  # type: ignore[arg-type]
            on_list_resources=_complete(list_resources),  # type: ignore[arg-type]
            on_list_resource_templates=_complete(list_templates),  # type: ignore[arg-type]
            on_read_resource=_complete(read_resource),  # type: ignore[arg-type]
            on_subscribe_resource=_complete(subscribe),  # type: ignore[arg-type]
            on_unsubscribe_resource=_complete(unsubscribe),  # type: ignore[arg-type]
            on_subscriptions_listen=listen,
            on_list_prompts=_complete(list_prompts),  # type: ignore[arg-type]
            on_get_prompt=_complete(get_prompt),  # type: ignore[arg-type]
            on_completion=_complete(complete),  # type: ignore[arg-type]
            on_set_logging_level=_complete(set_level),  # type: ignore[arg-type]
        )
    # Seal every requestState the fixtures mint and verify every one that comes back (SEP-2322):
    # a tampered or foreign state is answered with -32602 before any handler sees it.
    server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME))
    return server
