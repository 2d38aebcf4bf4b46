"""JSON from sources that may be hostile: bounded before it is parsed, so no input can hurt the process.

Python's ``json`` module recurses once per nesting level and raises ``RecursionError`` (not a
``ValueError``) somewhere around a thousand levels — and every later step that walks the result
(pydantic, ``json.dumps``) recurses again. It also accepts ``NaN`` and ``Infinity``, turns ``1e400``
into ``inf``, and refuses integers longer than Python's int-to-string limit with a bare ``ValueError``.
So the depth is measured on the raw bytes first, by a scan that never recurses and costs linear
time even on adversarial input (escapes removed, then strings, then everything but brackets), and
the parse rejects the non-JSON constants and out-of-range numbers. Every refusal is a
:class:`JsonRejected` (a ``ValueError``) whose message says what was wrong and where.

Used by the config loader (``config.py``) and by the gateway's JSON-RPC framing
(``gateway/serving/framing.py``); it depends on nothing but the standard library.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Literal

#: Nesting levels accepted by default: far above any real configuration or MCP message, far below
#: what a recursive parser or serializer can survive.
MAX_DEPTH = 64

Reason = Literal["not_utf8", "too_deep", "bad_number", "not_json", "too_large"]

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1


class JsonRejected(ValueError):
    """The input is not acceptable JSON; ``reason`` is stable, the message is for people."""

    def __init__(self, reason: Reason, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.line = line


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings do not count).

    Linear in ``len(data)`` on any input, valid JSON or not, and never recursive: escapes are
    removed first (so no quote is escaped any more), then whole strings, then every byte that is
    not a bracket; the running sum of +1/-1 over what is left is the depth.
    """
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    if b'"' in data:
        data = _STRING.sub(b"", data)
    brackets = data.translate(None, _NOT_BRACKET)
    return max(0, max(accumulate(map(_DELTA.__getitem__, brackets)), default=0))


def check_depth(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonRejected` when ``data`` nests deeper than ``max_depth``."""
    # Fewer opening brackets than the limit cannot nest deeper than it: the common case costs two counts.
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JsonRejected("too_deep", f"nested {depth} levels deep; at most {max_depth} are accepted")


def decode_utf8(data: bytes) -> str:
    """``data`` as text, or :class:`JsonRejected` naming the first byte that is not UTF-8 and its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JsonRejected(
            "not_utf8",
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
            line=line,
        ) from None


def _constant(name: str) -> Any:
    raise JsonRejected("bad_number", f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise JsonRejected("bad_number", f"the number {shown} is out of range")
    return value


def loads(
    data: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Parse ``data`` as strict JSON: UTF-8, nesting bounded, no NaN/Infinity, numbers in range.

    Raises :class:`JsonRejected` for everything it refuses, including plain syntax errors (whose
    message keeps the parser's line and column).
    """
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    text = data if isinstance(data, str) else decode_utf8(raw)
    check_depth(raw, max_depth)
    try:
        return json.loads(
            text, parse_constant=_constant, parse_float=_float, object_pairs_hook=object_pairs_hook
        )
    except JsonRejected:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRejected(
            "not_json", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", line=exc.lineno
        ) from None
    except ValueError as exc:
        # int() refuses integers longer than the interpreter's limit (4300 digits by default).
        limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
        if "digits" in str(exc):
            raise JsonRejected("bad_number", f"an integer has more than {limit} digits") from None
        raise JsonRejected("not_json", f"not valid JSON: {exc}") from None
    except RecursionError:  # pragma: no cover - the depth check above makes this unreachable
        raise JsonRejected("too_deep", f"nested too deeply; at most {max_depth} levels are accepted") from None
