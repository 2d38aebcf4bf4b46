"""Secret stores for tokens and client registrations, and the choice between them.

``auto`` prefers the system keyring because the OS then guards the secrets, but only a keyring that
demonstrably works: the keyring library happily returns a backend that fails, forgets or writes
plaintext, and tokens silently lost (or silently exposed) are worse than tokens in our encrypted
file store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.store.base import TokenStore, backend_is_real, current_keyring, keyring_problem

__all__ = ["STORE_KINDS", "TokenStore", "backend_is_real", "home_namespace", "keyring_problem", "open_store"]

STORE_KINDS = ("auto", "keyring", "file", "memory", "redis://…", "rediss://…")


def home_namespace(home: Path) -> str:
    """A short stable id of a home, to keep its keyring entries apart from other homes'."""
    return "home-" + hashlib.sha256(str(home.expanduser().resolve()).encode()).hexdigest()[:12]


def open_store(kind: str, home: Path) -> TokenStore:
    """The store for the ``token_store`` setting ``kind``, rooted at ``home`` where it keeps files.

    ``keyring`` fails loudly when no working backend exists instead of degrading, because a user who
    asked for the keyring has said where secrets may live.
    """
    if kind == "memory":
        from mcprelay.store.memory import MemoryStore

        return MemoryStore()
    if kind == "file":
        from mcprelay.store.file import FileStore

        return FileStore(home)
    if kind in {"auto", "keyring"}:
        from mcprelay.store.keyring import KeyringStore

        kr = current_keyring()
        problem = keyring_problem(kr)
        if problem is None:
            return KeyringStore(backend=kr, namespace=home_namespace(home))
        if kind == "keyring":
            raise McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE,
                f"token_store is \"keyring\" but {problem}",
                suggestion='set "token_store": "file" in the config to use the encrypted file store instead',
                details={"backend": f"{type(kr).__module__}.{type(kr).__name__}"},
            )
        from mcprelay.store.file import FileStore

        return FileStore(home)
    if isinstance(kind, str) and kind.startswith(("redis://", "rediss://")):
        from mcprelay.store.redis import RedisStore

        # Connects lazily: a command that never touches a secret never waits for Redis.
        return RedisStore(kind, home=home)
    raise config_error(
        f"unknown token_store {kind!r}",
        suggestion='use "auto", "keyring", "file" or "memory" for token_store',
    )
