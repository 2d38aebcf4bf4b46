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

from mcprelay import paths


def runfile_path(home: Path) -> Path:
    return home / "state" / "gateway.json"


def write_runfile(home: Path, url: str, *, config: Path | None = None) -> Path:
    """Publish the running gateway (0600, atomically, never through a symlink; see :mod:`mcprelay.paths`).

    ``config`` is the file it watches, so that ``mcprelay upstream add`` can tell whether its edit
    reaches this gateway.
    """
    path = runfile_path(home)
    paths.private_dir(path.parent)
    record = {"pid": os.getpid(), "url": url, "started_at": time.time(),
              "config": str(config.resolve()) if config is not None else None}
    paths.write_private(path, json.dumps(record).encode())
    return path


def _load(home: Path) -> Any:
    data = paths.read_private(runfile_path(home), 64 * 1024)
    return None if data is None else json.loads(data)


def remove_runfile(home: Path) -> None:
    path = runfile_path(home)
    with contextlib.suppress(OSError, ValueError, paths.UnsafePath):
        data = _load(home)
        if isinstance(data, dict) and data.get("pid") == os.getpid():
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
        data = _load(home)
    except (OSError, ValueError, paths.UnsafePath):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("url"), str):
        return None
    return data if _alive(data["pid"]) else None
