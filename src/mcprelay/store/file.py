"""Tokens in encrypted files under ``<home>/store``: for machines without a usable keyring.

Layout (the directory is 0700, every file in it 0600):

- one file per key, named ``sha256(key).hex + ".json.enc"`` so that server names and issuer URLs
  never become path components (no traversal, no case-folding collisions, no length limits);
- ``.key``: the data key (32 random bytes, base64) when it is not in the system keyring;
- ``.key-location``: non-secret JSON saying where the data key lives (``keyring`` or ``file``);
- ``.lock``: serialises creation of the data key between processes.

File format, version 1::

    b"MRS" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The key id is a hash of the data key (it reveals nothing about it) and lets a read tell "encrypted
with another key" apart from "modified". The associated data is the 12-byte header followed by
the UTF-8 store key, so a file copied over another key's file, or re-labelled with another version,
fails authentication instead of being returned under the wrong name.

Where the data key lives is decided once, on first write, and then recorded: in the system keyring
(service ``mcprelay``, username ``file-store-key:<home>``) when a real backend works, else in
``.key``. The decision is never revisited silently, because switching location would make one
process write with a key another process cannot find.

Lost key policy: when the data key has gone missing (``.key`` deleted, keyring entry removed), a
*write* creates a new key so that ``auth logout`` followed by a new login repairs the store, but
every file written with the old key keeps failing on read with ``token_store_unavailable`` naming
the file; nothing is deleted or overwritten silently, and garbage is never returned.

Durability: a value is written to a 0600 temporary file in the same directory, flushed, fsynced,
renamed over the target with ``os.replace`` and the directory is fsynced, so that a crash leaves
either the old or the new value and another process never sees a partial file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store.base import KEYRING_SERVICE, backend_is_real, backend_name, check_key, keyring_problem

_MAGIC = b"MRS"
_VERSION = 1
_KEY_ID_LEN = 8
_HEADER_LEN = len(_MAGIC) + 1 + _KEY_ID_LEN
_NONCE_LEN = 12
_TAG_LEN = 16
_MAX_FILE_BYTES = 16 * 1024 * 1024
_SUFFIX = ".json.enc"
_KEY_FILE = ".key"
_LOCATION_FILE = ".key-location"
_LOCK_FILE = ".lock"
_STALE_TMP_SECONDS = 3600
_POSIX = os.name == "posix"
_O_BINARY: int = getattr(os, "O_BINARY", 0)
_RELOGIN = "run `mcprelay auth logout --server NAME` and log in again"


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"mcprelay-file-store-key-id\0" + key).digest()[:_KEY_ID_LEN]


def _unavailable(message: str, suggestion: str, **details: Any) -> McpRelayError:
    return McpRelayError(ErrorType.TOKEN_STORE_UNAVAILABLE, message, suggestion=suggestion, details=details)


@dataclass(frozen=True)
class _DataKey:
    key: bytes
    key_id: bytes


class FileStore:
    """:class:`~mcprelay.store.base.TokenStore` keeping AES-GCM encrypted files under ``<home>/store``.

    Safe to use from several threads and several processes at once. ``keyring_backend`` overrides
    the keyring library's default backend for the data key (tests, embedding); by default the
    backend active when the key is first needed is used.
    """

    name = "file"

    def __init__(self, home: Path, *, keyring_backend: Any = None) -> None:
        self.home = Path(home).expanduser().resolve()
        self.directory = self.home / "store"
        self.keyring_username = f"file-store-key:{self.home}"
        self._kr_override = keyring_backend
        self._lock = threading.Lock()
        self._key: _DataKey | None = None
        self._reserved: dict[str, Path] = {}
        self._ensure_directory()
        self._remove_stale_temp_files()

    # -- TokenStore -------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path_for(check_key(key))
        try:
            blob = self._read_bytes(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unavailable(
                f"could not read the token store file {path}: {exc.strerror or exc}",
                "check the permissions of the mcprelay home directory",
                path=str(path),
            ) from exc

        def fail(reason: str) -> McpRelayError:
            return _unavailable(
                f"cannot decrypt the stored entry {key!r} ({path}): {reason}", _RELOGIN, path=str(path), key=key
            )

        if len(blob) < _HEADER_LEN + _NONCE_LEN + _TAG_LEN or not blob.startswith(_MAGIC):
            raise fail("it is truncated or not an mcprelay store file")
        if blob[len(_MAGIC)] != _VERSION:
            raise fail(f"it has format version {blob[len(_MAGIC)]}, this mcprelay reads version {_VERSION}")
        header = blob[:_HEADER_LEN]
        file_key_id = header[len(_MAGIC) + 1 :]
        data_key = self._data_key(create=False)
        if data_key is None:
            raise fail(f"the store's data key is missing ({self._key_location_text()})")
        if data_key.key_id != file_key_id:
            # Another process may have replaced a lost key since we cached ours: look once more.
            data_key = self._data_key(create=False, refresh=True)
            if data_key is None or data_key.key_id != file_key_id:
                raise fail("it was encrypted with a different data key (the old key was lost or replaced)")
        nonce = blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN]
        try:
            plaintext = AESGCM(data_key.key).decrypt(nonce, blob[_HEADER_LEN + _NONCE_LEN :], header + key.encode())
        except InvalidTag:
            raise fail("authentication failed (the file was modified, truncated or belongs to another entry)") from None
        try:
            value = json.loads(plaintext)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise fail("the decrypted content is not an mcprelay record")
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError("a stored value must be a dict")
        plaintext = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        path = self.path_for(check_key(key))
        data_key = self._data_key(create=True)
        assert data_key is not None
        header = _MAGIC + bytes([_VERSION]) + data_key.key_id
        nonce = secrets.token_bytes(_NONCE_LEN)
        blob = header + nonce + AESGCM(data_key.key).encrypt(nonce, plaintext, header + key.encode())
        with self._lock:
            reserved = self._reserved.pop(key, None)
        try:
            self._atomic_write(path, blob, reserved=reserved)
        except OSError as exc:
            raise _unavailable(
                f"could not write the token store file {path}: {exc.strerror or exc}",
                "check free disk space and the permissions of the mcprelay home directory",
                path=str(path),
            ) from exc

    def delete(self, key: str) -> None:
        path = self.path_for(check_key(key))
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unavailable(
                f"could not delete the token store file {path}: {exc.strerror or exc}",
                "check the permissions of the mcprelay home directory",
                path=str(path),
            ) from exc
        self._fsync_directory()

    def describe(self) -> str:
        return f"file ({self.directory}; data key {self._key_location_text()})"

    # -- reservations -----------------------------------------------------------------------------

    def reserve(self, key: str, size: int) -> None:
        """Set aside ``size`` bytes of disk for the next ``put`` of ``key``, or raise now.

        The space is a real, fsynced file of that size next to the target (not a sparse one), so
        the ``put`` that follows overwrites blocks it already owns: a disk that fills up between the
        two cannot fail it. The token manager reserves before it sends a refresh, because a rotated
        refresh token that cannot be written is lost for good.
        """
        path = self.path_for(check_key(key))
        tmp = self.directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _unavailable(
                f"could not set aside {size} bytes in {self.directory}: {exc.strerror or exc}",
                "free disk space in the mcprelay home, then try again",
                path=str(self.directory),
            ) from exc
        with self._lock:
            previous = self._reserved.pop(key, None)
            self._reserved[key] = tmp
        if previous is not None:
            with contextlib.suppress(OSError):
                previous.unlink()

    def unreserve(self, key: str) -> None:
        """Give back the space set aside for ``key`` (the refresh did not produce a write)."""
        with self._lock:
            tmp = self._reserved.pop(key, None)
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # -- layout -----------------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file holding ``key``; hashed so that no part of the key becomes a path component."""
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + _SUFFIX)

    @property
    def key_file(self) -> Path:
        return self.directory / _KEY_FILE

    def _ensure_directory(self) -> None:
        """Create ``<home>/store`` as 0700, and tighten it when an older or foreign tool left it open."""
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.directory.mkdir(exist_ok=True, mode=0o700)
            st = self.directory.stat()
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(20, "not a directory", str(self.directory))
            if _POSIX and stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise _unavailable(
                f"cannot use {self.directory} as a private token store directory: {exc.strerror or exc}",
                f"make {self.directory} a directory owned by you (mode 0700), or choose another --home",
                path=str(self.directory),
            ) from exc

    def _remove_stale_temp_files(self) -> None:
        """A crash between create and rename leaves a temp file; old ones are garbage, young ones in use."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        with contextlib.suppress(OSError):
            for tmp in self.directory.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    if tmp.stat().st_mtime < cutoff:
                        tmp.unlink()

    @staticmethod
    def _read_bytes(path: Path) -> bytes:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
        if len(data) > _MAX_FILE_BYTES:
            # Treated as unreadable rather than loaded: no record of ours is anywhere near this size.
            return b""
        return data

    def _atomic_write(self, path: Path, data: bytes, *, reserved: Path | None = None) -> None:
        fd = -1
        if reserved is not None:
            try:
                if reserved.stat().st_size >= len(data):
                    fd = os.open(reserved, os.O_WRONLY | _O_BINARY)  # no O_TRUNC: keep the reserved blocks
                    tmp = reserved
            except OSError:
                fd = -1
            if fd < 0:
                with contextlib.suppress(OSError):
                    reserved.unlink()
        if fd < 0:
            tmp = self.directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.truncate(len(data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        """Make the rename or unlink itself durable; directories cannot be opened for this on Windows."""
        if not _POSIX:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the data key -----------------------------------------------------------------------------

    def _keyring(self) -> Any:
        if self._kr_override is not None:
            return self._kr_override
        from mcprelay.store.base import current_keyring

        return current_keyring()

    def _read_location(self) -> str | None:
        try:
            record = json.loads((self.directory / _LOCATION_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise _unavailable(
                f"cannot read {self.directory / _LOCATION_FILE}: {exc}",
                f"remove {self.directory} and log in again",
            ) from exc
        location = record.get("location") if isinstance(record, dict) else None
        if location not in {"keyring", "file"}:
            raise _unavailable(
                f"{self.directory / _LOCATION_FILE} names an unknown data key location",
                f"remove {self.directory} and log in again",
            )
        return str(location)

    def _write_location(self, location: str) -> None:
        record: dict[str, Any] = {"version": 1, "location": location}
        if location == "keyring":
            record.update(
                service=KEYRING_SERVICE, username=self.keyring_username, backend=backend_name(self._keyring())
            )
        else:
            record["path"] = str(self.key_file)
        self._atomic_write(self.directory / _LOCATION_FILE, (json.dumps(record, indent=2) + "\n").encode())

    def _key_location_text(self) -> str:
        """Where the data key lives, for ``describe`` and error messages; never raises."""
        try:
            location = self._read_location()
        except McpRelayError:
            return "location record unreadable"
        if location == "keyring":
            return f"in the system keyring (service {KEYRING_SERVICE!r}, user {self.keyring_username!r})"
        if location == "file" or self.key_file.exists():
            return f"in {self.key_file}"
        return "not created yet"

    def _data_key(self, *, create: bool, refresh: bool = False) -> _DataKey | None:
        with self._lock:
            if self._key is not None and not refresh:
                return self._key
            key = self._resolve_key(create)
            if key is not None:
                self._key = key
            return key

    def _resolve_key(self, create: bool) -> _DataKey | None:
        """Find (or create) the data key; the cross-process lock makes first use produce one key."""
        import filelock

        lock = filelock.FileLock(str(self.directory / _LOCK_FILE), timeout=30, mode=0o600)
        try:
            with lock:
                return self._resolve_key_locked(create)
        except filelock.Timeout as exc:
            raise _unavailable(
                f"timed out waiting for {self.directory / _LOCK_FILE} (another mcprelay is creating the data key)",
                "retry; if it persists, look for a hung mcprelay process",
            ) from exc
        except OSError as exc:
            raise _unavailable(
                f"could not set up the data key of {self.directory}: {exc.strerror or exc}",
                "check free disk space and the permissions of the mcprelay home directory",
            ) from exc

    def _resolve_key_locked(self, create: bool) -> _DataKey | None:
        location = self._read_location()
        recorded = location is not None
        if location is None:
            if self.key_file.exists():
                location = "file"
            elif not create:
                return None
            else:
                location = "keyring" if keyring_problem(self._keyring()) is None else "file"
        if location == "file":
            raw = self._read_key_file()
            if raw is None and create:
                raw = self._create_key_file()
        else:
            raw = self._keyring_key(create)
        if raw is None:
            return None
        if not recorded:
            self._write_location(location)
        return _DataKey(raw, _key_id(raw))

    @staticmethod
    def _decode_key(text: str, where: str) -> bytes:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise _unavailable(
                f"the token store's data key in {where} is corrupt",
                f"restore it from a backup, or remove the token store and log in again ({_RELOGIN})",
            )
        return raw

    def _read_key_file(self) -> bytes | None:
        path = self.key_file
        try:
            if _POSIX and stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, 0o600)
            text = path.read_text()
        except FileNotFoundError:
            return None
        return self._decode_key(text, str(path))

    def _create_key_file(self) -> bytes:
        raw = secrets.token_bytes(32)
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        except FileExistsError:
            # Only reachable where the file lock is advisory-only; the other creator wins.
            return self._wait_for_key_file()
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(raw) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._fsync_directory()
        return raw

    def _wait_for_key_file(self) -> bytes:
        deadline = time.monotonic() + 5
        while True:
            try:
                raw = self._read_key_file()
            except McpRelayError:
                raw = None
                if time.monotonic() > deadline:
                    raise
            if raw is not None:
                return raw
            if time.monotonic() > deadline:
                raise _unavailable(f"{self.key_file} did not become readable", "retry")
            time.sleep(0.02)

    def _keyring_key(self, create: bool) -> bytes | None:
        kr = self._keyring()
        where = f"the {backend_name(kr)} keyring"
        if not backend_is_real(kr):
            raise _unavailable(
                f"the token store's data key is kept in the system keyring, but {keyring_problem(kr)}",
                f"run mcprelay where the keyring is available, or remove {self.directory} and log in again",
            )
        try:
            text = kr.get_password(KEYRING_SERVICE, self.keyring_username)
            if text is not None:
                return self._decode_key(text, where)
            if not create:
                return None
            raw = secrets.token_bytes(32)
            kr.set_password(KEYRING_SERVICE, self.keyring_username, base64.b64encode(raw).decode())
            if kr.get_password(KEYRING_SERVICE, self.keyring_username) != base64.b64encode(raw).decode():
                raise RuntimeError("the keyring did not keep the new data key")
            return raw
        except McpRelayError:
            raise
        except Exception as exc:
            raise _unavailable(
                f"could not use the token store's data key in {where}: {type(exc).__name__}: {exc}",
                "unlock or repair the system keyring",
            ) from exc
