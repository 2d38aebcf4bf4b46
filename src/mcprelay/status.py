"""Per-server login status that is not secret (last error, last login), kept beside the secret store.

The token store holds only secrets; ``auth status`` also needs to say what went wrong last time,
and that must survive the process without ever holding a token.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcprelay.errors import McpRelayError

if TYPE_CHECKING:
    import httpx2

    from mcprelay.config import ServerConfig
    from mcprelay.oauth.flow import LoginOptions, LoginOutcome
    from mcprelay.store.base import TokenStore


def _path(home: Path, server: str) -> Path:
    return home / "state" / f"{server}.json"


def read_status(home: Path, server: str) -> dict[str, Any]:
    try:
        data = json.loads(_path(home, server).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_status(home: Path, server: str, **fields: Any) -> None:
    path = _path(home, server)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {**read_status(home, server), **fields, "updated_at": time.time()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def record_error(home: Path, server: str, error: McpRelayError) -> None:
    write_status(
        home, server,
        last_error={"error_type": str(error.error_type), "message": error.message, "at": time.time(),
                    "correlation_id": error.correlation_id},
    )


def clear_error(home: Path, server: str) -> None:
    write_status(home, server, last_error=None, last_login=time.time())


def forget(home: Path, server: str) -> None:
    try:
        _path(home, server).unlink()
    except FileNotFoundError:
        pass


async def recorded_login(
    home: Path, server: ServerConfig, store: TokenStore, http: httpx2.AsyncClient, options: LoginOptions,
    **kwargs: Any,
) -> LoginOutcome:
    """``oauth.flow.login`` with its outcome kept for ``auth status``: the error of a failed login, the
    time and issuer of a successful one — whoever started it (``auth login``, ``call``, the REST API)."""
    from mcprelay.oauth.flow import login  # not on the import path of `auth status`, which only reads

    try:
        outcome = await login(server, store, http, options, **kwargs)
    except McpRelayError as exc:
        record_error(home, server.name, exc)
        raise
    if outcome.grant:
        clear_error(home, server.name)
        write_status(home, server.name, issuer=outcome.grant.issuer)
    return outcome
