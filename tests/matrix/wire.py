"""Reading the wire logs ``tap.py`` writes, for what only the upstream's side shows; pure logic, unit-tested.

A line is ``SECONDS DIRECTION JSON``: ``->`` towards the tapped process (the upstream), ``<-`` from it.
The matrix uses it to check that a cancelled call's ``notifications/cancelled`` really reached a stdio
upstream (server-everything ignores cancellations, so nothing else would show it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TO_UPSTREAM, FROM_UPSTREAM = "->", "<-"


@dataclass(frozen=True)
class WireLine:
    seconds: float
    direction: str
    message: dict[str, Any] | None  # None: not JSON (or the <EOF> marker)


def parse(lines: Iterable[str]) -> list[WireLine]:
    out = []
    for raw in lines:
        parts = raw.strip().split(" ", 2)
        if len(parts) < 3 or parts[1] not in (TO_UPSTREAM, FROM_UPSTREAM):
            continue
        try:
            seconds = float(parts[0])
        except ValueError:
            continue
        try:
            message = json.loads(parts[2])
        except ValueError:
            message = None
        out.append(WireLine(seconds, parts[1], message if isinstance(message, dict) else None))
    return out


def _matches(arguments: Any, wanted: dict[str, Any]) -> bool:
    return isinstance(arguments, dict) and all(arguments.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True)
class CancelEvidence:
    call_seen: bool
    cancelled: bool
    detail: str


def cancel_reached(lines: list[WireLine], tool: str, arguments: dict[str, Any]) -> CancelEvidence:
    """Did the upstream get ``notifications/cancelled`` for the last ``tools/call TOOL`` with these arguments?"""
    calls = [
        line
        for line in lines
        if line.direction == TO_UPSTREAM
        and line.message is not None
        and line.message.get("method") == "tools/call"
        and (line.message.get("params") or {}).get("name") == tool
        and _matches((line.message.get("params") or {}).get("arguments"), arguments)
    ]
    if not calls:
        return CancelEvidence(False, False, f"no tools/call {tool} reached the upstream")
    call = calls[-1]
    assert call.message is not None
    request_id = call.message.get("id")
    for line in lines:
        if line.seconds < call.seconds or line.direction != TO_UPSTREAM or line.message is None:
            continue
        if line.message.get("method") != "notifications/cancelled":
            continue
        if (line.message.get("params") or {}).get("requestId") == request_id:
            return CancelEvidence(
                True,
                True,
                f"the upstream got notifications/cancelled for tools/call id {request_id!r} "
                f"{line.seconds - call.seconds:.2f} s after the call",
            )
    answered = any(
        line.direction == FROM_UPSTREAM
        and line.message is not None
        and line.message.get("id") == request_id
        and ("result" in line.message or "error" in line.message)
        for line in lines
    )
    return CancelEvidence(
        True,
        False,
        f"the upstream never got notifications/cancelled for tools/call id {request_id!r}"
        + (" (it ran to its end)" if answered else ""),
    )
