"""Apply config file edits to a running gateway: poll the file, reload, keep the old config when invalid.

Polling (once a second, hashing a small file) instead of OS file events works the same on every
platform, with editors that replace the file instead of writing it, and on network filesystems.
A broken edit must not take the gateway down or drop its servers, so an invalid file is logged and
the running config stays until the file is fixed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from mcprelay import diaglog
from mcprelay.config import LoadedConfig, load_config
from mcprelay.errors import McpRelayError

logger = logging.getLogger(__name__)

POLL_INTERVAL = 1.0


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def watch_config(
    path: Path, apply: Callable[[LoadedConfig], None], *, interval: float = POLL_INTERVAL
) -> None:
    """Call ``apply`` with each new valid version of ``path``; runs until cancelled."""
    seen = _digest(path)
    while True:
        await anyio.sleep(interval)
        digest = _digest(path)
        if digest is None or digest == seen:
            continue  # unchanged, or mid-replace by an editor: look again next time
        seen = digest
        try:
            loaded = load_config(path)
        except McpRelayError as exc:
            logger.error("config %s is invalid, keeping the running config: %s", path, exc.message)
            diaglog.event(
                "config_reload_failed", server=exc.server, correlation_id=None, level="error",
                error_type=str(exc.error_type), message=exc.message,
            )
            continue
        for warning in loaded.warnings:
            logger.warning("%s", warning)
        diaglog.event("config_reloaded", server=None, correlation_id=None, servers=len(loaded.config.mcp_servers))
        apply(loaded)
