"""A wire tap for stdio MCP: ``python tap.py LOG -- COMMAND ARGS...`` runs COMMAND and copies every line
between its stdin/stdout and ours, logging each with a timestamp and its direction.

The matrix puts it in front of stdio upstreams and of ``mcprelay serve --stdio`` when ``MATRIX_TAP=1``,
so a failing cell's directory holds the JSON-RPC exchanged on each hop (client → gateway → upstream):
what was sent and what came back, in order. Standard library only; stderr is inherited.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import IO


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: tap.py LOG -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    log_path, command = sys.argv[1], sys.argv[3:]
    t0 = time.monotonic()
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")

    def note(direction: str, line: bytes) -> None:
        with lock:
            log.write(f"{time.monotonic() - t0:9.3f} {direction} {line.decode(errors='replace').rstrip()}\n")
            log.flush()

    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None

    def forward(signum: int, frame: object) -> None:  # a client stopping its server stops the real one
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def pump(source: IO[bytes], sink: IO[bytes], direction: str, close_sink: bool) -> None:
        for line in iter(source.readline, b""):
            note(direction, line)
            try:
                sink.write(line)
                sink.flush()
            except (BrokenPipeError, ValueError):
                break
        note(direction, b"<EOF>")
        if close_sink:
            try:
                sink.close()
            except (BrokenPipeError, OSError):
                pass

    down = threading.Thread(target=pump, args=(sys.stdin.buffer, child.stdin, "->", True), daemon=True)
    up = threading.Thread(target=pump, args=(child.stdout, sys.stdout.buffer, "<-", False), daemon=True)
    down.start()
    up.start()
    code = child.wait()
    up.join(2)
    log.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
