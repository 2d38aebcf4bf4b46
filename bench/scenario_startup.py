"""Scenario 4 — start-up: wall time of short CLI commands over repeated runs.

Each command runs as a fresh process (``os.wait4`` gives its CPU time and peak RSS). ``auth
status`` reads a one-server config and an empty home: with ``token_store: file``, and with the
default ``auto`` store, which first checks whether a real system keyring answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import MCPRELAY, PYTHON, Table, median

TIME = shutil.which("time", path="/usr/bin:/bin")


def _once(command: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MB, exit code) of one run.

    The command runs under ``/usr/bin/time`` when there is one: a child forked straight from this
    (large) benchmark process would report this process's RSS as its own peak.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = [TIME, "-f", "%M %U %S", "-o", report.name, *command] if TIME else command
        started = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if TIME:
            fields = report.read().split()[-3:]
            return wall, float(fields[1]) + float(fields[2]), int(fields[0]) / 1024, proc.returncode
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


async def run(quick: bool) -> list[Table]:
    runs = 5 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = {"url": "http://127.0.0.1:9/mcp"}
        file_cfg = home / "file.json"
        file_cfg.write_text(json.dumps({"token_store": "file", "mcpServers": {"github": server}}))
        auto_cfg = home / "auto.json"
        auto_cfg.write_text(json.dumps({"mcpServers": {"github": server}}))
        base = [MCPRELAY, "--home", str(home)]
        commands = [
            ("python -c pass (interpreter floor)", [PYTHON, "-c", "pass"]),
            ("python -c 'import mcp.client.client' (SDK import)", [PYTHON, "-c", "import mcp.client.client"]),
            ("mcprelay --help", [MCPRELAY, "--help"]),
            ("mcprelay auth status (token_store file)", [*base, "--config", str(file_cfg), "auth", "status"]),
            ("mcprelay auth status (token_store auto)", [*base, "--config", str(auto_cfg), "auth", "status"]),
            ("mcprelay auth status --json (file)", [*base, "--config", str(file_cfg), "auth", "status", "--json"]),
        ]
        rows: list[list[object]] = []
        for label, command in commands:
            _once(command)  # warm the page cache and .pyc files
            samples = [_once(command) for _ in range(runs)]
            walls = [s[0] * 1000 for s in samples]
            rows.append([label, round(median(walls)), round(min(walls)), round(max(walls)),
                         round(median([s[1] * 1000 for s in samples])), round(median([s[2] for s in samples]), 1),
                         ",".join(sorted({str(s[3]) for s in samples}))])
    return [Table(
        "4. Start-up",
        f"Fresh process per run, {runs} runs after one warm-up; wall and CPU (user+sys) in ms, peak RSS "
        "(`/usr/bin/time` %M). Target: `auth status` ≤ 300 ms.",
        ["command", "median ms", "min ms", "max ms", "CPU ms", "peak RSS MB", "exit"],
        rows,
    )]
