"""The token store interface, and the one question every store choice depends on: is the keyring real?

Tokens and client registrations are secrets that must outlive the process and be visible to sibling
processes (a gateway and a CLI refresh the same grant). Every store therefore promises that ``put``
is durable when it returns; the token manager relies on that to never lose a rotated refresh token.

Keys look like ``tokens/<server>`` or ``registration/<server>/<issuer>`` and are opaque: stores must
not interpret ``/`` or ``:`` in them, since server names and issuer URLs are user controlled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mcprelay import seam

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


@dataclass(frozen=True)
class Fence:
    """Proof that a writer still holds a grant's lease: the lease key and the holder's token.

    A store with native versions refuses a fenced write atomically once the lease is gone, so a holder
    whose lease lapsed (a paused process, a cut link) can never overwrite a newer rotation.
    """

    lease_key: str
    token: str


class VersionedStore(Protocol):
    """Atomic versioned operations, for stores shared by processes that share no lock (Redis).

    Every value carries a stamp that changes with each write; ``write_if`` and ``delete_if`` act only
    when the stamp is still the one the caller read and (when given) the fence still holds.
    """

    async def read_versions(self, keys: list[str]) -> list[tuple[dict[str, Any] | None, str | None]]: ...

    async def write_if(
        self, key: str, value: dict[str, Any], *, stamp: str | None, fence: Fence | None, clear: list[str]
    ) -> bool: ...

    async def delete_if(self, key: str, *, stamp: str, also: list[str]) -> bool: ...

    async def put_fenced(
        self, key: str, value: dict[str, Any], *, fence: Fence | None, reserve_for: str | None = None
    ) -> None: ...

    async def delete_fenced(self, key: str, *, fence: Fence | None) -> None: ...


def versioned(store: TokenStore) -> VersionedStore | None:
    """The store's native versioned operations, or None where they are emulated under the file lock."""
    return store if callable(getattr(store, "write_if", None)) else None  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def watching(store: TokenStore, key: str, wake: Callable[[str], None]) -> AsyncIterator[None]:
    """Call ``wake(op)`` (on the caller's event loop) whenever ``key`` may have changed, while inside.

    ``op`` is ``put``, ``del``, or ``resync`` (the feed reconnected: anything may have changed). A
    store shared between machines (Redis) pushes changes; the local stores have no feed, so the
    caller keeps polling as it always did. ``wake`` must be cheap and must not raise.
    """
    watch = getattr(store, "watch", None)
    if watch is None:
        yield
        return
    async with watch(key, wake):
        yield


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
    import keyring.core

    # Only while keyring has not chosen yet: a backend set by the program (or a test) stays.
    if not seam.keyring_backend_chosen():
        detected = _detect_linux_keyring()
        if detected is not None:
            keyring.set_keyring(detected)
    return keyring.get_keyring()


# The backend plugins keyring itself registers (entry point group ``keyring.backends``), as of keyring 25.
_KEYRING_OWN_PLUGINS = frozenset(
    {
        "keyring.backends.kwallet",
        "keyring.backends.SecretService",
        "keyring.backends.Windows",
        "keyring.backends.chainer",
        "keyring.backends.libsecret",
        "keyring.backends.macOS",
    }
)


def _detect_linux_keyring() -> Any:
    """The backend keyring's own discovery would pick on Linux, or ``None`` to let keyring discover.

    keyring ranks its backends by importing every backend plugin, and importing its macOS module
    runs ``ctypes.util.find_library``, which on Linux spawns ``ldconfig`` and a compiler: about
    35 ms, a tenth of ``mcprelay auth status``. The macOS backend refuses every platform but macOS
    (its priority raises), so on Linux this ranks all the others exactly as keyring does, without
    that import. It steps aside whenever its answer could differ from keyring's: a backend chosen by
    ``PYTHON_KEYRING_BACKEND`` or ``keyringrc.cfg``, backend plugins other than keyring's own
    (third-party, or a keyring release with different ones), backend classes defined outside
    keyring, and two usable backends at once (keyring then chains them), or any error.
    """
    if not sys.platform.startswith("linux") or "PYTHON_KEYRING_BACKEND" in os.environ:
        return None
    try:
        from importlib.metadata import entry_points

        from keyring.util import platform_

        if (platform_.config_root() / "keyringrc.cfg").exists():
            return None
        if {ep.value for ep in entry_points(group="keyring.backends")} != _KEYRING_OWN_PLUGINS:
            return None
        from keyring.backends import SecretService, Windows, chainer, kwallet, libsecret  # noqa: F401

        classes = seam.keyring_backend_classes()
        if any(not cls.__module__.startswith("keyring.backends.") for cls in classes):
            return None
        rings: list[Any] = []
        for cls in classes:
            # What keyring.backend.get_all_keyring does: viable classes that construct without arguments.
            if cls is chainer.ChainerBackend or not cls.viable:
                continue
            try:
                rings.append(cls())
            except TypeError:
                continue
        ranked = [(ring.priority, ring) for ring in rings]
        if sum(1 for priority, _ in ranked if priority > 0) > 1:
            return None  # keyring's ChainerBackend would win (priority 10): let keyring build it
        # Otherwise the chainer's priority (-1) is below that of the fail backend (0), always a ring here.
        return max(ranked, key=lambda pair: pair[0])[1]
    except Exception:
        return None
