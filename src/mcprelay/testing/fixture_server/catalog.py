"""The fixture's resources, resource template, prompts and completions.

Resources: ``test://static-text``, ``test://static-binary`` (a PNG), ``test://watched-resource``
(subscribable; ``test_touch_watched_resource`` changes it) and the template
``test://template/{id}/data``. Reading any other URI is the SEP-2164 error: ``-32602`` with the
URI in ``data``, never an empty ``contents``.

Prompts: ``test_simple_prompt``, ``test_prompt_with_arguments(arg1, arg2)``,
``test_prompt_with_embedded_resource(resourceUri)``, ``test_prompt_with_image``,
``test_input_required_result_prompt``, which needs the user's input (both eras, see
:mod:`.asking`), and ``test_dynamic_prompt``, whose listing ``test_trigger_prompt_change`` changes.
Completion offers values for ``arg1``/``arg2`` of the argument prompt and for the template's ``id``,
filtered by what has been typed so far.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from mcprelay.testing.fixture_server import asking
from mcprelay.testing.fixture_server.content import PNG_BASE64
from mcprelay.testing.fixture_server.state import FixtureState

Ctx = ServerRequestContext[Any, Any]

WATCHED_URI = "test://watched-resource"
TEMPLATE = "test://template/{id}/data"
_TEMPLATE_RE = re.compile(r"^test://template/([^/]+)/data$")

RESOURCES: tuple[dict[str, Any], ...] = (
    {
        "uri": "test://static-text",
        "name": "static-text",
        "title": "Static text",
        "description": "A fixed text resource",
        "mimeType": "text/plain",
    },
    {
        "uri": "test://static-binary",
        "name": "static-binary",
        "title": "Static binary",
        "description": "A fixed binary resource (a 1×1 PNG)",
        "mimeType": "image/png",
    },
    {
        "uri": WATCHED_URI,
        "name": "watched-resource",
        "title": "Watched resource",
        "description": "Subscribable; test_touch_watched_resource changes it",
        "mimeType": "text/plain",
    },
)
TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "uriTemplate": TEMPLATE,
        "name": "template",
        "title": "Template resource",
        "description": "JSON data for any id",
        "mimeType": "application/json",
    },
)


def read(state: FixtureState, uri: str) -> dict[str, Any]:
    """``resources/read``: the contents of ``uri``, or the SEP-2164 not-found error."""
    if uri == "test://static-text":
        contents = {"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}
    elif uri == "test://static-binary":
        contents = {"uri": uri, "mimeType": "image/png", "blob": PNG_BASE64}
    elif uri == WATCHED_URI:
        contents = {"uri": uri, "mimeType": "text/plain", "text": f"Watched resource, version {state.watched_version}"}
    elif match := _TEMPLATE_RE.match(uri):
        item = match.group(1)
        body = {"id": item, "templateTest": True, "data": f"Data for ID: {item}"}
        contents = {"uri": uri, "mimeType": "application/json", "text": json.dumps(body)}
    else:
        raise MCPError(code=types.INVALID_PARAMS, message="Resource not found", data={"uri": uri})
    return {"contents": [contents]}


def is_known(uri: str) -> bool:
    return any(r["uri"] == uri for r in RESOURCES) or _TEMPLATE_RE.match(uri) is not None


# ---- prompts -------------------------------------------------------------------------------------
PROMPTS: tuple[dict[str, Any], ...] = (
    {"name": "test_simple_prompt", "title": "Simple prompt", "description": "A prompt without arguments"},
    {
        "name": "test_prompt_with_arguments",
        "title": "Prompt with arguments",
        "description": "A prompt with two required arguments",
        "arguments": [
            {"name": "arg1", "description": "First argument", "required": True},
            {"name": "arg2", "description": "Second argument", "required": True},
        ],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "title": "Prompt with an embedded resource",
        "description": "A prompt that embeds the resource it is given",
        "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}],
    },
    {"name": "test_prompt_with_image", "title": "Prompt with an image", "description": "A prompt with an image"},
    {
        "name": "test_input_required_result_prompt",
        "title": "Prompt that asks the user",
        "description": "Asks the user for context before answering (elicitation)",
    },
    {
        "name": "test_dynamic_prompt",
        "title": "Dynamic prompt",
        "description": "Changes with test_trigger_prompt_change",
    },
)
_PROMPT_NAMES = {p["name"] for p in PROMPTS}


def list_prompts(state: FixtureState) -> list[dict[str, Any]]:
    """The prompts; ``test_dynamic_prompt``'s description names the current revision."""
    out = [dict(p) for p in PROMPTS]
    for prompt in out:
        if prompt["name"] == "test_dynamic_prompt":
            prompt["description"] = f"Changes with test_trigger_prompt_change (revision {state.prompts_revision})"
    return out


def _user(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def get_prompt(ctx: Ctx, name: str, arguments: Mapping[str, str]) -> dict[str, Any]:
    """``prompts/get``; unknown names and missing arguments are ``-32602``."""
    if name not in _PROMPT_NAMES:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {name}", data={"name": name})
    if name == "test_simple_prompt":
        return {"messages": [_user({"type": "text", "text": "This is a simple prompt for testing."})]}
    if name == "test_prompt_with_arguments":
        missing = [a for a in ("arg1", "arg2") if a not in arguments]
        if missing:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Missing prompt argument(s): {', '.join(missing)}")
        line = f"Prompt with arguments: arg1='{arguments['arg1']}', arg2='{arguments['arg2']}'"
        return {"messages": [_user({"type": "text", "text": line})]}
    if name == "test_prompt_with_embedded_resource":
        uri = arguments.get("resourceUri")
        if not uri:
            raise MCPError(code=types.INVALID_PARAMS, message="Missing prompt argument: resourceUri")
        resource = {"uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}
        return {
            "messages": [
                _user({"type": "resource", "resource": resource}),
                _user({"type": "text", "text": "Please process the embedded resource above."}),
            ]
        }
    if name == "test_dynamic_prompt":
        return {"messages": [_user({"type": "text", "text": "A prompt whose listing changes."})]}
    if name == "test_prompt_with_image":
        return {
            "messages": [
                _user({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}),
                _user({"type": "text", "text": "Please analyze the image above."}),
            ]
        }
    question = asking.elicitation("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])
    answers = await asking.gather(ctx, {"user_context": question})
    context = asking.accepted_field(answers["user_context"], "context") or "(none)"
    return {"messages": [_user({"type": "text", "text": f"Prompt with context: {context}"})]}


# ---- completion ----------------------------------------------------------------------------------
_ARGUMENT_VALUES = {
    "arg1": ["paris", "park", "party", "test", "testing"],
    "arg2": ["alpha", "beta", "gamma"],
}
_TEMPLATE_IDS = ["1", "2", "3", "123", "456"]


def complete(ref: Mapping[str, Any], argument: Mapping[str, Any]) -> dict[str, Any]:
    """``completion/complete``: values starting with what has been typed, for the fixture's arguments."""
    typed = str(argument.get("value") or "")
    arg = str(argument.get("name") or "")
    if ref.get("type") == "ref/prompt" and ref.get("name") == "test_prompt_with_arguments":
        candidates = _ARGUMENT_VALUES.get(arg, [])
    elif ref.get("type") == "ref/resource" and ref.get("uri") == TEMPLATE and arg == "id":
        candidates = _TEMPLATE_IDS
    else:
        candidates = []
    values = [v for v in candidates if v.startswith(typed)]
    return {"completion": {"values": values, "total": len(values), "hasMore": False}}
