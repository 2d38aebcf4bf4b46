"""``<home>/state/gateway.json``: how CLI commands find the gateway running for their home.

``upstream list`` and ``tools list`` ask a running gateway instead of opening second connections to
every upstream (which would spawn stdio servers twice). A file left behind by a crashed gateway is
recognised by its dead pid and ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any


def runfile_path(home: Path) -> Path:
    return home / "state" / "gateway.json"


def write_runfile(home: Path, url: str) -> Path:
    path = runfile_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": url, "started_at": time.time()}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_runfile(home: Path) -> None:
    path = runfile_path(home)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_runfile(home: Path) -> dict[str, Any] | None:
    """The running gateway's ``pid`` and base ``url``, or None when none runs for this home."""
    try:
        data = json.loads(runfile_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("url"), str):
        return None
    return data if _alive(data["pid"]) else None
