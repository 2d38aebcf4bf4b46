"""Shared pieces of the benchmark scenarios: tables, statistics, /proc readings, subprocess helpers.

Nothing here asserts anything: the scenarios measure and print; targets are quoted next to the numbers.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
MCPRELAY = str(Path(PYTHON).with_name("mcprelay"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Table:
    """One markdown table: a title, what it measures, a header row, rows, and notes printed below."""

    title: str
    measures: str
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", self.measures, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


# ---------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        data = fh.read()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` value in kB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


def hwm_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


def children(pid: int) -> list[int]:
    """Direct and indirect child processes of ``pid``."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as fh:
                kids = [int(x) for x in fh.read().split()]
        except OSError:
            kids = []
        out.extend(kids)
        todo.extend(kids)
    return out


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            total += rss_mb(p)
        except OSError:
            pass
    return total


# ---------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Wait until 127.0.0.1:port accepts connections; returns the seconds waited."""
    started = time.monotonic()
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return time.monotonic() - started
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"nothing listening on port {port} after {timeout} s")
        time.sleep(0.01)


def spawn(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A background process with its standard streams closed (its output is not part of the measurement)."""
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def devnull() -> TextIO:
    """A writable sink for a child's stderr (the SDK's stdio client wants a real file)."""
    return open(os.devnull, "w")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate one process we started (by its pid) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class HttpUpstream:
    """The open echo server (``bench/upstream_http.py``) in its own process, so its CPU is not ours."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [PYTHON, str(BENCH / "upstream_http.py"), str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def close(self) -> None:
        stop(self.proc)

    def __enter__(self) -> HttpUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
