"""Apply config file edits to a running gateway: poll the file, reload, keep the old config when invalid.

Polling (once a second, hashing a small file) instead of OS file events works the same on every
platform, with editors that replace the file instead of writing it, and on network filesystems.
A broken edit must not take the gateway down or drop its servers, so every failure — a file that is
invalid, unreadable, replaced by a FIFO or a 47 MB blob, or an edit the gateway fails to apply — is
logged (stderr and ``config_reload_failed`` in the diagnostic log, once per distinct content) and
the running config stays until the file is fixed. The file is read the way the loader reads it
(:func:`mcprelay.config.read_config_file`: regular files only, size-capped, never blocking).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread

from mcprelay import diaglog
from mcprelay.config import LoadedConfig, parse_config_bytes, read_config_file
from mcprelay.errors import McpRelayError

logger = logging.getLogger(__name__)

POLL_INTERVAL = 1.0


def _snapshot(path: Path) -> tuple[str | None, bytes | None, McpRelayError | None]:
    """(digest, content, error): the digest identifies what was seen, a readable file or the reason it is not."""
    try:
        data = read_config_file(path)
    except McpRelayError as exc:
        if "does not exist" in exc.message:
            return None, None, None  # mid-replace by an editor: look again next time
        return hashlib.sha256(exc.message.encode()).hexdigest(), None, exc
    return hashlib.sha256(data).hexdigest(), data, None


def _failed(path: Path, exc: BaseException) -> None:
    if isinstance(exc, McpRelayError):
        message, error_type, server = exc.message, str(exc.error_type), exc.server
        logger.error("config %s is invalid, keeping the running config: %s", path, message)
    else:
        message, error_type, server = f"{type(exc).__name__}: {exc}"[:500], "internal_error", None
        logger.error("config %s could not be applied, keeping the running config: %s", path, message, exc_info=exc)
    diaglog.event(
        "config_reload_failed", server=server, correlation_id=None, level="error",
        error_type=error_type, message=message, file=str(path),
    )


async def watch_config(
    path: Path, apply: Callable[[LoadedConfig], None], *, interval: float = POLL_INTERVAL
) -> None:
    """Call ``apply`` with each new valid version of ``path``; runs until cancelled and never raises."""
    seen, _data, _error = await anyio.to_thread.run_sync(_snapshot, path)
    while True:
        await anyio.sleep(interval)
        try:
            digest, data, error = await anyio.to_thread.run_sync(_snapshot, path)
        except Exception as exc:  # nothing read from the file may end the watcher
            _failed(path, exc)
            continue
        if digest is None or digest == seen:
            continue  # unchanged, or mid-replace by an editor
        seen = digest
        try:
            if error is not None:
                raise error
            assert data is not None
            loaded = parse_config_bytes(data, str(path))
            loaded.path = path
        except Exception as exc:
            _failed(path, exc)
            continue
        for warning in loaded.warnings:
            logger.warning("%s", warning)
        try:
            apply(loaded)
        except Exception as exc:
            _failed(path, exc)
            continue
        diaglog.event("config_reloaded", server=None, correlation_id=None, servers=len(loaded.config.mcp_servers))
