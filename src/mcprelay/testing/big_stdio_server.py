"""A stdio MCP server with very large results: ``python -m mcprelay.testing.big_stdio_server``.

Standard library only, handshake era. Each request is answered on its own thread (so calls overlap,
as they do on a real server), and each answer is written as one line while holding the stdout lock —
which is what puts a ``ping``'s answer behind a big result in the pipe.

Tools:

* ``big(size, seconds=0, id_last=false)``: a text result of ``size`` bytes, written in 1 MiB pieces
  spread over ``seconds`` (a slow producer or a slow pipe); ``id_last`` writes the response the way
  the TypeScript SDK does, ``{"result": …, "jsonrpc": "2.0", "id": …}``;
* ``echo(text)``: the text back;
* ``notify_big(size)``: sends a ``notifications/message`` of ``size`` bytes, then answers ``"sent"``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

_PIECE = 1024 * 1024
_out_lock = threading.Lock()


def _write(*parts: bytes, seconds: float = 0.0) -> None:
    """Write ``parts`` as one line, holding the lock; spread over ``seconds`` when asked."""
    out = sys.stdout.buffer
    with _out_lock:
        pieces = [p[i:i + _PIECE] for p in parts for i in range(0, max(len(p), 1), _PIECE)]
        pause = seconds / max(len(pieces), 1)
        for piece in pieces:
            out.write(piece)
            if pause:
                out.flush()
                time.sleep(pause)
        out.write(b"\n")
        out.flush()


def _answer(request_id: Any, result: dict[str, Any]) -> None:
    _write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode())


def _big(request_id: Any, args: dict[str, Any]) -> None:
    size = int(args.get("size", 0))
    text = b"x" * size
    rid = json.dumps(request_id).encode()
    content = (b'{"content":[{"type":"text","text":"', text, b'"}],"isError":false}')
    if args.get("id_last"):
        parts = (b'{"result":', *content, b',"jsonrpc":"2.0","id":' + rid + b"}")
    else:
        parts = (b'{"jsonrpc":"2.0","id":' + rid + b',"result":', *content, b"}")
    _write(*parts, seconds=float(args.get("seconds", 0)))


TOOLS = [
    {"name": "big", "description": "A text result of `size` bytes, written over `seconds`.",
     "inputSchema": {"type": "object", "properties": {
         "size": {"type": "integer"}, "seconds": {"type": "number"}, "id_last": {"type": "boolean"}}}},
    {"name": "echo", "description": "The text back.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "notify_big", "description": "A log notification of `size` bytes, then 'sent'.",
     "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"}}}},
]


def _handle(message: dict[str, Any]) -> None:
    method, request_id = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if method == "initialize":
        _answer(request_id, {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "big", "version": "0.1.0"},
        })
    elif method == "ping":
        _answer(request_id, {})
    elif method == "tools/list":
        _answer(request_id, {"tools": TOOLS})
    elif method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "big":
            _big(request_id, args)
        elif name == "echo":
            _answer(request_id, {"content": [{"type": "text", "text": str(args.get("text", ""))}], "isError": False})
        elif name == "notify_big":
            note = {"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "n" * int(args.get("size", 0))}}
            _write(json.dumps(note).encode())
            _answer(request_id, {"content": [{"type": "text", "text": "sent"}], "isError": False})
        else:
            _write(json.dumps({"jsonrpc": "2.0", "id": request_id,
                               "error": {"code": -32602, "message": f"no tool {name}"}}).encode())
    elif request_id is not None:
        _write(json.dumps({"jsonrpc": "2.0", "id": request_id,
                           "error": {"code": -32601, "message": f"method not found: {method}"}}).encode())


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if "method" in message:
            threading.Thread(target=_handle, args=(message,)).start()


if __name__ == "__main__":
    main()
