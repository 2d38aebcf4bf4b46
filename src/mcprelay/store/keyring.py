"""Tokens in the system keyring (macOS Keychain, Secret Service, Windows Credential Manager).

Each value is one keyring entry: service ``mcprelay``, username = the store key, password = the
value as compact JSON. The OS then owns encryption at rest and access control, which is why
``auto`` prefers this store whenever a real backend works.

Size: Windows Credential Manager refuses secrets over 2,560 bytes (stored as UTF-16, so about
1,280 characters of JSON). Token sets with large JWTs can exceed that. We deliberately do not
split values across several entries: a split write is not atomic, and a half-rotated refresh token
is exactly what the store must never produce. Instead a too-large value fails with
``token_store_unavailable`` and the suggestion to use the file store (which is encrypted too).
"""

from __future__ import annotations

import json
from typing import Any

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store.base import KEYRING_SERVICE, backend_name, check_key, current_keyring

# CRED_MAX_CREDENTIAL_BLOB_SIZE; keyring's WinVault backend stores the password as UTF-16-LE.
_WINDOWS_BLOB_LIMIT = 5 * 512
_SWITCH_TO_FILE = 'set "token_store": "file" in the config to keep tokens in the encrypted file store'


class KeyringStore:
    """:class:`~mcprelay.store.base.TokenStore` on top of the ``keyring`` library.

    The backend is captured when the store is created so that every operation, and ``describe``,
    talks about the same keyring even if the process changes the global default later.
    """

    name = "keyring"

    def __init__(self, service: str = KEYRING_SERVICE, *, backend: Any = None, namespace: str = "") -> None:
        self.service = service
        # Two homes (a test run and the user's own, say) must not share entries: the keyring is global.
        self.namespace = namespace
        self._kr = backend if backend is not None else current_keyring()

    def _username(self, key: str) -> str:
        check_key(key)
        return f"{self.namespace}:{key}" if self.namespace else key

    def _error(self, action: str, key: str, exc: BaseException) -> McpRelayError:
        return McpRelayError(
            ErrorType.TOKEN_STORE_UNAVAILABLE,
            f"could not {action} {key!r} in the {backend_name(self._kr)} keyring: {type(exc).__name__}: {exc}",
            suggestion=f"unlock or repair the system keyring, or {_SWITCH_TO_FILE}",
        )

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            text = self._kr.get_password(self.service, self._username(key))
        except Exception as exc:
            raise self._error("read", key, exc) from exc
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            # Never hand back something half-parsed; do not echo the entry, it may hold a token.
            raise McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE,
                f"the keyring entry {key!r} (service {self.service!r}) is not valid mcprelay data",
                suggestion="run `mcprelay auth logout --server NAME` and log in again",
            )
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError("a stored value must be a dict")
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        if type(self._kr).__module__.endswith(".Windows") and len(text.encode("utf-16-le")) > _WINDOWS_BLOB_LIMIT:
            raise McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE,
                f"{key!r} is too large for Windows Credential Manager "
                f"({len(text)} characters; the limit is about {_WINDOWS_BLOB_LIMIT // 2})",
                suggestion=_SWITCH_TO_FILE,
            )
        try:
            self._kr.set_password(self.service, self._username(key), text)
        except Exception as exc:
            raise self._error("store", key, exc) from exc

    def delete(self, key: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            self._kr.delete_password(self.service, self._username(key))
        except PasswordDeleteError:
            # Backends report "not found" this way; absence is what the caller wanted.
            return
        except Exception as exc:
            raise self._error("delete", key, exc) from exc

    def describe(self) -> str:
        where = f", namespace {self.namespace!r}" if self.namespace else ""
        return f"keyring ({backend_name(self._kr)}, service {self.service!r}{where})"
