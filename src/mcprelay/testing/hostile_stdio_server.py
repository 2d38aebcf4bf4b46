"""A stdio MCP server whose tool results are malformed on purpose: ``python -m mcprelay.testing.hostile_stdio_server``.

Standard library only, handshake era (it answers ``initialize`` with the version it was asked for
and anything it does not know with -32601, as a pre-2026 server answers ``server/discover``). Its
tools return results that break the schema in the ways a client would choke on, plus one valid
tool, so a test can show that the gateway turns each into a clear error instead of passing it on.
"""

from __future__ import annotations

from typing import Any

from mcprelay.testing.stdlib_stdio import serve

#: tool name → the result it returns
RESULTS: dict[str, Any] = {
    "fine": {"content": [{"type": "text", "text": "fine"}], "isError": False},
    "content_not_a_list": {"content": "fine"},
    "content_without_type": {"content": [{"text": "no type"}]},
    "is_error_not_a_boolean": {"content": [], "isError": "yes"},
    "structured_not_an_object": {"content": [], "structuredContent": [1, 2]},
    "not_an_object": ["a", "list"],
    # A 2026-07-28 multi-round-trip answer: it wants the client to answer questions first.
    "asks_for_input": {"resultType": "input_required", "inputRequests": {}, "requestState": "opaque"},
}


def handle(method: str, params: dict[str, Any]) -> Any:
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "0.1.0"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        schema = {"type": "object", "properties": {}}
        return {"tools": [{"name": name, "description": "A malformed result.", "inputSchema": schema}
                          for name in RESULTS]}
    if method == "tools/call":
        return RESULTS[str(params.get("name"))]
    raise LookupError(method)


def main() -> None:
    serve(handle)


if __name__ == "__main__":
    main()
