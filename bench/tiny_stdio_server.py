"""A minimal MCP server over stdio with one ``echo`` tool, standard library only.

Scenario 5 starts up to 100 of these behind one gateway: they start in ~20 ms and use ~10 MB, so
the gateway's own start-up and memory are what the numbers show, not 100 SDK servers' imports.
It speaks the handshake era (``initialize``) and answers anything it does not know with -32601,
which is how a pre-2026 server answers the SDK's ``server/discover`` probe.
"""

from __future__ import annotations

from typing import Any

from mcprelay.testing.stdlib_stdio import serve

TOOLS = [{
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}]


def handle(method: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-tiny", "version": "0.1.0"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        text = str((params.get("arguments") or {}).get("text", ""))
        return {"content": [{"type": "text", "text": text}], "isError": False}
    raise LookupError(method)


def main() -> None:
    serve(handle)


if __name__ == "__main__":
    main()
