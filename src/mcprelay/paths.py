"""Where mcprelay keeps its files (``--home`` / ``MCPRELAY_HOME`` / the platform data dir), and how it writes them.

The home holds live credentials (the token file store, the gateway's owner key) and what reveals
them (logs, activity), so it must be the user's own:

* :func:`resolve_home` creates it ``0700`` and refuses (exit 2) a home owned by another user or
  writable by group or others — anyone who can write there can plant files or symlinks in it;
* every file written through this module is ``0600``, created without following a symlink
  (``O_NOFOLLOW`` on the last component; directories are checked with ``lstat``), and checked on
  the open descriptor to be a regular file owned by the user: :func:`write_private` (atomic
  replace: a temporary file created exclusively, fsynced, renamed over the target — a rename
  replaces a planted symlink instead of writing through it), :func:`append_private`,
  :func:`read_private`, :func:`private_dir`, :func:`touch_private`.

POSIX (Linux, macOS) only in what it checks: Windows has no owner uid, mode bits or
``O_NOFOLLOW``; there the home under ``%LOCALAPPDATA%`` is private to the user by its ACL, files are
written the same way (atomic replace) and the ownership and mode checks are skipped.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from mcprelay.errors import ErrorType, McpRelayError

POSIX = sys.platform != "win32"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafePath(McpRelayError):
    """A file or directory mcprelay would write is not safely the user's (a symlink, another owner, a device)."""

    def __init__(self, path: Path, why: str, suggestion: str = "") -> None:
        super().__init__(
            ErrorType.USAGE_ERROR,
            f"{path}: {why}",
            suggestion=suggestion or f"remove {path} (mcprelay recreates it), or use another --home",
            details={"path": str(path)},
        )


def _euid() -> int:
    return os.geteuid() if POSIX else -1


def resolve_home(option: str | None) -> Path:
    """The home for this run, created ``0700`` if missing and refused (exit 2) when it is not the user's."""
    if option:
        home = Path(option)
    elif os.environ.get("MCPRELAY_HOME"):
        home = Path(os.environ["MCPRELAY_HOME"])
    else:
        import platformdirs

        home = Path(platformdirs.user_data_dir("mcprelay"))
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_home(home)
    return home


def check_home(home: Path) -> None:
    """Refuse a home owned by another user, or writable by group or others (POSIX; see the module docstring)."""
    if not POSIX:
        return
    info = os.stat(home)
    if not stat.S_ISDIR(info.st_mode):
        raise McpRelayError(ErrorType.USAGE_ERROR, f"the mcprelay home {home} is not a directory",
                            suggestion="point --home / MCPRELAY_HOME at a directory of your own")
    if info.st_uid != _euid():
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"the mcprelay home {home} belongs to uid {info.st_uid}, not to you (uid {_euid()}): "
            "its owner could read your tokens or plant files in it",
            suggestion="use a home of your own (--home / MCPRELAY_HOME), e.g. the default one",
            details={"path": str(home), "owner_uid": info.st_uid},
        )
    if info.st_mode & 0o022:
        who = {0o022: "its group and others", 0o020: "its group", 0o002: "others"}[info.st_mode & 0o022]
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"the mcprelay home {home} is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o}): "
            "another user could plant files or symlinks in it",
            suggestion=f"chmod 700 {home}",
            details={"path": str(home), "mode": f"{stat.S_IMODE(info.st_mode):04o}"},
        )


def private_dir(path: Path) -> Path:
    """``path`` as a directory of the user's own, created ``0700`` (with its parents) if missing.

    A symlink, a non-directory or another user's directory is refused with :class:`UnsafePath`; a
    directory of ours that others may enter is narrowed to ``0700``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        pass  # a non-directory: reported below
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(path, "is a symbolic link; mcprelay writes only into directories of its own")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(path, "is not a directory")
    if POSIX:
        if info.st_uid != _euid():
            raise UnsafePath(path, f"belongs to uid {info.st_uid}, not to you")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
    return path


def _checked(fd: int, path: Path) -> int:
    """``fd`` after checking it is a regular file of ours, narrowed to ``0600``; closed and refused otherwise."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(path, "is not a regular file")
        if POSIX:
            if info.st_uid != _euid():
                raise UnsafePath(path, f"belongs to uid {info.st_uid}, not to you")
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _BINARY, 0o600)
    except OSError as exc:
        if POSIX and os.path.islink(path):  # O_NOFOLLOW refused it (ELOOP, or EMLINK on some BSDs)
            raise UnsafePath(path, "is a symbolic link; mcprelay does not write through links") from None
        raise exc
    return _checked(fd, path)


def append_private(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created ``0600``), never through a symlink."""
    fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def touch_private(path: Path) -> None:
    """Make sure ``path`` exists as a ``0600`` regular file of ours (for files a library opens itself)."""
    os.close(_open(path, os.O_RDWR | os.O_CREAT))


def read_private(path: Path, max_bytes: int = 1024 * 1024) -> bytes | None:
    """The content of ``path`` (at most ``max_bytes``), None when it does not exist; never through a symlink."""
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafePath(path, f"is larger than {max_bytes} bytes; it is not a file mcprelay wrote")
    return data


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Replace ``path`` with ``data`` atomically, ``0600``; with ``exclusive`` only if it does not exist yet.

    Returns whether this call wrote it (``exclusive``: False when another process got there first —
    then its content stands, complete, because the file only ever appears whole).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if anything (a file, a link) is already there
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create-if-absent with a (tiny) race instead
            if os.path.lexists(path):
                return False
            os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
