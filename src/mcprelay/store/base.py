"""The token store interface, and the one question every store choice depends on: is the keyring real?

Tokens and client registrations are secrets that must outlive the process and be visible to sibling
processes (a gateway and a CLI refresh the same grant). Every store therefore promises that ``put``
is durable when it returns; the token manager relies on that to never lose a rotated refresh token.

Keys look like ``tokens/<server>`` or ``registration/<server>/<issuer>`` and are opaque: stores must
not interpret ``/`` or ``:`` in them, since server names and issuer URLs are user controlled.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol, runtime_checkable

KEYRING_SERVICE = "mcprelay"

# Backends that look like keyrings but keep nothing, or keep secrets in a way that would break our
# rule that tokens are never written in plaintext. Matched by class name so that ``keyrings.alt``
# does not have to be importable. ``EncryptedKeyring`` asks for a password on the terminal, which
# would hang a gateway or a probe running without one, so it is not a usable backend for us either.
_UNUSABLE_CLASS_NAMES = frozenset({"PlaintextKeyring", "EncryptedKeyring", "UncryptedFileKeyring"})


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens and client registrations live.

    ``name`` is one of ``"keyring"``, ``"file"`` or ``"memory"``; it is what ``auth status`` shows.
    """

    name: str

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or ``None`` when there is none. Unreadable data raises, never guesses."""
        ...

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value``; durable when this returns (another process's ``get`` sees it)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting something absent is not an error (logout must be idempotent)."""
        ...

    def describe(self) -> str:
        """Where the data lives, for people (``auth status``). Never contains a secret."""
        ...


def check_key(key: str) -> str:
    """Reject keys no store can represent; a programming error, not a user-facing one."""
    if not isinstance(key, str) or not key:
        raise ValueError("a store key must be a non-empty string")
    return key


def backend_name(kr: Any) -> str:
    """A short display name for a keyring backend, e.g. ``SecretService`` or ``WinVault``."""
    cls = type(kr)
    module = cls.__module__.rpartition(".")[2]
    if cls.__name__ == "Keyring" and module:
        return module
    return cls.__name__.removesuffix("Keyring") or cls.__name__


def backend_is_real(kr: Any) -> bool:
    """True when ``kr`` is a backend that can keep a secret safely and without asking anyone.

    The keyring library always returns *some* backend: when nothing is available it hands out the
    ``fail`` backend (raises on use), the ``null`` backend (silently forgets) or a chainer with
    nothing to chain. None of those keeps tokens, and plaintext backends keep them where we promised
    they would never be, so they are excluded too. Whether a real backend actually works (a locked
    or unreachable Secret Service) is a separate question answered by :func:`keyring_problem`.
    """
    if kr is None:
        return False
    try:
        from keyring.backends import chainer, fail, null
    except ImportError:  # pragma: no cover - keyring is a hard dependency
        return False
    if isinstance(kr, fail.Keyring | null.Keyring):
        return False
    if isinstance(kr, chainer.ChainerBackend):
        # The chainer writes to the first member that accepts the write, so a single unusable member
        # could end up holding the secret: all of them must be real.
        try:
            members = list(kr.backends)
        except Exception:
            return False
        return bool(members) and all(backend_is_real(member) for member in members)
    return not any(base.__name__ in _UNUSABLE_CLASS_NAMES for base in type(kr).__mro__)


def keyring_problem(kr: Any) -> str | None:
    """Why ``kr`` cannot hold our secrets, or ``None`` when a set/get/delete round trip works.

    A backend can be installed yet unusable (no D-Bus session, locked collection, headless
    Windows service), so the only honest test is to use it with a throwaway entry.
    """
    if not backend_is_real(kr):
        return f"no usable system keyring backend (the keyring library offers {backend_name(kr)})"
    username = f"mcprelay-probe:{secrets.token_hex(8)}"
    value = secrets.token_urlsafe(16)
    try:
        kr.set_password(KEYRING_SERVICE, username, value)
        try:
            if kr.get_password(KEYRING_SERVICE, username) != value:
                return f"the {backend_name(kr)} keyring did not return what was stored in it"
        finally:
            kr.delete_password(KEYRING_SERVICE, username)
    except Exception as exc:
        return f"the {backend_name(kr)} keyring does not work: {type(exc).__name__}: {exc}"
    return None


def current_keyring() -> Any:
    """The keyring library's active backend (imported lazily: the memory store must not need it)."""
    import keyring

    return keyring.get_keyring()
