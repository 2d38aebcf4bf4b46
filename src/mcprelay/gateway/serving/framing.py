"""The first look at every message an agent sends: refuse what no parser further in should ever see.

One stdio line (``serve --stdio``) or one POST body to ``/mcp`` (``serve --listen``) is checked here
before anything parses it into models, and the answer is either the message (a ``dict``) or the
JSON-RPC error to send back. Why a gate of its own: what follows it — the tool-call fast path, the
SDK's validation, pydantic, ``json.dumps`` on the way upstream — recurses on nesting, trips over
integers longer than Python converts, or silently treats a request with an unusable ``id`` as a
notification and never answers it. Here:

* size: at most :data:`MAX_MESSAGE_BYTES` (the SDK's own limit for an HTTP body, for both wires);
* bytes: UTF-8, nesting at most :data:`MAX_DEPTH` levels (measured on the bytes, see
  :mod:`mcprelay.safejson`), no ``NaN``/``Infinity``, no number out of range;
* envelope: one JSON object (batches were removed from MCP in 2025-06-18), ``"jsonrpc": "2.0"``;
  a request's ``id`` is a string or an integer (not an object, a float, a bool or null), its
  ``method`` a string and its ``params`` an object; a response has an ``id`` and exactly one of
  ``result`` (an object) and ``error`` (an object with an integer ``code`` and a string ``message``).

A refused request whose ``id`` is usable is answered with that ``id``; anything else with
``"id": null``, as JSON-RPC 2.0 prescribes when the id cannot be determined. Pure: no I/O, no models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcprelay import safejson

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = safejson.MAX_DEPTH

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


@dataclass(frozen=True)
class Refusal:
    """A message that must not go further, and the JSON-RPC error response that answers it."""

    code: int
    message: str
    id: str | int | None = None
    #: The HTTP status to answer a POST with (the body is :meth:`body` either way).
    status: int = 400

    def response(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}}

    def body(self) -> bytes:
        """The error response as JSON text, without a newline."""
        return json.dumps(self.response(), separators=(",", ":")).encode()


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / (1024 * 1024):.3g} MiB)" if n >= 1024 * 1024 else f"{n:,} bytes"


def too_large(size: int, limit: int = MAX_MESSAGE_BYTES, *, at_least: bool = False) -> Refusal:
    """The refusal for a message of ``size`` bytes (``at_least``: so far, it was not read to its end)."""
    shown = f"more than {_size(limit)}" if at_least else _size(size)
    return Refusal(
        INVALID_REQUEST, f"message too large: {shown}; mcprelay accepts messages of at most {_size(limit)}",
        status=413,
    )


def _usable_id(value: Any) -> bool:
    return (isinstance(value, str) or isinstance(value, int)) and not isinstance(value, bool)


def check(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any] | Refusal:
    """``raw`` as a JSON-RPC message (a ``dict``) when it may go on, else the :class:`Refusal` to answer."""
    if len(raw) > max_bytes:
        return too_large(len(raw), max_bytes)
    try:
        message = safejson.loads(raw, max_depth=max_depth)
    except safejson.JsonRejected as exc:
        return Refusal(PARSE_ERROR, f"parse error: {exc.message}")
    if not isinstance(message, dict):
        kind = "a batch (array)" if isinstance(message, list) else f"a JSON {type(message).__name__}"
        return Refusal(INVALID_REQUEST, f"invalid request: a message must be one JSON object, not {kind}")
    return _envelope(message)


def _envelope(message: dict[str, Any]) -> dict[str, Any] | Refusal:
    has_id = "id" in message
    request_id = message.get("id")
    if "method" in message:
        answer_to = request_id if has_id and _usable_id(request_id) else None
        problem = _request_problem(message, has_id, request_id)
        if problem is not None:
            return Refusal(INVALID_REQUEST, f"invalid request: {problem}", answer_to)
    else:
        problem = _response_problem(message, has_id, request_id)
        if problem is not None:
            return Refusal(INVALID_REQUEST, f"invalid message: {problem}")
    return message


def _version_problem(message: dict[str, Any]) -> str | None:
    if message.get("jsonrpc") != "2.0":
        return '"jsonrpc" must be "2.0"'
    return None


def _request_problem(message: dict[str, Any], has_id: bool, request_id: Any) -> str | None:
    if has_id and not _usable_id(request_id):
        shown = "null" if request_id is None else type(request_id).__name__
        return f'"id" must be a string or an integer, not {shown}'
    version = _version_problem(message)
    if version is not None:
        return version
    if "result" in message or "error" in message:
        return 'a message is a request ("method") or a response ("result" / "error"), not both'
    if not isinstance(message["method"], str):
        return '"method" must be a string'
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return '"params" must be an object'
    return None


def _response_problem(message: dict[str, Any], has_id: bool, request_id: Any) -> str | None:
    if not has_id:
        return 'a message without "method" is a response and needs an "id"'
    has_result, has_error = "result" in message, "error" in message
    if has_result == has_error:
        return 'a response needs exactly one of "result" and "error"'
    if has_result and not _usable_id(request_id):
        return '"id" must be a string or an integer'
    if has_error and request_id is not None and not _usable_id(request_id):
        return '"id" must be a string, an integer or null'
    version = _version_problem(message)
    if version is not None:
        return version
    if has_result and not isinstance(message["result"], dict):
        return '"result" must be an object'
    error = message.get("error")
    if has_error and not (
        isinstance(error, dict)
        and isinstance(error.get("code"), int)
        and not isinstance(error.get("code"), bool)
        and isinstance(error.get("message"), str)
    ):
        return '"error" must be an object with an integer "code" and a string "message"'
    return None
