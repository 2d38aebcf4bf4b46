"""Per-server login status that is not secret (last error, last login, issuer), for ``auth status``.

Where it lives follows the token store:

* a store of one machine (file, keyring, memory): ``<home>/state/<server>.json`` beside it (0600),
  so that ``auth status`` can still say what went wrong when the secret store itself is broken;
* a store shared by a fleet (Redis): in that store, under ``status/<server>``, so that every replica
  and every machine with the same config shows the same status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcprelay.errors import ErrorType, McpRelayError

if TYPE_CHECKING:
    import httpx2

    from mcprelay.config import ServerConfig
    from mcprelay.oauth.flow import LoginOptions, LoginOutcome
    from mcprelay.store.base import TokenStore


def _path(home: Path, server: str) -> Path:
    return home / "state" / f"{server}.json"


def _status_key(server: str) -> str:
    return f"status/{server}"


def _shared(store: TokenStore | None) -> bool:
    return bool(getattr(store, "shared", False))


def read_status(home: Path, server: str, store: TokenStore | None = None) -> dict[str, Any]:
    if store is not None and _shared(store):
        try:
            return store.get(_status_key(server)) or {}
        except McpRelayError:
            return {}
    try:
        data = json.loads(_path(home, server).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_status(home: Path, server: str, store: TokenStore | None = None, **fields: Any) -> None:
    data = {**read_status(home, server, store), **fields, "updated_at": time.time()}
    if store is not None and _shared(store):
        store.put(_status_key(server), data)
        return
    from mcprelay.paths import private_dir, write_private

    path = _path(home, server)
    private_dir(path.parent)
    write_private(path, json.dumps(data).encode())  # 0600, atomic, never through a planted symlink


def record_error(home: Path, server: str, error: McpRelayError, store: TokenStore | None = None) -> None:
    write_status(
        home, server, store,
        last_error={"error_type": str(error.error_type), "message": error.message, "at": time.time(),
                    "correlation_id": error.correlation_id},
    )


def clear_error(home: Path, server: str, store: TokenStore | None = None) -> None:
    write_status(home, server, store, last_error=None, last_login=time.time())


def clear_refresh_error(home: Path, server: str, store: TokenStore | None = None) -> None:
    """A refresh succeeded after failing: the recorded refresh error is no longer the state."""
    last = read_status(home, server, store).get("last_error")
    if isinstance(last, dict) and last.get("error_type") in {
        ErrorType.REFRESH_FAILED, ErrorType.TOKEN_STORE_UNAVAILABLE, ErrorType.LOGIN_REQUIRED,
    }:
        write_status(home, server, store, last_error=None)


def forget(home: Path, server: str, store: TokenStore | None = None) -> None:
    if store is not None and _shared(store):
        store.delete(_status_key(server))
        return
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
    import functools

    import anyio.to_thread

    from mcprelay.oauth.flow import login  # not on the import path of `auth status`, which only reads

    try:
        outcome = await login(server, store, http, options, **kwargs)
    except McpRelayError as exc:
        await anyio.to_thread.run_sync(functools.partial(record_error, home, server.name, exc, store))
        raise
    except Exception as exc:  # an unexpected failure is still recorded, then re-raised for a traceback
        error = McpRelayError(ErrorType.CODE_FLOW_FAILED, f"the login failed: {type(exc).__name__}: {exc}"[:500])
        await anyio.to_thread.run_sync(functools.partial(record_error, home, server.name, error, store))
        raise
    if outcome.grant:
        grant = outcome.grant

        def done() -> None:
            clear_error(home, server.name, store)
            write_status(home, server.name, store, issuer=grant.issuer)

        await anyio.to_thread.run_sync(done)
    return outcome
