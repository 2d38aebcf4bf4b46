"""The diagnostic log: JSON lines at ``<home>/logs/mcprelay.log``.

Every authentication event carries ``event``, ``server`` and ``correlation_id`` so that one login or
refresh can be followed across processes. Fields whose names say they hold a secret are replaced
before writing, and values that look like bearer credentials are never passed in by callers: this
module is the last line of defence, not the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from mcprelay import paths

_SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "authorization_code",
        "code_verifier",
        "client_secret",
        "token",
        "authorization",
        "password",
        "assertion",
    }
)
_MAX_BYTES = 5 * 1024 * 1024

_lock = threading.Lock()
_path: Path | None = None


def configure(home: Path) -> Path:
    """Point the log at ``<home>/logs``; the directory is private to the user (see :mod:`mcprelay.paths`)."""
    global _path
    logs = paths.private_dir(home / "logs")
    _path = logs / "mcprelay.log"
    return _path


def log_path() -> Path | None:
    return _path


# ``code`` is also the contract's name for an errno name (``EACCES``) in ``callback_bind_failed``.
_ERRNO_NAME = re.compile(r"E[A-Z0-9]{2,15}")


def _secret(key: str, value: Any) -> bool:
    if value is None or key.lower() not in _SECRET_KEYS:
        return False
    return not (key == "code" and isinstance(value, str) and _ERRNO_NAME.fullmatch(value))


def _scrub(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if _secret(k, v) else v) for k, v in fields.items()}


def event(name: str, *, server: str | None, correlation_id: str | None, level: str = "info", **fields: Any) -> None:
    """Append one event. Logging must never break a login, so write errors are swallowed."""
    if _path is None:
        return
    record = {
        "ts": round(time.time(), 3),
        "level": level,
        "event": name,
        "server": server,
        "correlation_id": correlation_id,
        "pid": os.getpid(),
        **_scrub(fields),
    }
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    try:
        with _lock:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(_path).st_size > _MAX_BYTES:
                    os.replace(_path, _path.with_suffix(".log.1"))
            # Never through a symlink, always 0600: a link planted here would otherwise choose the file.
            paths.append_private(_path, line.encode())
    except (OSError, paths.UnsafePath):
        pass
