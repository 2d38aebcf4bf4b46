"""Capture a stdio upstream's stderr into ``<home>/logs/upstreams/<name>.log``, size-capped with rotation.

A subprocess writes to a file descriptor, not to a Python object, so a size cap cannot be enforced
by handing it a file. The child gets the write end of a pipe instead, and a daemon thread copies
what arrives into the log, rotating it to ``<name>.log.1`` when it would pass the cap. A chatty
server therefore never fills the disk, and a server that blocks writing stderr never stalls the
gateway's event loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mcprelay import paths

MAX_LOG_BYTES = 1024 * 1024


def upstream_log_path(home: Path, name: str) -> Path:
    return home / "logs" / "upstreams" / f"{name}.log"


class RotatingLog:
    """Appends bytes to ``path``; at ``max_bytes`` the file becomes ``path.1`` (one generation kept)."""

    def __init__(self, path: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # An upstream's stderr may print its own secrets: private directory, private file, no symlinks.
        paths.private_dir(path.parent)

    def write(self, data: bytes) -> None:
        with self._lock:
            try:
                size = os.lstat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            paths.append_private(self.path, data[-self.max_bytes :])


def _pump(read_fd: int, log: RotatingLog) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            try:
                chunk = pipe.read(65536)
            except OSError:
                return
            if not chunk:
                return
            with contextlib.suppress(OSError, paths.UnsafePath):
                log.write(chunk)


@contextlib.contextmanager
def captured_stderr(path: Path, max_bytes: int = MAX_LOG_BYTES) -> Iterator[TextIO]:
    """A writable file whose descriptor can be a child's stderr; its output lands in ``path``."""
    log = RotatingLog(path, max_bytes)
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(target=_pump, args=(read_fd, log), name=f"stderr-{path.stem}", daemon=True)
    thread.start()
    writer = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
    try:
        yield writer
    finally:
        # The pump sees end-of-file once the child has exited too; it is a daemon, so never joined.
        with contextlib.suppress(OSError):
            writer.close()


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the log, reading the rotated generation first when needed."""
    out: deque[str] = deque(maxlen=max(lines, 0))
    for candidate in (path.with_name(path.name + ".1"), path):
        if candidate.exists():
            with candidate.open("r", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    out.append(line.rstrip("\n"))
    return list(out)
