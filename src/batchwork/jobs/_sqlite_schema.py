"""SQLite plumbing: URL parsing, connections, versioned migrations, time and error mapping.

Migrations are the files ``sql/sqlite/NNNN_name.sql``, applied in order inside one
``BEGIN IMMEDIATE`` transaction that also reads and writes ``batchwork_schema``; several
processes opening a fresh file at once therefore serialize on SQLite's write lock, and
whichever comes second finds the work done.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from batchwork.errors import StoreError

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
BUSY_TIMEOUT = 10.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def to_us(at: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: batchwork stores need aware datetimes")
    return (at - _EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    """Integer microseconds since the Unix epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(0, 0, us)  # positional: keywords cost ~40 % more here


def opt_from_us(us: int | None) -> datetime | None:
    """:func:`from_us` that lets ``None`` through."""
    return None if us is None else from_us(us)


@contextmanager
def map_errors(action: str) -> Iterator[None]:
    """Turn a ``sqlite3`` error into :class:`StoreError` naming ``action``, cause kept.

    Example::

        with map_errors("enqueue"):
            conn.execute(...)
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite {action} failed: {exc}") from exc


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """The file path and options of ``sqlite:///relative.db`` or ``sqlite:////abs.db``.

    Example::

        parse_url("sqlite:///jobs.db?synchronous=FULL")  # ("jobs.db", {"synchronous": "FULL"})
    """
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix):
        raise ValueError(f"SQLite store URL {url!r} must look like sqlite:///path/to/file.db")
    path, _, query = url[len(prefix) :].partition("?")
    if not path or path == ":memory:":
        raise ValueError(
            f"SQLite store URL {url!r} must name a file (workers in other processes share it)"
        )
    options = {key: values[-1] for key, values in parse_qs(query, strict_parsing=False).items()}
    return path, options


def connect(
    path: str,
    *,
    synchronous: str,
    busy_timeout: float = BUSY_TIMEOUT,
    read_only: bool = False,
    any_thread: bool = False,
) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with our pragmas.

    ``any_thread``: usable from other threads than this one (the caller serializes).
    """
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=not any_thread, cached_statements=256
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
        _enable_wal(conn, busy_timeout)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_inline(path: str, *, synchronous: str) -> sqlite3.Connection:
    """A connection for :class:`~batchwork.jobs._sqlite_thread.InlineWriter`: any thread,
    never waits for a lock, never checkpoints. The file must be in WAL mode already."""
    conn = connect(path, synchronous=synchronous, any_thread=True)
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    # Switching a fresh file to WAL takes an exclusive lock, and some SQLite versions
    # answer "database is locked" at once instead of calling the busy handler when
    # processes race to do it; retry within the busy timeout.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch the journal to WAL (got {mode})")
        return


def migrations() -> list[tuple[int, str]]:
    """Every migration shipped with batchwork as ``(version, sql)``, in order."""
    folder = resources.files("batchwork.jobs").joinpath("sql", "sqlite")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (triggers with inner ``;`` included)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statement = current.strip()
            if statement.strip(";").strip() and not _only_comments(statement):
                statements.append(statement)
            current = ""
    if current.strip() and not _only_comments(current):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def migrate(conn: sqlite3.Connection, *, now_us: int) -> int:
    """Apply the migrations this file lacks, in one transaction; return the final version.

    ``executescript`` is avoided on purpose: it commits first, which would let two
    processes interleave their migrations.
    """
    known = migrations()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS batchwork_schema ("
            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        current = conn.execute("SELECT coalesce(max(version), 0) FROM batchwork_schema")
        version = int(current.fetchone()[0])
        latest = known[-1][0] if known else 0
        if version > latest:
            raise StoreError(
                f"the SQLite store is at schema version {version}, newer than this "
                f"batchwork knows ({latest}); upgrade batchwork"
            )
        for number, script in known:
            if number <= version:
                continue
            for statement in split_statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO batchwork_schema (version, applied_at) VALUES (?, ?)",
                (number, now_us),
            )
            version = number
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version
