"""Recovery records: where a rotated grant goes when the store would not take it.

A refresh that succeeded at the server has consumed the old refresh token; if the store then refuses
the new one (a disk that filled during the request, a keyring that locked, a Redis that went away),
the process holds the only copy. It keeps that copy in memory, and also here, so that a process that
exits first does not take the grant with it: ``<home>/recovery/<hash>.json.enc`` (0600 in a 0700
directory), sealed with AES-256-GCM under ``<home>/recovery/.key`` (0600, created before the refresh
request is sent, so it never has to be created on a full disk). The next process for the same home
adopts the record under the grant lock: written to the store if the stored grant is still the one
it replaced (compare-and-set), dropped if the store has moved on (a logout or a new login wins).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

from mcprelay import diaglog
from mcprelay.errors import McpRelayError
from mcprelay.paths import private_dir, read_private, write_private
from mcprelay.store.seal import Sealer, SealError, decode_key


class RecoveryBox:
    """The recovery records of one home."""

    def __init__(self, home: Path) -> None:
        self.directory = Path(home) / "recovery"
        self._sealer: Sealer | None = None

    def _path(self, server: str) -> Path:
        return self.directory / (hashlib.sha256(server.encode()).hexdigest()[:32] + ".json.enc")

    def prepare(self) -> None:
        """Create the directory and key now, while there is room (called before a refresh is sent)."""
        if self._sealer is not None:
            return
        private_dir(self.directory)
        key_file = self.directory / ".key"
        text = read_private(key_file, 1024)
        if text is None:
            # First creator wins; a racing one reads the winner's key (the file only ever appears whole).
            write_private(key_file, base64.b64encode(secrets.token_bytes(32)) + b"\n", exclusive=True)
            text = read_private(key_file, 1024) or b""
        self._sealer = Sealer(decode_key(text.decode()))

    def save(self, server: str, grant: dict[str, Any], *, over: str | None) -> bool:
        """Keep ``grant`` (which replaced the stored record at stamp ``over``); False if even this failed."""
        path = self._path(server)
        try:
            self.prepare()
            assert self._sealer is not None
            record = json.dumps({"grant": grant, "over": over}, separators=(",", ":")).encode()
            write_private(path, self._sealer.seal(record, f"recovery/{server}"))
        except (OSError, ValueError, McpRelayError) as exc:
            diaglog.event("recovery_record_failed", server=server, correlation_id=None, level="error",
                          error=f"{type(exc).__name__}: {exc}")
            return False
        diaglog.event("recovery_record_written", server=server, correlation_id=None, level="warning",
                      path=str(path))
        return True

    def load(self, server: str) -> tuple[dict[str, Any], str | None] | None:
        """The kept grant and the stamp it replaced, or None (absent, or unreadable: then it is logged)."""
        path = self._path(server)
        try:
            blob = read_private(path, 16 * 1024 * 1024)
            if blob is None:
                return None
            self.prepare()
            assert self._sealer is not None
            record = json.loads(self._sealer.open(blob, f"recovery/{server}"))
            grant, over = record["grant"], record.get("over")
            if not isinstance(grant, dict):
                raise ValueError("not a grant")
        except (SealError, ValueError, KeyError, TypeError, OSError, McpRelayError) as exc:
            diaglog.event("recovery_record_unreadable", server=server, correlation_id=None, level="error",
                          error=f"{type(exc).__name__}: {exc}")
            return None
        return grant, over if isinstance(over, str) else None

    def exists(self, server: str) -> bool:
        return self._path(server).exists()

    def drop(self, server: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(server).unlink()
