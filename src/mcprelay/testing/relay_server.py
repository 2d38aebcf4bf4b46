"""An MCP server that uses every part of the protocol a gateway must relay, in either era.

    python -m mcprelay.testing.relay_server [--era handshake|dual] [--http HOST:PORT]

Built on the official SDK's low-level ``Server``. Over stdio (default) or streamable HTTP. With
``--era handshake`` it refuses ``server/discover``, so clients fall back to the ``initialize``
handshake and it talks as a 2025-11-25 server would (server-to-client requests during a call);
with ``--era dual`` (default) a 2026-07-28 client gets the stateless era, where the same tools ask
for input with ``input_required`` results instead (multi round-trip requests).

What it offers, each one there to be relayed:

* tools: ``echo``; ``ask_name`` (elicitation, form mode); ``ask_url`` (elicitation, URL mode, then
  ``notifications/elicitation/complete`` in the handshake era); ``ask_model`` (sampling); ``my_roots``
  (the client's roots); ``chatter`` (log messages at four levels, then a result); ``links`` (a
  ``resource_link`` and an embedded resource); ``slow`` (progress, then a long sleep to cancel);
* resources ``memo://note/1`` and ``memo://note/2`` and the template ``memo://note/{id}``;
* the prompt ``greet`` (its message embeds a note), with completion for its ``name`` argument and
  for the template's ``id``;
* ``stats``: how many calls were cancelled, and the last roots it saw;
* ``touch``: tells the subscribers of a note that it changed (``resources/subscribe`` in the handshake
  era, ``subscriptions/listen`` in 2026-07-28); its answer says whether the note has a subscription here.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

Ctx = ServerRequestContext[Any, Any]

NOTES = {"1": "the first note", "2": "the second note", "3": "the third note"}
NAMES = ["alice", "albert", "bob", "carol"]

_TOOLS = [
    types.Tool(name="echo", description="Return the text.",
               input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    types.Tool(name="ask_name", description="Ask the user for their name (elicitation).",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="ask_url", description="Send the user to a URL (elicitation, URL mode), then say it is done.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="ask_model", description="Ask the client's model a question (sampling).",
               input_schema={"type": "object", "properties": {"question": {"type": "string"}}}),
    types.Tool(name="my_roots", description="The client's roots.", input_schema={"type": "object", "properties": {}}),
    types.Tool(name="chatter", description="Log at debug, info, warning and error, then answer.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="links", description="Return a link to one note and another note embedded.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="slow", description="Report progress, then sleep (for cancelling).",
               input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}}),
    types.Tool(name="stats", description="Calls cancelled so far, and the roots last seen.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="touch", description="Change a note: its subscribers hear notifications/resources/updated.",
               input_schema={"type": "object", "properties": {"uri": {"type": "string"}}, "required": ["uri"]}),
]


def build(*, era: str = "dual") -> Server[Any]:
    state: dict[str, Any] = {"cancelled": 0, "roots": None}
    subscribed: set[str] = set()
    bus = InMemorySubscriptionBus()

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_TOOLS)

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> HandlerResult:
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        args = params.arguments or {}
        if params.name == "echo":
            return _text(str(args.get("text", "")))
        if params.name == "touch":
            uri = str(args.get("uri", ""))
            await bus.publish(ResourceUpdated(uri=uri))  # 2026-07-28: to the listen streams that asked for it
            if uri in subscribed and not modern:
                await ctx.session.send_resource_updated(uri)
            return _text(f"touched {uri}" + (" (subscribed)" if uri in subscribed else ""))
        if params.name == "stats":
            return _text(json.dumps({"cancelled": state["cancelled"], "roots": state["roots"]}))
        if params.name == "links":
            return types.CallToolResult(content=[
                types.TextContent(text="two notes"),
                types.ResourceLink(uri="memo://note/1", name="note 1", mime_type="text/plain"),
                types.EmbeddedResource(resource=types.TextResourceContents(
                    uri="memo://note/2", text=NOTES["2"], mime_type="text/plain")),
            ])
        if params.name == "chatter":
            for level in ("debug", "info", "warning", "error"):
                await ctx.session.send_log_message(level, f"{level} from chatter", logger="chatter",
                                                   related_request_id=ctx.request_id)
            return _text("chattered")
        if params.name == "slow":
            seconds = float(args.get("seconds", 30))
            await ctx.session.report_progress(0, seconds, "started")
            try:
                await anyio.sleep(seconds)
            except anyio.get_cancelled_exc_class():
                state["cancelled"] += 1
                raise
            return _text("woke up")
        if params.name == "ask_url" and not modern:
            request = _input_request(params.name, args)
            answer = await _ask(ctx, request)
            await ctx.session.send_notification(types.ElicitCompleteNotification(
                params=types.ElicitCompleteNotificationParams(elicitation_id="relay-url-1")))
            return _text(f"url elicitation: {answer.get('action')}")
        if params.name in ("ask_name", "ask_model", "my_roots", "ask_url"):
            request = _input_request(params.name, args)
            if modern:
                return _modern_input(params, request, state)
            answer = await _ask(ctx, request)
            return _text(_describe(params.name, answer, state))
        raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=f"memo://note/{k}", name=f"note {k}", mime_type="text/plain") for k in ("1", "2")
        ])

    async def list_templates(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[
            types.ResourceTemplate(uri_template="memo://note/{id}", name="note", mime_type="text/plain")
        ])

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        key = uri.removeprefix("memo://note/")
        if not uri.startswith("memo://note/") or key not in NOTES:
            raise MCPError(types.INVALID_PARAMS, f"no such note: {uri}")
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text=NOTES[key],
                                                                             mime_type="text/plain")])

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(
            name="greet", description="Greet someone, with a note attached.",
            arguments=[types.PromptArgument(name="name", required=True)],
        )])

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != "greet":
            raise MCPError(types.INVALID_PARAMS, f"unknown prompt {params.name!r}")
        name = (params.arguments or {}).get("name", "you")
        return types.GetPromptResult(messages=[
            types.PromptMessage(role="user", content=types.TextContent(text=f"Greet {name}.")),
            types.PromptMessage(role="user", content=types.EmbeddedResource(resource=types.TextResourceContents(
                uri="memo://note/1", text=NOTES["1"], mime_type="text/plain"))),
        ])

    async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        value = params.argument.value
        if isinstance(params.ref, types.PromptReference) and params.ref.name == "greet":
            values = [n for n in NAMES if n.startswith(value)]
        elif isinstance(params.ref, types.ResourceTemplateReference) and params.ref.uri == "memo://note/{id}":
            values = [k for k in NOTES if k.startswith(value)]
        else:
            values = []
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values)))

    async def set_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscribed.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        subscribed.discard(str(params.uri))
        return types.EmptyResult()

    server: Server[Any] = Server(
        "mcprelay-relay-test", version="1.0.0",
        on_list_tools=list_tools, on_list_resources=list_resources, on_list_resource_templates=list_templates,
        on_read_resource=read_resource, on_list_prompts=list_prompts, on_get_prompt=get_prompt,
        on_completion=complete, on_subscribe_resource=subscribe, on_unsubscribe_resource=unsubscribe,
        on_subscriptions_listen=ListenHandler(bus),
    )
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    if era == "handshake":
        server.middleware.append(_refuse_discover)
    return server


async def _refuse_discover(ctx: Ctx, call_next: CallNext) -> HandlerResult:
    """A 2025-11-25 server knows no ``server/discover``: clients fall back to ``initialize``."""
    if ctx.method == "server/discover":
        raise MCPError(types.METHOD_NOT_FOUND, "Method not found")
    return await call_next(ctx)


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


def _input_request(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    if tool == "ask_name":
        return {"method": "elicitation/create", "params": {
            "mode": "form", "message": "What is your name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        }}
    if tool == "ask_url":
        return {"method": "elicitation/create", "params": {
            "mode": "url", "message": "Sign in, please.", "url": "https://example.com/sign-in",
            "elicitationId": "relay-url-1",
        }}
    if tool == "ask_model":
        return {"method": "sampling/createMessage", "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": args.get("question", "2+2?")}}],
            "maxTokens": 50,
        }}
    return {"method": "roots/list", "params": {}}


async def _ask(ctx: Ctx, request: dict[str, Any]) -> dict[str, Any]:
    """A server-to-client request tied to the call (handshake era)."""
    method, params = request["method"], request["params"]
    if method == "elicitation/create":
        model = types.ElicitRequestURLParams if params.get("mode") == "url" else types.ElicitRequestFormParams
        result: Any = await ctx.session.send_request(
            types.ElicitRequest(params=model.model_validate(params, by_name=False)),
            types.ElicitResult, metadata=_related(ctx))
    elif method == "sampling/createMessage":
        result = await ctx.session.send_request(
            types.CreateMessageRequest(params=types.CreateMessageRequestParams.model_validate(params, by_name=False)),
            types.CreateMessageResult, metadata=_related(ctx))
    else:
        result = await ctx.session.send_request(types.ListRootsRequest(), types.ListRootsResult, metadata=_related(ctx))
    data: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return data


def _related(ctx: Ctx) -> Any:
    from mcp.shared.message import ServerMessageMetadata

    return ServerMessageMetadata(related_request_id=ctx.request_id)


def _modern_input(params: types.CallToolRequestParams, request: dict[str, Any], state: dict[str, Any]) -> HandlerResult:
    """2026-07-28: ask with ``input_required``, finish on the retry that carries the answer."""
    answer = (params.input_responses or {}).get("q")
    if answer is None:
        return {"resultType": "input_required", "inputRequests": {"q": request}, "requestState": params.name}
    data = answer if isinstance(answer, dict) else answer.model_dump(by_alias=True, mode="json", exclude_none=True)
    return _text(_describe(params.name, data, state))


def _describe(tool: str, answer: dict[str, Any], state: dict[str, Any]) -> str:
    if tool == "ask_url":
        return f"url elicitation: {answer.get('action')}"
    if tool == "ask_name":
        if answer.get("action") != "accept":
            return f"no name ({answer.get('action')})"
        return f"hello {(answer.get('content') or {}).get('name')}"
    if tool == "ask_model":
        content = answer.get("content")
        return f"the model said: {content.get('text') if isinstance(content, dict) else content}"
    roots = [r.get("uri") for r in answer.get("roots", [])]
    state["roots"] = roots
    return "roots: " + ", ".join(str(r) for r in roots)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--era", choices=("handshake", "dual"), default="dual")
    parser.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP at /mcp instead of stdio")
    args = parser.parse_args(argv)
    server = build(era=args.era)
    if args.http:
        import uvicorn

        host, _, port = args.http.rpartition(":")
        uvicorn.run(server.streamable_http_app(), host=host, port=int(port), log_level="warning")
        return
    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server

    options = server.create_initialization_options(NotificationOptions(tools_changed=True))

    async def run() -> None:
        async with stdio_server() as (read, write):
            if args.era == "dual":
                await server.run(read, write, options)
                return
            # The handshake-only loop: a request before initialize (server/discover) is refused, as by a
            # server that predates 2026-07-28, and the client falls back to the handshake.
            async with server.lifespan(server) as state:
                await serve_loop(server, read, write, lifespan_state=state, init_options=options)

    print(f"relay test server ({args.era}) on stdio", file=sys.stderr, flush=True)
    anyio.run(run)


if __name__ == "__main__":
    main()
