"""The activity log, in ``<home>/activity.db``: one row per tool call the gateway (or ``mcprelay call``)
forwarded, and per login and refresh — successful or not — so that the request id an error shows
finds what happened (``mcprelay activity list --request-id ID``), whatever it was.

Tool calls are the gateway's hot path, so :meth:`ActivityLog.record` only appends to an in-memory
queue; a background thread writes the queue to SQLite in batches (one transaction per batch) and
prunes the table to the configured retention. The database is in WAL mode with a busy timeout
because several processes open it at once: the gateway writes while ``mcprelay activity list``
reads, and two gateways may share one home.

Tool arguments can hold anything a user typed, including secrets, so they are stored only when the
operator asked for it (``record_arguments=True``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mcprelay import paths

log = logging.getLogger(__name__)

ACTIVITY_DB = "activity.db"
DEFAULT_RETENTION = 10_000

# How long a connection waits for another process's write lock before giving up (milliseconds).
_BUSY_TIMEOUT_MS = 5_000
# Rows written per transaction at most; bigger batches amortise fsync, smaller ones bound latency.
_LINGER = 0.05  # seconds a lone record waits for others to share its transaction
_BATCH = 500
# Records waiting in memory at most; past it new records are dropped (and counted) rather than
# letting a stuck disk grow the gateway's memory without bound.
_MAX_PENDING = 100_000
_WRITE_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    correlation_id TEXT,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    arguments TEXT,
    kind TEXT NOT NULL DEFAULT 'tool_call'
);
CREATE INDEX IF NOT EXISTS activity_request_id ON activity (request_id);
CREATE INDEX IF NOT EXISTS activity_server ON activity (server, id);
"""
_COLUMNS = (
    "request_id, correlation_id, server, tool, started_at, duration_ms, status, error_type, "
    "request_bytes, response_bytes, arguments, kind"
)
_INSERT = f"INSERT INTO activity ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
#: What a row records: a forwarded tool call, a login, or a refresh (a machine grant's renewal too).
KINDS = ("tool_call", "login", "refresh")
# Rows are only ever removed oldest-first, so "the newest N" is "the N highest ids".
_PRUNE = "DELETE FROM activity WHERE id <= (SELECT id FROM activity ORDER BY id DESC LIMIT 1 OFFSET ?)"


@dataclass
class ActivityRecord:
    """One forwarded tool call, login or refresh: who, what, when, how long, how it ended, how big.

    For a login or refresh ``tool`` is empty (or names the grant) and the sizes are 0.
    """

    request_id: str
    correlation_id: str | None
    server: str
    tool: str
    started_at: float
    duration_ms: float
    status: str  # "ok" | "tool_error" | "error"
    error_type: str | None
    request_bytes: int
    response_bytes: int
    arguments: str | None = None
    kind: str = "tool_call"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Flush:
    """A marker put in the queue; the writer sets it once everything queued before it is written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop(_Flush):
    """Like :class:`_Flush`, and then the writer thread ends."""

    __slots__ = ()


class ActivityLog:
    """Records tool calls without blocking the caller, and answers queries about them."""

    def __init__(self, path: Path, *, retention: int = DEFAULT_RETENTION, record_arguments: bool = False) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self.path = Path(path)
        self.retention = retention
        self.record_arguments = record_arguments
        self.dropped = 0
        self.recorded = 0  # records this instance was given: the web page's cue that there is something new
        self._queue: queue.SimpleQueue[ActivityRecord | _Flush] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._prepared = False
        self._closed = False

    # -- the hot path -------------------------------------------------------------------------

    def record(self, rec: ActivityRecord) -> None:
        """Queue one record; never touches the disk and never blocks (safe from any thread or task)."""
        if self._closed:
            return
        self.recorded += 1
        if self._writer is None:
            self._start_writer()
        if self._queue.qsize() >= _MAX_PENDING:
            self.dropped += 1
            return
        self._queue.put(rec)

    # -- reading and lifecycle ----------------------------------------------------------------

    def query(
        self, *, request_id: str | None = None, server: str | None = None, limit: int = 100,
        kind: str | None = None,
    ) -> list[ActivityRecord]:
        """Newest (most recently recorded) first; includes everything this instance recorded before the call."""
        self.flush()
        if not self.path.exists():
            # Reading must not create the database: `activity list` before the first call is empty.
            return []
        where: list[str] = []
        params: list[Any] = []
        if request_id is not None:
            where.append("request_id = ?")
            params.append(request_id)
        if server is not None:
            where.append("server = ?")
            params.append(server)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_COLUMNS} FROM activity"  # noqa: S608 - only fixed column and clause text
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))
        conn = self._connect()
        try:
            _migrate(conn)
            rows = conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()
        return [ActivityRecord(*row) for row in rows]

    def write_now(self, records: list[ActivityRecord]) -> None:
        """Write ``records`` on the calling thread, in one transaction (for one-off writers, not the gateway)."""
        conn = self._open_for_writing()
        if conn is None:
            return
        try:
            self._write(conn, records)
        finally:
            conn.close()

    def flush(self) -> None:
        """Return once every record queued before this call is committed (or given up on)."""
        writer = self._writer
        if writer is None or not writer.is_alive():
            self._drain_inline()
            return
        marker = _Flush()
        self._queue.put(marker)
        while not marker.done.wait(0.5):
            if not writer.is_alive():
                self._drain_inline()
                return

    def close(self) -> None:
        """Write what is queued and stop the writer thread; later records are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if writer is not None and writer.is_alive():
            stop = _Stop()
            self._queue.put(stop)
            writer.join(timeout=30)
        self._drain_inline()

    def __enter__(self) -> ActivityLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer ---------------------------------------------------------------------------

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="mcprelay-activity", daemon=True)
            self._writer = thread
            thread.start()
        # Records still queued when the interpreter exits would be lost with the daemon thread.
        atexit.register(self.close)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                item = self._queue.get()
                batch: list[ActivityRecord] = []
                markers: list[_Flush] = []
                # Linger briefly for company: one transaction (and one prune) per burst of calls rather
                # than per call. A flush or a stop ends the wait at once.
                deadline = time.monotonic() + _LINGER
                while True:
                    if isinstance(item, _Flush):
                        markers.append(item)
                    else:
                        batch.append(item)
                    if len(batch) >= _BATCH:
                        break
                    wait = 0.0 if markers else deadline - time.monotonic()
                    try:
                        item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                try:
                    if batch:
                        if conn is None:
                            conn = self._open_for_writing()
                        if conn is not None:
                            self._write(conn, batch)
                        else:
                            log.warning("activity log %s unavailable; %d records lost", self.path, len(batch))
                except Exception:
                    # The writer must outlive any surprise, or every later record would pile up unwritten.
                    log.exception("activity log %s: %d records lost", self.path, len(batch))
                finally:
                    for marker in markers:
                        marker.done.set()
                stop = any(isinstance(m, _Stop) for m in markers)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _drain_inline(self) -> None:
        """Write whatever is queued from the calling thread (the writer is gone or never started)."""
        batch: list[ActivityRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Flush):
                item.done.set()
            else:
                batch.append(item)
        if not batch:
            return
        conn = self._open_for_writing()
        if conn is None:
            return
        try:
            self._write(conn, batch)
        finally:
            conn.close()

    def _open_for_writing(self) -> sqlite3.Connection | None:
        try:
            return self._connect(create=True)
        except (OSError, sqlite3.Error, paths.UnsafePath) as exc:
            log.warning("cannot open activity log %s: %s", self.path, exc)
            return None

    def _write(self, conn: sqlite3.Connection, batch: list[ActivityRecord]) -> None:
        keep_arguments = self.record_arguments
        rows: list[tuple[Any, ...]] = []
        for r in batch:
            try:
                rows.append(
                    (
                        str(r.request_id),
                        r.correlation_id,
                        str(r.server),
                        str(r.tool),
                        float(r.started_at),
                        float(r.duration_ms),
                        str(r.status),
                        r.error_type,
                        int(r.request_bytes),
                        int(r.response_bytes),
                        r.arguments if keep_arguments else None,
                        str(getattr(r, "kind", "tool_call") or "tool_call"),
                    )
                )
            except (TypeError, ValueError):
                # One malformed record must not cost the batch (or the writer thread) its life.
                log.warning("activity log: malformed record for request %r dropped", getattr(r, "request_id", None))
        if not rows:
            return
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_INSERT, rows)
                    conn.execute(_PRUNE, (self.retention,))
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                return
            except sqlite3.Error as exc:
                if attempt == _WRITE_ATTEMPTS:
                    log.warning("activity log %s: %d records lost: %s", self.path, len(rows), exc)
                    return
                time.sleep(0.05 * attempt)

    # -- the database -------------------------------------------------------------------------

    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        if create:
            self._prepare_file()
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if create and not self._prepared:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                _migrate(conn)
                self._prepared = True
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare_file(self) -> None:
        """Create the directory (0700) and the database file (0600) before SQLite does, with umask's modes.

        SQLite opens the file itself (following symlinks) and gives its ``-wal``/``-shm``/``-journal``
        files the database's mode, so the database is created here without following a symlink, and
        a symlink where one of its side files goes is refused (``paths.UnsafePath``) before SQLite runs.
        """
        if self._prepared:
            return
        paths.private_dir(self.path.parent)
        paths.touch_private(self.path)
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            if side.is_symlink():
                raise paths.UnsafePath(side, "is a symbolic link; SQLite would write through it")


def _migrate(conn: sqlite3.Connection) -> None:
    """A database written before logins and refreshes were recorded gets the ``kind`` column (all its
    rows were tool calls). Idempotent, and safe when two processes do it at once."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(activity)")}
    if columns and "kind" not in columns:
        try:
            conn.execute("ALTER TABLE activity ADD COLUMN kind TEXT NOT NULL DEFAULT 'tool_call'")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


def record_now(home: Path, record: ActivityRecord) -> None:
    """Write one record from a command that is not the gateway (a login, a refresh, ``mcprelay call``):
    at once, on the calling thread, never raising — the activity log must not break what it records."""
    try:
        ActivityLog(activity_path(home)).write_now([record])
    except Exception:  # a broken database is logged, never raised into a login
        log.warning("could not write the activity record for %s", record.request_id, exc_info=True)


def activity_path(home: Path) -> Path:
    """Where the gateway writes and the CLI reads the activity log."""
    return home / ACTIVITY_DB
