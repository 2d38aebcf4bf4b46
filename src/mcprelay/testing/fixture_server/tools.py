"""The fixture's tools: one per behaviour a client (or a gateway in the middle) must carry faithfully.

Names and payloads follow what the MCP conformance suite's server scenarios call and check
(``test_simple_text``, ``test_tool_with_progress``, ``test_input_required_result_*``, …); a few more
serve the gateway's own tests (resource links, a cancellable slow call, a resource update on demand).
Every tool has a description and an input schema, and ``tools/list`` returns them in this fixed
order (``test_simple_text`` first: some scenarios call the first tool listed with no arguments).

Tools that need the client (sampling, elicitation, roots) go through :mod:`.asking`, so the same
tool sends server-to-client requests in the handshake era and answers ``input_required`` in the
2026 era.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import PromptsListChanged, ToolsListChanged

from mcprelay.testing.fixture_server import asking
from mcprelay.testing.fixture_server.asking import InputRequired, accepted_field, elicitation, is_modern, sampling
from mcprelay.testing.fixture_server.content import JSON_SCHEMA_2020_12, PNG_BASE64, WAV_BASE64
from mcprelay.testing.fixture_server.state import FixtureState

Ctx = ServerRequestContext[Any, Any]
Handler = Callable[[Ctx, FixtureState, dict[str, Any]], Awaitable[dict[str, Any]]]

WATCHED_URI = "test://watched-resource"
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class FixtureTool:
    name: str
    description: str
    handler: Handler
    input_schema: Mapping[str, Any] | None = None

    def listing(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inputSchema": dict(self.input_schema or NO_ARGS)}


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}]}


def tool_error(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": True}


def _string(args: Mapping[str, Any], key: str, default: str) -> str:
    value = args.get(key)
    return value if isinstance(value, str) else default


# ---- plain content ---------------------------------------------------------------------------------
async def simple_text(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return text("This is a simple text response for testing.")


async def image_content(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}]}


async def audio_content(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav"}]}


async def embedded_resource(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    resource = {"uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource."}
    return {"content": [{"type": "resource", "resource": resource}]}


async def multiple_content_types(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    resource = {
        "uri": "test://mixed-content-resource",
        "mimeType": "application/json",
        "text": json.dumps({"test": "data", "value": 123}),
    }
    return {
        "content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG_BASE64, "mimeType": "image/png"},
            {"type": "resource", "resource": resource},
        ]
    }


async def resource_link(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """A link to one of this server's own resources: a client (or gateway) must be able to read it back."""
    link = {
        "type": "resource_link",
        "uri": "test://static-text",
        "name": "static-text",
        "mimeType": "text/plain",
        "description": "The static text resource",
    }
    return {"content": [{"type": "text", "text": "See the linked resource."}, link]}


async def error_handling(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return tool_error("This tool intentionally returns an error for testing")


async def json_schema_tool(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return text(f"json_schema_2020_12_tool received: {json.dumps(args, sort_keys=True)}")


async def header_param(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """SEP-2243: ``region`` is mirrored into an ``Mcp-Param-Region`` header, which the HTTP server checks."""
    return text(f"region: {_string(args, 'region', '')}")


# ---- notifications during a call -------------------------------------------------------------------
async def tool_with_logging(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            await anyio.sleep(0.05)
        await state.log(ctx, "info", message)
    return text("Tool with logging executed successfully")


async def logging_tool(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Logs once at info: delivered only when the client asked for that level (2026: in this request's _meta)."""
    await state.log(ctx, "info", "test_logging_tool ran")
    return text("Logging evaluated")


async def tool_with_progress(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    for step, done in enumerate((0, 50, 100)):
        if step:
            await anyio.sleep(0.05)
        await ctx.session.report_progress(done, 100, f"Completed step {done} of 100")
    return text("Progress reported: 0, 50, 100 of 100")


async def slow(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Waits ``seconds`` (default 1), reporting progress every 0.1 s; cancelling the request stops it."""
    seconds = args.get("seconds", 1)
    total = float(seconds) if isinstance(seconds, int | float) and 0 <= seconds <= 60 else 1.0
    elapsed = 0.0
    while elapsed < total:
        await ctx.session.report_progress(elapsed, total, "waiting")
        step = min(0.1, total - elapsed)
        await anyio.sleep(step)
        elapsed += step
    await ctx.session.report_progress(total, total, "done")
    return text(f"waited {total:g} s")


async def reconnection(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """SEP-1699: closes this call's SSE stream before answering; the answer waits in the event store."""
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return text("Reconnection test completed: the result was delivered after the stream was closed.")


async def touch_watched_resource(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    state.watched_version += 1
    told = await state.resource_updated(WATCHED_URI)
    return text(f"{WATCHED_URI} is now version {state.watched_version}; {told} handshake subscriber(s) told")


async def trigger_tool_change(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    state.tools_revision += 1
    await announce(ctx, state, "tools")
    return text(f"test_dynamic_tool is now at revision {state.tools_revision}; tools/list_changed sent")


async def trigger_prompt_change(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    state.prompts_revision += 1
    await announce(ctx, state, "prompts")
    return text(f"test_dynamic_prompt is now at revision {state.prompts_revision}; prompts/list_changed sent")


async def dynamic_tool(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    return text(f"test_dynamic_tool at revision {state.tools_revision}")


def describe(tool: FixtureTool, state: FixtureState) -> dict[str, Any]:
    """A tool's listing; ``test_dynamic_tool``'s description names the current revision."""
    listing = tool.listing()
    if tool.name == "test_dynamic_tool":
        listing["description"] = (
            f"Its description changes when test_trigger_tool_change runs (revision {state.tools_revision})"
        )
    return listing


async def announce(ctx: Ctx, state: FixtureState, kind: str) -> None:
    """A list-changed notification: to listen streams (2026) and to the calling connection (2025).

    The change is real but keeps every name and the order (only a description changes), so runs
    that share one fixture process do not disturb each other's listings.
    """
    await state.bus.publish(ToolsListChanged() if kind == "tools" else PromptsListChanged())
    if not is_modern(ctx):
        if kind == "tools":
            await ctx.session.send_tool_list_changed()
        else:
            await ctx.session.send_prompt_list_changed()


# ---- asking the client (both eras) -----------------------------------------------------------------
async def sampling_tool(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    prompt = _string(args, "prompt", "Say something")
    answers = await asking.gather(ctx, {"sample": sampling(prompt, 100)})
    return text(f"LLM response: {asking.sampled_text(answers['sample']) or '(no text)'}")


def _elicit_summary(answer: Mapping[str, Any]) -> str:
    return f"action={answer.get('action')}, content={json.dumps(answer.get('content') or {}, sort_keys=True)}"


async def elicitation_tool(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    message = _string(args, "message", "Please provide your information")
    question = elicitation(
        message,
        {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        ["username", "email"],
    )
    answers = await asking.gather(ctx, {"user_info": question})
    return text(f"User response: {_elicit_summary(answers['user_info'])}")


async def elicitation_defaults(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """SEP-1034: a default for every primitive type."""
    question = elicitation(
        "Please review and update the form fields with defaults",
        {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        [],
    )
    answers = await asking.gather(ctx, {"defaults": question})
    return text(f"Elicitation completed: {_elicit_summary(answers['defaults'])}")


def _titled(prefix: str, labels: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"const": f"{prefix}{i}", "title": label} for i, label in enumerate(labels, start=1)]


async def elicitation_enums(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """SEP-1330: the five enum shapes (untitled/titled single, legacy enumNames, untitled/titled multi)."""
    options = ["option1", "option2", "option3"]
    question = elicitation(
        "Please select options from the enum fields",
        {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": _titled("value", ("First Option", "Second Option", "Third Option")),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": _titled("value", ("First Choice", "Second Choice", "Third Choice"))},
            },
        },
        [],
    )
    answers = await asking.gather(ctx, {"enums": question})
    return text(f"Elicitation completed: {_elicit_summary(answers['enums'])}")


async def streaming_elicitation(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Asks the user mid-call: a request on the call's stream (2025), an ``input_required`` answer (2026)."""
    answers = await asking.gather(ctx, {"user_input": elicitation("Type something", {"value": {"type": "string"}})})
    return text(f"Streaming elicitation answered: {_elicit_summary(answers['user_input'])}")


async def missing_capability(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Needs the client's ``sampling`` capability; refuses (-32021 in 2026) when it was not declared."""
    if not asking.has_capability(ctx, "sampling"):
        raise asking.CapabilityMissing("sampling")
    return text("The client declared the sampling capability")


# ---- multi round-trip requests (SEP-2322); in the handshake era the same asks go out as requests -----
def _user_name_question() -> dict[str, Any]:
    return elicitation("What is your name?", {"name": {"type": "string"}}, ["name"])


def _confirm_question() -> dict[str, Any]:
    return elicitation("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])


async def mrtr_elicitation(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    answers = await asking.gather(ctx, {"user_name": _user_name_question()})
    return text(f"Hello, {accepted_field(answers['user_name'], 'name') or 'stranger'}!")


async def mrtr_sampling(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    answers = await asking.gather(ctx, {"capital_question": sampling("What is the capital of France?", 100)})
    return text(f"Sampling result: {asking.sampled_text(answers['capital_question']) or '(no text)'}")


async def mrtr_list_roots(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    answers = await asking.gather(ctx, {"client_roots": asking.ROOTS})
    return text(f"Found {asking.root_count(answers['client_roots'])} root(s)")


def _fresh(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "nonce": uuid.uuid4().hex, **extra}


def _own_state(ctx: Ctx, kind: str) -> dict[str, Any] | None:
    """The previous round's state when it is this tool's (2026 era); None otherwise."""
    previous = asking.request_state(ctx)
    return previous if isinstance(previous, dict) and previous.get("kind") == kind else None


async def mrtr_request_state(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Round 1 sends state; round 2 completes only with that state echoed back and ``ok: true``."""
    questions = {"confirm": _confirm_question()}
    if is_modern(ctx) and _own_state(ctx, "request-state") is None:
        raise InputRequired(questions, _fresh("request-state"))
    answers = await asking.gather(ctx, questions, state=asking.request_state(ctx))
    if accepted_field(answers["confirm"], "ok") is not True:
        return tool_error("confirmation was not given")
    return text("state-ok: requestState validated")


async def mrtr_multiple_inputs(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    questions = {
        "user_name": _user_name_question(),
        "greeting": sampling("Generate a greeting", 50),
        "client_roots": asking.ROOTS,
    }
    if is_modern(ctx) and _own_state(ctx, "multiple-inputs") is None:
        raise InputRequired(questions, _fresh("multiple-inputs"))
    answers = await asking.gather(ctx, questions, state=asking.request_state(ctx))
    name = accepted_field(answers["user_name"], "name") or "stranger"
    greeting = asking.sampled_text(answers["greeting"]) or "(no greeting)"
    return text(f"Name: {name}; Greeting: {greeting}; Roots: {asking.root_count(answers['client_roots'])}")


async def mrtr_multi_round(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Two questions in two rounds; the state carries round 1's answer into round 2."""
    step1 = {"step1": elicitation("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])}
    step2 = {"step2": elicitation("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])}
    if not is_modern(ctx):
        name = accepted_field((await asking.gather(ctx, step1))["step1"], "name")
        color = accepted_field((await asking.gather(ctx, step2))["step2"], "color")
        return text(f"Multi-round complete for {name} who likes {color}")
    previous = _own_state(ctx, "multi-round")
    if previous is None:
        raise InputRequired(step1, _fresh("multi-round", round=1))
    if previous.get("round") == 1:
        name = accepted_field((await asking.gather(ctx, step1, state=previous))["step1"], "name")
        raise InputRequired(step2, _fresh("multi-round", round=2, name=name))
    color = accepted_field((await asking.gather(ctx, step2, state=previous))["step2"], "color")
    return text(f"Multi-round complete for {previous.get('name')} who likes {color}")


async def mrtr_tampered_state(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Integrity: a tampered ``requestState`` never reaches this handler (the SDK boundary rejects it)."""
    questions = {"confirm": _confirm_question()}
    if is_modern(ctx) and _own_state(ctx, "tamper-test") is None:
        raise InputRequired(questions, _fresh("tamper-test"))
    await asking.gather(ctx, questions, state=asking.request_state(ctx))
    return text("integrity-ok: state verified")


async def mrtr_capabilities(ctx: Ctx, state: FixtureState, args: dict[str, Any]) -> dict[str, Any]:
    """Asks only for what the client declared: elicitation and/or sampling."""
    questions: dict[str, dict[str, Any]] = {}
    if asking.has_capability(ctx, "elicitation"):
        questions["elicit_input"] = elicitation("Elicitation input", {"value": {"type": "string"}}, ["value"])
    if asking.has_capability(ctx, "sampling"):
        questions["sample_input"] = sampling("Sample request", 50)
    if not questions:
        return text("No supported capabilities declared")
    answers = await asking.gather(ctx, questions, state=asking.request_state(ctx) or _fresh("capabilities"))
    return text(f"capabilities-ok: received {','.join(sorted(answers))}")


TOOLS: tuple[FixtureTool, ...] = (
    FixtureTool("test_simple_text", "Returns one text block.", simple_text),
    FixtureTool("test_image_content", "Returns an image block (a 1×1 PNG).", image_content),
    FixtureTool("test_audio_content", "Returns an audio block (a short WAV).", audio_content),
    FixtureTool("test_embedded_resource", "Returns an embedded text resource.", embedded_resource),
    FixtureTool("test_multiple_content_types", "Returns text, image and resource blocks.", multiple_content_types),
    FixtureTool("test_resource_link", "Returns a resource_link to test://static-text.", resource_link),
    FixtureTool("test_tool_with_logging", "Sends three info log messages while it runs.", tool_with_logging),
    FixtureTool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100.", tool_with_progress),
    FixtureTool("test_error_handling", "Always returns a tool error (isError).", error_handling),
    FixtureTool(
        "test_sampling",
        "Asks the client's model to complete a prompt (sampling).",
        sampling_tool,
        {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt"}},
            "required": ["prompt"],
        },
    ),
    FixtureTool(
        "test_elicitation",
        "Asks the user for a username and an email (elicitation).",
        elicitation_tool,
        {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "What to tell the user"}},
            "required": ["message"],
        },
    ),
    FixtureTool(
        "test_elicitation_sep1034_defaults", "Elicitation with a default per field type.", elicitation_defaults
    ),
    FixtureTool("test_elicitation_sep1330_enums", "Elicitation with every enum schema shape.", elicitation_enums),
    FixtureTool(
        "json_schema_2020_12_tool", "Has a JSON Schema 2020-12 input schema.", json_schema_tool, JSON_SCHEMA_2020_12
    ),
    FixtureTool(
        "test_header_param",
        "Echoes its region argument, which HTTP clients mirror into an Mcp-Param-Region header.",
        header_param,
        {
            "type": "object",
            "properties": {"region": {"type": "string", "description": "A region name", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    ),
    FixtureTool("test_reconnection", "Closes its SSE stream mid-call, then answers (resumability).", reconnection),
    FixtureTool(
        "test_slow",
        "Waits the given seconds with progress every 0.1 s; cancellable.",
        slow,
        {"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}}},
    ),
    FixtureTool(
        "test_touch_watched_resource",
        "Changes test://watched-resource and notifies subscribers.",
        touch_watched_resource,
    ),
    FixtureTool(
        "test_trigger_tool_change", "Changes test_dynamic_tool and notifies list changes.", trigger_tool_change
    ),
    FixtureTool("test_trigger_prompt_change", "Changes test_dynamic_prompt and notifies.", trigger_prompt_change),
    FixtureTool("test_dynamic_tool", "Its description changes when test_trigger_tool_change runs.", dynamic_tool),
    FixtureTool("test_logging_tool", "Logs once at info level, if the client asked for logs.", logging_tool),
    FixtureTool("test_missing_capability", "Needs the client's sampling capability.", missing_capability),
    FixtureTool("test_streaming_elicitation", "Asks the user for a value while the call runs.", streaming_elicitation),
    FixtureTool("test_input_required_result_elicitation", "Asks for the user's name.", mrtr_elicitation),
    FixtureTool("test_input_required_result_sampling", "Asks the client's model a question.", mrtr_sampling),
    FixtureTool("test_input_required_result_list_roots", "Asks for the client's roots.", mrtr_list_roots),
    FixtureTool(
        "test_input_required_result_request_state", "A confirmation round with request state.", mrtr_request_state
    ),
    FixtureTool("test_input_required_result_multiple_inputs", "Three questions in one round.", mrtr_multiple_inputs),
    FixtureTool("test_input_required_result_multi_round", "Two questions in two rounds.", mrtr_multi_round),
    FixtureTool(
        "test_input_required_result_tampered_state", "A round whose state is integrity-checked.", mrtr_tampered_state
    ),
    FixtureTool("test_input_required_result_capabilities", "Asks only for declared capabilities.", mrtr_capabilities),
)
BY_NAME: dict[str, FixtureTool] = {tool.name: tool for tool in TOOLS}
