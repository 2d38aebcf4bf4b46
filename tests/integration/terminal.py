"""Run a command in a real pseudo-terminal (Linux and macOS), as a person at a terminal would.

The child's stdin, stdout and stderr are the terminal, so ``isatty()`` is true there as it is for a
person: prompts without echo, spinners and the terminal form of errors can be tested for what they
really write.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence


def run_in_terminal(
    argv: Sequence[str], *, env: dict[str, str], typed: bytes = b"", timeout: float = 60, columns: int = 80,
    type_after: bytes | None = None,
) -> tuple[int, str]:
    """(exit code, everything the terminal showed). ``typed`` is typed at once, or when ``type_after`` shows."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"},
                            close_fds=True, start_new_session=True)
    os.close(slave)
    out = bytearray()
    pending = typed
    if type_after is None and pending:
        os.write(master, pending)
        pending = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{argv} did not finish; it showed {out.decode(errors='replace')!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    if proc.poll() is not None:
                        break
                    continue
                out.extend(chunk)
                if pending and type_after is not None and type_after in out:
                    os.write(master, pending)
                    pending = b""
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", errors="replace").replace("\r\n", "\n")
