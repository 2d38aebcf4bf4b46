"""Reading the diagnostic log (``<home>/logs/mcprelay.log``) for one server, for ``upstream logs NAME``.

The log is JSON lines from every mcprelay process of the home; each auth and connection event names
its ``server``. Lines are matched as text first (the writer uses compact separators), so only the
server's own lines are parsed, and the rotated generation is read before the current one.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

_SHOWN_FIRST = ("ts", "level", "event", "server", "correlation_id", "pid")


def events_for(home: Path, server: str, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` events of ``server``, oldest first."""
    log = home / "logs" / "mcprelay.log"
    needle = '"server":' + json.dumps(server)
    found: deque[dict[str, Any]] = deque(maxlen=max(limit, 0))
    for path in (log.with_suffix(".log.1"), log):
        try:
            handle = path.open("r", encoding="utf-8", errors="replace")
        except OSError:
            continue
        with handle:
            for line in handle:
                if needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("server") == server:
                    found.append(record)
    return list(found)


def format_event(record: dict[str, Any]) -> str:
    """One event as a line: time, level, event, then its other fields (``key=value``)."""
    ts = record.get("ts")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "?"
    fields = [f"{k}={_text(v)}" for k, v in record.items() if k not in _SHOWN_FIRST and v is not None]
    cid = record.get("correlation_id")
    if cid:
        fields.append(f"correlation_id={cid}")
    return f"{when}  {record.get('level', '')!s:<7} {record.get('event', '?'):<28} {' '.join(fields)}".rstrip()


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return json.dumps(text) if (" " in text or not text) and isinstance(value, str) else text
