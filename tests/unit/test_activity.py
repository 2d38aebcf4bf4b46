"""The activity log: what is recorded comes back, filtered, newest first, pruned, private, from many writers."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mcprelay.activity import ActivityLog, ActivityRecord, activity_path


def rec(n: int, *, server: str = "github", status: str = "ok", arguments: str | None = None) -> ActivityRecord:
    return ActivityRecord(
        request_id=f"req-{n}",
        correlation_id=None if n % 2 else f"corr-{n}",
        server=server,
        tool="search",
        started_at=1_700_000_000.0 + n,
        duration_ms=1.5 * n,
        status=status,
        error_type=None if status == "ok" else "upstream_error",
        request_bytes=10 * n,
        response_bytes=20 * n,
        arguments=arguments,
    )


def test_record_then_query_round_trips_newest_first(home: Path) -> None:
    with ActivityLog(activity_path(home)) as log:
        for n in range(5):
            log.record(rec(n))
        got = log.query()
    assert [r.request_id for r in got] == ["req-4", "req-3", "req-2", "req-1", "req-0"]
    assert got[0] == rec(4)


def test_filters_and_limit(home: Path) -> None:
    with ActivityLog(activity_path(home)) as log:
        for n in range(10):
            log.record(rec(n, server="github" if n % 2 else "linear", status="ok" if n < 8 else "error"))
        assert [r.request_id for r in log.query(request_id="req-3")] == ["req-3"]
        assert log.query(request_id="nope") == []
        linear = log.query(server="linear")
        assert [r.request_id for r in linear] == ["req-8", "req-6", "req-4", "req-2", "req-0"]
        assert [r.request_id for r in log.query(server="github", limit=2)] == ["req-9", "req-7"]
        assert [r.request_id for r in log.query(server="github", request_id="req-7")] == ["req-7"]
        assert log.query(server="github", request_id="req-8") == []
        assert len(log.query(limit=3)) == 3
        assert log.query(request_id="req-8")[0].error_type == "upstream_error"


def test_retention_keeps_only_the_newest_rows(home: Path) -> None:
    with ActivityLog(activity_path(home), retention=5) as log:
        for n in range(12):
            log.record(rec(n))
            if n % 4 == 0:
                log.flush()  # several batches, so pruning happens more than once
        got = log.query(limit=100)
    assert [r.request_id for r in got] == ["req-11", "req-10", "req-9", "req-8", "req-7"]


def test_arguments_are_dropped_unless_configured(home: Path) -> None:
    secret = json.dumps({"password": "hunter2"})
    with ActivityLog(activity_path(home)) as log:
        log.record(rec(1, arguments=secret))
        assert log.query()[0].arguments is None
    assert b"hunter2" not in activity_path(home).read_bytes()

    other = home / "with-args.db"
    with ActivityLog(other, record_arguments=True) as log:
        log.record(rec(1, arguments=secret))
        assert log.query()[0].arguments == secret


def test_file_is_private_and_directory_created_0700(tmp_path: Path) -> None:
    path = tmp_path / "new" / "home" / "activity.db"
    with ActivityLog(path) as log:
        log.record(rec(1))
        log.flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for sidecar in (path.with_name("activity.db-wal"), path.with_name("activity.db-shm")):
        if sidecar.exists():
            assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0


def test_query_before_anything_is_recorded_does_not_create_the_file(home: Path) -> None:
    log = ActivityLog(activity_path(home))
    assert log.query() == []
    log.close()
    assert not activity_path(home).exists()


def test_record_is_cheap_and_close_writes_what_is_queued(home: Path) -> None:
    log = ActivityLog(activity_path(home))
    started = time.perf_counter()
    for n in range(2000):
        log.record(rec(n))
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 0.001  # no disk I/O on the hot path
    log.close()
    log.record(rec(99_999))  # after close: ignored, not an error
    reader = ActivityLog(activity_path(home))
    got = reader.query(limit=1000)
    assert len(got) == 1000 and got[0].request_id == "req-1999"
    assert len(reader.query(limit=5000)) == 2000


def test_many_threads_recording_at_once(home: Path) -> None:
    log = ActivityLog(activity_path(home))
    per_thread, threads = 250, 8

    def work(t: int) -> None:
        for n in range(per_thread):
            log.record(rec(t * per_thread + n, server=f"s{t}"))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        assert len(log.query(limit=10_000)) == per_thread * threads
        assert len(log.query(server="s3", limit=10_000)) == per_thread
    finally:
        log.close()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mcprelay.activity import ActivityLog, ActivityRecord
    log = ActivityLog(Path(sys.argv[1]))
    for n in range(int(sys.argv[3])):
        log.record(ActivityRecord(f"{sys.argv[2]}-{n}", None, sys.argv[2], "t", 0.0, 1.0, "ok", None, 1, 1))
        if n % 50 == 0:
            log.flush()
    log.close()
    """
)


def test_two_processes_write_the_same_database(home: Path) -> None:
    path = activity_path(home)
    count = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)]) for name in ("p1", "p2")]
    # This process writes (and reads) concurrently too, like the CLI next to a running gateway.
    with ActivityLog(path) as log:
        for n in range(count):
            log.record(rec(n, server="main"))
            if n % 50 == 0:
                log.query(limit=1)
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        assert len(log.query(limit=10_000)) == 3 * count
        assert {r.server for r in log.query(limit=10_000)} == {"main", "p1", "p2"}


def test_bad_retention_is_refused(home: Path) -> None:
    with pytest.raises(ValueError):
        ActivityLog(activity_path(home), retention=0)


def run_cli(home: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from mcprelay.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(home), "activity", "list", *args])
    code = exit_info.value.code
    return int(code) if isinstance(code, int) else 1, capsys.readouterr().out


def test_cli_activity_list(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(home, "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == []

    with ActivityLog(activity_path(home)) as log:
        for n in range(6):
            log.record(rec(n, server="github" if n < 3 else "linear", status="ok" if n else "tool_error"))

    code, out = run_cli(home, "--json", capsys=capsys)
    assert code == 0
    rows = json.loads(out)
    assert [r["request_id"] for r in rows] == [f"req-{n}" for n in range(5, -1, -1)]
    assert set(rows[0]) >= {"request_id", "server", "tool", "status", "duration_ms", "started_at"}

    code, out = run_cli(home, "--json", "--server", "github", "--limit", "2", capsys=capsys)
    assert [r["request_id"] for r in json.loads(out)] == ["req-2", "req-1"]

    code, out = run_cli(home, "--json", "--request-id", "req-0", capsys=capsys)
    assert [r["status"] for r in json.loads(out)] == ["tool_error"]

    code, out = run_cli(home, "--server", "linear", capsys=capsys)
    assert code == 0 and "linear" in out and "req-5" in out and "github" not in out


def test_a_database_from_before_logins_were_recorded_gains_the_kind_column(home: Path) -> None:
    import sqlite3

    path = activity_path(home)
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE activity (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, correlation_id TEXT, "
        "server TEXT NOT NULL, tool TEXT NOT NULL, started_at REAL NOT NULL, duration_ms REAL NOT NULL, "
        "status TEXT NOT NULL, error_type TEXT, request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL, "
        "arguments TEXT);"
        "INSERT INTO activity (request_id, server, tool, started_at, duration_ms, status, request_bytes, "
        "response_bytes) VALUES ('old-1', 'github', 'search', 1.0, 2.0, 'ok', 3, 4);"
    )
    conn.commit()
    conn.close()
    path.chmod(0o600)
    with ActivityLog(path) as log:
        (old,) = log.query()
        assert old.request_id == "old-1" and old.kind == "tool_call"
        log.record(ActivityRecord("login-1", "corr", "github", "authorization_code", 5.0, 6.0, "error",
                                  "access_denied", 0, 0, kind="login"))
        assert [r.kind for r in log.query()] == ["login", "tool_call"]
        assert [r.request_id for r in log.query(kind="login")] == ["login-1"]
