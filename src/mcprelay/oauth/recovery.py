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
import os
import secrets
from pathlib import Path
from typing import Any

from mcprelay import diaglog
from mcprelay.store.seal import Sealer, SealError, decode_key

_POSIX = os.name == "posix"
_O_BINARY: int = getattr(os, "O_BINARY", 0)


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
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_file = self.directory / ".key"
        try:
            raw = decode_key(key_file.read_text())
        except FileNotFoundError:
            raw = secrets.token_bytes(32)
            tmp = self.directory / f".key.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(base64.b64encode(raw) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, key_file)  # first creator wins; a racing one reads the winner's key
            except FileExistsError:
                raw = decode_key(key_file.read_text())
            finally:
                tmp.unlink()
        self._sealer = Sealer(raw)

    def save(self, server: str, grant: dict[str, Any], *, over: str | None) -> bool:
        """Keep ``grant`` (which replaced the stored record at stamp ``over``); False if even this failed."""
        try:
            self.prepare()
            assert self._sealer is not None
            record = json.dumps({"grant": grant, "over": over}, separators=(",", ":")).encode()
            blob = self._sealer.seal(record, f"recovery/{server}")
            path = self._path(server)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        except (OSError, ValueError) as exc:
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
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            diaglog.event("recovery_record_unreadable", server=server, correlation_id=None, level="error",
                          error=str(exc))
            return None
        try:
            self.prepare()
            assert self._sealer is not None
            record = json.loads(self._sealer.open(blob, f"recovery/{server}"))
            grant, over = record["grant"], record.get("over")
            if not isinstance(grant, dict):
                raise ValueError("not a grant")
        except (SealError, ValueError, KeyError, TypeError, OSError) as exc:
            diaglog.event("recovery_record_unreadable", server=server, correlation_id=None, level="error",
                          error=f"{type(exc).__name__}: {exc}")
            return None
        return grant, over if isinstance(over, str) else None

    def exists(self, server: str) -> bool:
        return self._path(server).exists()

    def drop(self, server: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(server).unlink()
