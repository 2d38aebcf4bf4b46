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

from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id

if TYPE_CHECKING:
    import httpx2

    from mcprelay.config import ServerConfig
    from mcprelay.oauth.flow import LoginOptions, LoginOutcome
    from mcprelay.store.base import TokenStore


#: Files of mcprelay's own in ``state/`` (``gateway.json``: the running gateway's run file). A server
#: of that name keeps its status beside them under a name no server can have (names hold no dot).
_OWN_FILES = frozenset({"gateway"})


def _path(home: Path, server: str) -> Path:
    if server.lower() in _OWN_FILES:  # lower(): on a case-insensitive file system "Gateway" is the same file
        return home / "state" / f"{server}.server.json"
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


def note_auth(home: Path, server: str, needs_oauth: bool, store: TokenStore | None = None) -> None:
    """Remember whether ``server`` asks for OAuth (``auth status`` shows ``none`` for one that does not).

    Learnt whenever a connection or a login finds out; written only when it changed, so a gateway
    reconnecting costs a read, not a write. Never raises: it is a note, not state anything depends on.
    """
    wanted = "oauth" if needs_oauth else "none"
    try:
        if read_status(home, server, store).get("auth") != wanted:
            write_status(home, server, store, auth=wanted)
    except (OSError, McpRelayError):
        pass


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
    *, request_id: str | None = None, **kwargs: Any,
) -> LoginOutcome:
    """``oauth.flow.login`` with its outcome kept for ``auth status``: the error of a failed login, the
    time and issuer of a successful one — whoever started it (``auth login``, ``call``, the REST API).

    Each login, successful or not, is also a row of the activity log under ``request_id`` (a new one
    unless the caller's request led to it), which a failed login's error carries: ``mcprelay
    activity list --request-id ID`` finds it.
    """
    import functools

    import anyio.to_thread

    from mcprelay.oauth.flow import login  # not on the import path of `auth status`, which only reads
    from mcprelay.secretref import resolve_server

    request_id = request_id or new_correlation_id()
    started = time.time()
    grant_kind = "device_code" if options.device else server.oauth.grant
    try:
        server = resolve_server(server, home, store)  # a client secret may be a reference
        outcome = await login(server, store, http, options, **kwargs)
    except McpRelayError as exc:
        exc.with_context(server=server.name, request_id=request_id)
        await anyio.to_thread.run_sync(functools.partial(record_error, home, server.name, exc, store))
        await anyio.to_thread.run_sync(
            _record_activity, home, server.name, grant_kind, request_id, exc.correlation_id, started, "error",
            str(exc.error_type),
        )
        raise
    except Exception as exc:  # an unexpected failure is still recorded, then re-raised for a traceback
        error = McpRelayError(ErrorType.CODE_FLOW_FAILED, f"the login failed: {type(exc).__name__}: {exc}"[:500])
        await anyio.to_thread.run_sync(functools.partial(record_error, home, server.name, error, store))
        await anyio.to_thread.run_sync(
            _record_activity, home, server.name, grant_kind, request_id, None, started, "error",
            str(ErrorType.CODE_FLOW_FAILED),
        )
        raise
    if outcome.grant:
        grant = outcome.grant

        def done() -> None:
            clear_error(home, server.name, store)
            write_status(home, server.name, store, issuer=grant.issuer, auth="oauth")

        await anyio.to_thread.run_sync(done)
    else:
        await anyio.to_thread.run_sync(functools.partial(write_status, home, server.name, store, auth="none",
                                                         last_error=None))
    await anyio.to_thread.run_sync(
        _record_activity, home, server.name, grant_kind, request_id, outcome.correlation_id, started, "ok", None,
    )
    return outcome


def _record_activity(
    home: Path, server: str, tool: str, request_id: str, correlation_id: str | None, started: float, status: str,
    error_type: str | None, kind: str = "login",
) -> None:
    from mcprelay.activity import ActivityRecord, record_now

    record_now(home, ActivityRecord(
        request_id=request_id, correlation_id=correlation_id, server=server, tool=tool, started_at=started,
        duration_ms=round((time.time() - started) * 1000, 1), status=status, error_type=error_type,
        request_bytes=0, response_bytes=0, kind=kind,
    ))
