"""The JSON-RPC loop of the standard-library stdio test servers: one request per line, one answer per line.

Shared by ``hostile_stdio_server`` and the benchmarks' ``tiny_stdio_server``, which need a server that
starts in milliseconds and answers exactly what they choose, without the SDK in between.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

#: ``(method, params) -> result``; raising :class:`LookupError` answers "method not found" (-32601),
#: which is also how a pre-2026 server answers the SDK's ``server/discover`` probe.
Handler = Callable[[str, dict[str, Any]], Any]


def serve(handle: Handler) -> None:
    """Answer requests on stdin until it closes; notifications and responses are read and ignored."""
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if "id" not in message or "method" not in message:
            continue
        try:
            reply: dict[str, Any] = {"result": handle(message["method"], message.get("params") or {})}
        except LookupError:
            reply = {"error": {"code": -32601, "message": f"method not found: {message['method']}"}}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], **reply}) + "\n")
        sys.stdout.flush()
