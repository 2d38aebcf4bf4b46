"""Asking the client for input (elicitation, sampling, roots) the same way in both protocol eras.

A fixture that needs something from the client names its questions once, as wire-shaped requests
keyed by a name (``{"user_name": {"method": "elicitation/create", "params": {...}}}``), and calls
:func:`gather`. What happens then depends on the era of the request being served:

* **2025-11-25 (handshake sessions)**: each question is sent as a server-to-client JSON-RPC
  request related to the tool call (so over streamable HTTP it rides that POST's SSE stream) and
  the answers come back before the tool returns.
* **2026-07-28 (stateless requests)**: servers may not send requests. The answers are read from
  the retried request's ``inputResponses``; any question not answered there raises
  :class:`InputRequired`, which the handler turns into an ``InputRequiredResult``
  (``resultType: "input_required"``, the unanswered ``inputRequests`` and the handler's
  ``requestState``). The SDK's ``RequestStateBoundary`` seals that state on the way out and
  verifies it on the way back in, so handlers only ever read state they minted.

Questions for a capability the client did not declare are never asked: :func:`gather` raises
:class:`CapabilityMissing`, which becomes ``MissingRequiredClientCapabilityError`` (-32021) in the
2026 era and a tool error result in the handshake era (that era has no such error code).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

# The client capability each input method needs, and the typed request/result models the
# handshake era sends and validates them with.
_CAPABILITY = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
_REQUEST_MODEL: dict[str, type[BaseModel]] = {
    "elicitation/create": types.ElicitRequest,
    "sampling/createMessage": types.CreateMessageRequest,
    "roots/list": types.ListRootsRequest,
}
_RESULT_MODEL: dict[str, type[BaseModel]] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}


class InputRequired(Exception):
    """The 2026-era answer to "the client has not answered yet": becomes an ``InputRequiredResult``."""

    def __init__(self, questions: Mapping[str, dict[str, Any]], state: Any = None) -> None:
        super().__init__(", ".join(questions))
        self.questions = dict(questions)
        self.state = state

    def result(self) -> dict[str, Any]:
        """The wire ``InputRequiredResult`` (``requestState`` JSON-encoded when the handler keeps state)."""
        out: dict[str, Any] = {"resultType": "input_required", "inputRequests": self.questions}
        if self.state is not None:
            out["requestState"] = json.dumps(self.state, separators=(",", ":"))
        return out


class CapabilityMissing(Exception):
    """The request needs a client capability the client did not declare."""

    def __init__(self, capability: str) -> None:
        super().__init__(f"this request needs the client's {capability!r} capability, which it did not declare")
        self.capability = capability

    def error(self) -> MCPError:
        return MCPError(
            code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=str(self),
            data={"requiredCapabilities": {self.capability: {}}},
        )


def is_modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the request being served speaks the 2026-07-28 (stateless) protocol."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def has_capability(ctx: ServerRequestContext[Any, Any], capability: str) -> bool:
    """Whether the client declared ``capability`` (from ``initialize``, or from this request's envelope)."""
    declared = ctx.session.client_capabilities
    return declared is not None and getattr(declared, capability, None) is not None


def request_state(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The handler's own state from the previous round (already verified and unsealed), or None.

    The fixture only ever mints JSON, so anything else cannot have come from it and reads as absent.
    """
    raw = (ctx.params or {}).get("requestState")
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def input_responses(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    """The raw ``inputResponses`` of a 2026-era retry (the SDK has already validated their shape)."""
    raw = (ctx.params or {}).get("inputResponses")
    return dict(raw) if isinstance(raw, Mapping) else {}


def required_capabilities(questions: Mapping[str, dict[str, Any]]) -> list[str]:
    return sorted({_CAPABILITY[q["method"]] for q in questions.values()})


async def gather(
    ctx: ServerRequestContext[Any, Any],
    questions: Mapping[str, dict[str, Any]],
    *,
    state: Any = None,
) -> dict[str, dict[str, Any]]:
    """Answers to every question, keyed like ``questions``, as wire result objects.

    Raises :class:`InputRequired` (2026 era, some questions unanswered) or
    :class:`CapabilityMissing` (a question needs a capability the client did not declare).
    """
    for capability in required_capabilities(questions):
        if not has_capability(ctx, capability):
            raise CapabilityMissing(capability)
    if is_modern(ctx):
        answers = input_responses(ctx)
        missing = {key: q for key, q in questions.items() if not isinstance(answers.get(key), Mapping)}
        if missing:
            raise InputRequired(missing, state)
        return {key: dict(answers[key]) for key in questions}
    out: dict[str, dict[str, Any]] = {}
    for key, question in questions.items():
        out[key] = await ask_now(ctx, question)
    return out


async def ask_now(ctx: ServerRequestContext[Any, Any], question: Mapping[str, Any]) -> dict[str, Any]:
    """Handshake era: send one server-to-client request on this request's stream and return its result."""
    method = str(question["method"])
    request = _REQUEST_MODEL[method].model_validate({"method": method, "params": question.get("params") or {}})
    result = await ctx.session.send_request(
        request,  # type: ignore[arg-type]  # one of the ServerRequest members, chosen by method
        _RESULT_MODEL[method],
        metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
    )
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def elicitation(message: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A form-mode ``elicitation/create`` question."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required is not None:
        schema["required"] = required
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sampling(prompt: str, max_tokens: int) -> dict[str, Any]:
    """A one-message ``sampling/createMessage`` question."""
    return {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": max_tokens,
        },
    }


ROOTS: dict[str, Any] = {"method": "roots/list", "params": {}}


def accepted_field(answer: Mapping[str, Any], field: str) -> Any:
    """A field of an accepted elicitation answer, or None (declined, cancelled or absent)."""
    if answer.get("action") != "accept":
        return None
    content = answer.get("content")
    return content.get(field) if isinstance(content, Mapping) else None


def sampled_text(answer: Mapping[str, Any]) -> str | None:
    """The text of a sampling answer (single content block or the first text block of a list)."""
    content = answer.get("content")
    blocks = content if isinstance(content, list) else [content]
    for block in blocks:
        if isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str):
            return str(block["text"])
    return None


def root_count(answer: Mapping[str, Any]) -> int:
    roots = answer.get("roots")
    return len(roots) if isinstance(roots, list) else 0
