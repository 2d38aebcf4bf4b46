"""The gateway object: the upstream supervisors, the aggregated catalog, routing, logins and activity.

Both doors into the gateway — the MCP endpoint and the REST API — talk to this one object, so a
login started through REST makes tools appear on every connected MCP client, and a config edit is
applied in one place. It knows nothing of transports: ``app.py`` serves it, ``server.py`` maps it
onto the MCP protocol.

Naming (the contract fixes tools; resources and prompts follow the same idea):

* tool ``search`` of server ``github`` → ``github__search``;
* prompt ``review`` of server ``github`` → ``github__review``;
* resource ``file:///a.txt`` of server ``docs`` → ``mcprelay://docs/file:///a.txt`` (templates alike),
  so any URI, whatever its scheme, maps back to exactly one server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.methods import serialize_server_result
from pydantic import ValidationError

from mcprelay.activity import ActivityLog, ActivityRecord
from mcprelay.config import Config, LoadedConfig, ServerConfig
from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamEnv
from mcprelay.store.base import TokenStore

logger = logging.getLogger(__name__)

SEPARATOR = "__"
RESOURCE_PREFIX = "mcprelay://"

#: A downstream sink for "the aggregated lists changed" (the MCP server broadcasts list_changed).
ChangeListener = Callable[[], Awaitable[None]]
#: A downstream sink for "this (exposed) resource URI changed" (resources/updated to its subscribers).
UpdateListener = Callable[[str], Coroutine[Any, Any, None]]


def exposed_name(server: str, name: str) -> str:
    return f"{server}{SEPARATOR}{name}"


def split_name(name: str) -> tuple[str, str] | None:
    """``server__tool`` → (server, tool); server names never contain ``__``, so the first one splits."""
    server, sep, rest = name.partition(SEPARATOR)
    return (server, rest) if sep and server and rest else None


def exposed_uri(server: str, uri: str) -> str:
    return f"{RESOURCE_PREFIX}{server}/{uri}"


def split_uri(uri: str) -> tuple[str, str] | None:
    if not uri.startswith(RESOURCE_PREFIX):
        return None
    server, sep, rest = uri[len(RESOURCE_PREFIX) :].partition("/")
    return (server, rest) if sep and server and rest else None


@dataclass(frozen=True)
class RoutedTool:
    name: str
    upstream: Upstream
    tool: types.Tool


class Gateway:
    """The aggregated catalog and the routing of every request the MCP endpoint forwards."""

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
        self.loaded = loaded
        self.home = home
        self.store = store
        self.http = http
        self.activity = activity
        self.env = env or UpstreamEnv(store=store, http=http, home=home)
        self.upstreams: dict[str, Upstream] = {}
        self.version = 0  # bumped whenever the aggregated lists may have changed
        self._listeners: list[ChangeListener] = []
        self._update_listeners: list[UpdateListener] = []
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None

    @property
    def config(self) -> Config:
        return self.loaded.config

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every upstream in the background and report started at once; runs until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for server in self.config.mcp_servers:
                self._start(server)
            tg.start_soon(self._broadcast_changes)
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

    def _resource_updated(self, upstream: Upstream, uri: str) -> None:
        if self._tg is not None and self.upstreams.get(upstream.name) is upstream:
            for listener in list(self._update_listeners):
                self._tg.start_soon(listener, exposed_uri(upstream.name, uri))

    def _start(self, server: ServerConfig) -> None:
        assert self._tg is not None
        upstream = Upstream(server, self.env, self._upstream_changed)
        upstream.on_resource_updated = self._resource_updated
        self.upstreams[server.name] = upstream
        self._tg.start_soon(upstream.run, name=f"upstream-{server.name}")

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Adopt a new config without a restart: add, remove and restart the servers that changed."""
        old = {s.name: s for s in self.config.mcp_servers}
        new = {s.name: s for s in loaded.config.mcp_servers}
        mode_changed = loaded.config.routing_mode != self.config.routing_mode
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

    # ------------------------------------------------------------------ change notifications

    def _upstream_changed(self, upstream: Upstream, catalog_changed: bool) -> None:
        if self.upstreams.get(upstream.name) is not upstream:
            return  # a stopped supervisor reporting its own shutdown
        if catalog_changed:
            self._mark_changed()

    def _mark_changed(self) -> None:
        self.version += 1
        self._changed.set()

    async def _broadcast_changes(self) -> None:
        """Coalesce bursts (several upstreams connecting together) into one list_changed per client."""
        while True:
            await self._changed.wait()
            await anyio.sleep(0.05)
            self._changed = anyio.Event()
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception:  # one broken client must not stop the others from hearing about it
                    logger.exception("list_changed listener failed")

    # ------------------------------------------------------------------ GatewayControl

    def list_servers(self) -> list[dict[str, Any]]:
        return [row for s in self.config.mcp_servers if (row := self.get_server(s.name)) is not None]

    def get_server(self, name: str) -> dict[str, Any] | None:
        upstream = self.upstreams.get(name)
        if upstream is not None:
            row = upstream.describe()
        else:
            server = next((s for s in self.config.mcp_servers if s.name == name), None)
            if server is None:
                return None
            row = {
                "name": name, "url": server.url or None, "transport": server.transport,
                "enabled": server.enabled, "state": "disabled" if not server.enabled else "connecting",
                "auth_state": "unknown", "tool_count": 0, "last_error": None,
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

    def wake_upstream(self, name: str) -> None:
        """A login for ``name`` just stored a grant: look again now instead of at the next poll."""
        upstream = self.upstreams.get(name)
        if upstream is not None:
            upstream.wake()

    # ------------------------------------------------------------------ the aggregated catalog

    def _ready(self) -> Iterator[Upstream]:
        for server in self.config.mcp_servers:
            upstream = self.upstreams.get(server.name)
            if upstream is not None and upstream.state == "ready":
                yield upstream

    def tools(self) -> list[RoutedTool]:
        return [
            RoutedTool(exposed_name(u.name, t.name), u, t) for u in self._ready() for t in u.catalog.tools
        ]

    def resources(self) -> list[types.Resource]:
        return [
            r.model_copy(update={"uri": exposed_uri(u.name, r.uri), "name": exposed_name(u.name, r.name)})
            for u in self._ready() for r in u.catalog.resources
        ]

    def resource_templates(self) -> list[types.ResourceTemplate]:
        return [
            t.model_copy(update={"uri_template": exposed_uri(u.name, t.uri_template),
                                 "name": exposed_name(u.name, t.name)})
            for u in self._ready() for t in u.catalog.templates
        ]

    def prompts(self) -> list[types.Prompt]:
        return [
            p.model_copy(update={"name": exposed_name(u.name, p.name)})
            for u in self._ready() for p in u.catalog.prompts
        ]

    def _route(self, name: str, request_id: str, what: str) -> tuple[Upstream, str]:
        parts = split_name(name) if what != "resource" else split_uri(name)
        upstream = self.upstreams.get(parts[0]) if parts else None
        if parts is None or upstream is None:
            known = ", ".join(self.upstreams) or "none"
            raise McpRelayError(
                ErrorType.USAGE_ERROR,
                f"unknown {what} {name!r}: expected "
                + ("mcprelay://SERVER/URI" if what == "resource" else f"SERVER{SEPARATOR}NAME")
                + f" with a configured server (configured: {known})",
                # An agent in search mode cannot run the CLI, but it can search.
                suggestion="find the tool's name with retrieve_tools"
                if what == "tool" and self.config.routing_mode == "search"
                else "list what is available with `mcprelay tools list`",
                request_id=request_id,
            )
        return upstream, parts[1]

    # ------------------------------------------------------------------ forwarding

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, *, progress: ProgressFnT | None = None
    ) -> types.CallToolResult:
        """Forward one call for the SDK server's handler; every failure becomes an ``isError`` result."""
        call = await self._call(name, arguments, progress)
        try:
            result = types.CallToolResult.model_validate(call.result, by_name=False)
        except ValidationError as exc:
            call.fail(self._malformed(call, exc))
            result = types.CallToolResult.model_validate(call.result, by_name=False)
        self._record(call, len(json.dumps(call.result, default=str)))
        return result

    async def forward_tool_call(
        self, name: str, arguments: dict[str, Any] | None, *, version: str, progress: ProgressFnT | None = None,
        server_info: dict[str, Any] | None = None,
    ) -> str:
        """Forward one call and return its result as JSON text for a client speaking ``version``.

        The passthrough for clients whose transport the gateway owns: the upstream's result travels as
        received, reshaped by the SDK's own serializer only when the upstream speaks another protocol
        version, and is encoded once — that text is both the response and the activity log's size.
        ``server_info`` (2026-era clients) is the downstream server's ``serverInfo`` stamp for the result.
        """
        call = await self._call(name, arguments, progress)
        if call.version is not None and call.version != version:
            try:
                call.result = serialize_server_result("tools/call", version, call.result)
            except (ValidationError, KeyError, ValueError) as exc:
                call.fail(self._malformed(call, exc, version))
        if server_info is not None:  # a 2026-era client: resultType is required, and the stamp is ours
            call.result = {"resultType": "complete", **call.result}
            meta = call.result.get("_meta")
            call.result["_meta"] = {**(meta if isinstance(meta, dict) else {}), _SERVER_INFO_KEY: server_info}
        text = json.dumps(call.result, separators=(",", ":"), ensure_ascii=False, default=str)
        self._record(call, len(text))
        return text

    async def _call(self, name: str, arguments: dict[str, Any] | None, progress: ProgressFnT | None) -> _Call:
        request_id = new_correlation_id()
        server, tool = (split_name(name) or ("", name))
        encoded_arguments = json.dumps(arguments or {}, default=str)  # once: its size, and its text if kept
        call = _Call(request_id, server, tool, time.time(), time.monotonic(), encoded_arguments)
        try:
            upstream, call.tool = self._route(name, request_id, "tool")
            raw, call.version = await upstream.call_tool(call.tool, arguments, request_id=request_id,
                                                         progress=progress)
        except McpRelayError as exc:
            call.fail(exc)
            return call
        problem = _shape_problem(raw)
        if problem is not None:
            call.fail(self._malformed(call, problem))
            return call
        call.result = without_stamp_dict(raw)
        call.status = "tool_error" if raw.get("isError") else "ok"
        return call

    @staticmethod
    def _malformed(call: _Call, problem: Exception | str, version: str | None = None) -> McpRelayError:
        target = f"protocol version {version}" if version else "the MCP schema"
        return McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"tool {call.tool} on {call.server} returned a result that does not match {target}: {str(problem)[:300]}",
            suggestion=f"report it to the maintainers of {call.server}'s MCP server",
            server=call.server, request_id=call.request_id,
        )

    def _record(self, call: _Call, response_bytes: int) -> None:
        try:
            self.activity.record(
                ActivityRecord(
                    request_id=call.request_id, correlation_id=call.correlation_id, server=call.server,
                    tool=call.tool, started_at=call.started,
                    duration_ms=round((time.monotonic() - call.clock) * 1000, 2), status=call.status,
                    error_type=call.error_type, request_bytes=len(call.encoded_arguments),
                    response_bytes=response_bytes,
                    arguments=call.encoded_arguments if self.activity.record_arguments else None,
                )
            )
        except Exception:  # the activity log is a record, never a reason for a call to fail
            logger.exception("recording activity failed")

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        request_id = new_correlation_id()
        upstream, original = self._route(uri, request_id, "resource")
        result = await upstream.read_resource(original, request_id=request_id)
        contents = [c.model_copy(update={"uri": exposed_uri(upstream.name, c.uri)}) for c in result.contents]
        return without_stamp(result.model_copy(update={"contents": contents}))

    async def subscribe_resource(self, uri: str, subscribe: bool) -> None:
        """Forward a (un)subscription to the upstream the URI names; a URI naming none never fires."""
        parts = split_uri(uri)
        upstream = self.upstreams.get(parts[0]) if parts else None
        if parts is not None and upstream is not None:
            await upstream.subscribe_resource(parts[1], subscribe, request_id=new_correlation_id())

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        request_id = new_correlation_id()
        upstream, prompt = self._route(name, request_id, "prompt")
        return without_stamp(await upstream.get_prompt(prompt, arguments, request_id=request_id))


_ResultT = TypeVar("_ResultT", bound=types.Result)
_SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"


def without_stamp(result: _ResultT) -> _ResultT:
    """Drop the upstream's serverInfo stamp from a result: downstream, the server is mcprelay."""
    meta = result.meta
    if not meta or _SERVER_INFO_KEY not in meta:
        return result
    return result.model_copy(update={"meta": _unstamped(meta)})


def _unstamped(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``_meta`` without the serverInfo stamp; ``None`` when nothing else was in it."""
    return {k: v for k, v in meta.items() if k != _SERVER_INFO_KEY} or None


@dataclass
class _Call:
    """One forwarded tool call on its way through: what the activity log records and what the client gets."""

    request_id: str
    server: str
    tool: str
    started: float
    clock: float
    encoded_arguments: str
    result: dict[str, Any] = field(default_factory=dict)
    version: str | None = None  # the protocol version the upstream answered under
    status: str = "ok"
    error_type: str | None = None
    correlation_id: str | None = None

    def fail(self, error: McpRelayError) -> None:
        error.with_context(request_id=self.request_id)
        self.result = error_result(error).model_dump(by_alias=True, mode="json", exclude_none=True)
        self.version = None  # ours: valid under every protocol version
        self.status, self.error_type, self.correlation_id = "error", str(error.error_type), error.correlation_id


def without_stamp_dict(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`without_stamp` for a result still in JSON form."""
    meta = result.get("_meta")
    if not isinstance(meta, dict) or _SERVER_INFO_KEY not in meta:
        return result
    trimmed = {k: v for k, v in result.items() if k != "_meta"}
    if (rest := _unstamped(meta)) is not None:
        trimmed["_meta"] = rest
    return trimmed


def _shape_problem(result: dict[str, Any]) -> str | None:
    """What would make a client choke on a tool result, checked without building a model.

    A result whose version matches the client's is forwarded as received, so this is the gateway's
    one look at it: the fields every client reads, in the types the schema gives them. Anything finer
    (a content block's own fields) is the client's to validate, as it would be without a gateway.
    """
    content = result.get("content")
    if not isinstance(content, list) or not all(isinstance(c, dict) and isinstance(c.get("type"), str)
                                                for c in content):
        return "content must be a list of content blocks (objects with a string type)"
    if "isError" in result and not isinstance(result["isError"], bool):
        return "isError must be true or false"
    if result.get("structuredContent") is not None and not isinstance(result["structuredContent"], dict):
        return "structuredContent must be an object"
    return None


def error_result(error: McpRelayError) -> types.CallToolResult:
    """A tool result the agent can read: ``isError`` with the structured error as JSON text."""
    payload = error.to_dict()
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(payload))], structured_content=None, is_error=True
    )
