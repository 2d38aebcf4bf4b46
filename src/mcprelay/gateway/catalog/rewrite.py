"""Upstream URIs rewritten wherever they cross the gateway, on results still in JSON form.

A URI an upstream hands out must be one the agent can hand back: a ``resource_link`` a tool returns,
an embedded resource in a tool result, a prompt message or a sampling request, the contents of a
read. Each is rewritten into the upstream's namespace on the way down (``to_agent``); on the way up
only the places an agent names a resource of ours are mapped back, and those are the router's job
(``resources/read``, subscriptions, completion references).

Everything here works on the JSON the wire carries (dicts and lists), copies only what it changes,
and leaves anything it does not recognise alone: a malformed block is the shape check's business
(``shape.py``), not a reason to fail a rewrite.
"""

from __future__ import annotations

from typing import Any

from mcprelay.gateway.catalog.names import Namespace

_LINK = "resource_link"
_EMBEDDED = "resource"


def block_to_agent(block: Any, ns: Namespace) -> Any:
    """One content block with its resource URI (link or embedded resource) in ``ns``."""
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind == _LINK and isinstance(block.get("uri"), str):
        return {**block, "uri": ns.uri(block["uri"])}
    if kind == _EMBEDDED and isinstance(block.get("resource"), dict):
        resource = block["resource"]
        if isinstance(resource.get("uri"), str):
            return {**block, "resource": {**resource, "uri": ns.uri(resource["uri"])}}
    return block


def content_to_agent(content: Any, ns: Namespace) -> Any:
    """A content list (or a single block, as in prompt and sampling messages) with its URIs in ``ns``."""
    if isinstance(content, list):
        if not any(isinstance(b, dict) and b.get("type") in (_LINK, _EMBEDDED) for b in content):
            return content  # the common case: nothing to copy
        return [block_to_agent(b, ns) for b in content]
    return block_to_agent(content, ns)


def tool_result_to_agent(result: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    content = result.get("content")
    rewritten = content_to_agent(content, ns)
    return result if rewritten is content else {**result, "content": rewritten}


def messages_to_agent(messages: Any, ns: Namespace) -> Any:
    """Prompt or sampling messages (``[{role, content}]``) with their URIs in ``ns``."""
    if not isinstance(messages, list):
        return messages
    out = []
    changed = False
    for message in messages:
        if isinstance(message, dict) and "content" in message:
            content = content_to_agent(message["content"], ns)
            if content is not message["content"]:
                message = {**message, "content": content}
                changed = True
        out.append(message)
    return out if changed else messages


def prompt_result_to_agent(result: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    messages = messages_to_agent(result.get("messages"), ns)
    return result if messages is result.get("messages") else {**result, "messages": messages}


def read_result_to_agent(result: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    contents = result.get("contents")
    if not isinstance(contents, list):
        return result
    return {**result, "contents": [
        {**c, "uri": ns.uri(c["uri"])} if isinstance(c, dict) and isinstance(c.get("uri"), str) else c
        for c in contents
    ]}


def sampling_params_to_agent(params: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    messages = messages_to_agent(params.get("messages"), ns)
    return params if messages is params.get("messages") else {**params, "messages": messages}


def result_to_agent(method: str, result: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    """What a forwarded request's result looks like to the agent, for the methods that carry URIs."""
    if method == "tools/call":
        return tool_result_to_agent(result, ns)
    if method == "prompts/get":
        return prompt_result_to_agent(result, ns)
    if method == "resources/read":
        return read_result_to_agent(result, ns)
    return result
