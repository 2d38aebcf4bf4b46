"""The owner key: what makes a loopback gateway serve only the user who started it.

A port on 127.0.0.1 is reachable by every user of the machine, and the gateway behind it holds live
logins and runs the owner's stdio tools. So unless the config sets its own ``api_key``, the
listener requires a key that only the owner can read: 32 random bytes in ``<home>/gateway.key``
(``0600`` in the ``0700`` home, created on first use, never logged). Clients send it as
``Authorization: Bearer <key>``; ``mcprelay client-config`` prints it in the shapes desktop clients
paste; the CLI reads it to ask the running gateway (``upstream list``, ``tools list``).

``owner_only: false`` in the config turns the requirement off for a loopback listener without
``api_key`` — every local user can then use the gateway, which is why it is warned about at start.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from mcprelay import paths
from mcprelay.errors import ErrorType, McpRelayError

KEY_FILE = "gateway.key"
_PREFIX = "mcprelay_"


def key_path(home: Path) -> Path:
    return home / KEY_FILE


def _parse(data: bytes, path: Path) -> str:
    key = data.decode("ascii", errors="replace").strip()
    if not key.startswith(_PREFIX) or len(key) < len(_PREFIX) + 32 or not key.isascii() or not key.isprintable():
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"{path} does not hold an mcprelay owner key",
            suggestion=f"delete {path}: a new key is created at the next start (clients then need the new one)",
        )
    return key


def read_owner_key(home: Path) -> str | None:
    """The home's owner key, None when none was created yet."""
    path = key_path(home)
    data = paths.read_private(path, 4096)
    return None if data is None else _parse(data, path)


def owner_key(home: Path) -> str:
    """The home's owner key, created (exclusively, ``0600``) when it does not exist yet."""
    existing = read_owner_key(home)
    if existing is not None:
        return existing
    key = _PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    if paths.write_private(key_path(home), key.encode() + b"\n", exclusive=True):
        return key
    created = read_owner_key(home)  # another process created it first: that one stands
    assert created is not None
    return created


def listener_key(home: Path, api_key: str, owner_only: bool) -> str | None:
    """The bearer key the listener requires: the config's ``api_key``, else the owner key, else (opted out) none."""
    if api_key:
        return api_key
    return owner_key(home) if owner_only else None


def client_key(home: Path, api_key: str) -> str | None:
    """The key a client of the gateway for ``home`` presents: the config's ``api_key``, else the owner key if any."""
    return api_key or read_owner_key(home)
