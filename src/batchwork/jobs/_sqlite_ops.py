"""The SQL of the SQLite store: plain functions of a connection, run on its thread.

Each function is one step inside a transaction opened by the caller (writes) or a plain
read. Status changes name the statuses they leave in their ``WHERE`` clause, so a row in
any other state is left alone, and they only write statuses ``ALLOWED_TRANSITIONS``
allows from those (no trigger checks this since schema version 2: the guards do).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._model import (
    ENDED_STATUSES,
    CancelResult,
    Claimed,
    Heartbeat,
    Job,
    JobStatus,
    JobType,
    NewJob,
    Recovery,
    WorkerInfo,
)
from ._sqlite_schema import from_us, to_us

JOB_COLUMNS = (
    "id, name, type, status, payload, result, error, attempts, tag, priority, worker_id,"
    " conflict_id, scheduled_for, created_at, started_at, ended_at, updated_at, duration,"
    " unique_key, resumable, max_crashes, crashes, cancel_requested"
)
ACTIVE_SQL = "('pending', 'running', 'paused')"
CLAIMABLE_SQL = "('pending', 'paused')"

_STATUS = {status.value: status for status in JobStatus}
_TYPE = {kind.value: kind for kind in JobType}
_INSERTABLE = frozenset({JobStatus.PENDING, JobStatus.SKIPPED, JobStatus.MISSED})

_INSERT = (
    "INSERT INTO batchwork_jobs (name, type, status, payload, error, tag, priority,"
    " conflict_id, scheduled_for, created_at, ended_at, updated_at, unique_key, resumable,"
    " max_crashes, tick_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _extract(i: int) -> str:
    return f"json_extract(value, '$[{i}]')"


# Plain jobs (see _is_plain) as one JSON document of _plain_row lists: the columns that
# are the same for every plain row are constants or parameters, not extracted per row
# (each json_extract is most of a row's cost: 16 per row took 2.2x the time of these 8).
_INSERT_PLAIN_JSON = (
    _INSERT.split(" VALUES ")[0]
    + f" SELECT {_extract(0)}, 'job', 'pending', {_extract(1)}, {_extract(2)}, {_extract(3)},"
    + f" {_extract(4)}, NULL, {_extract(5)}, ?2, NULL, ?2, NULL, {_extract(6)}, {_extract(7)},"
    + " NULL FROM json_each(?1) ORDER BY key"
)


class _Instants(dict[int | None, Any]):
    """Instants by microseconds, built once each: rows claimed or enqueued together
    share most of them, and building datetimes is much of a row's cost."""

    def __missing__(self, us: int) -> datetime:
        at = self[us] = from_us(us)
        return at


def rows_to_jobs(rows: Sequence[Sequence[Any]], *, decoded: bool = False) -> list[Job]:
    """``SELECT JOB_COLUMNS`` rows as :class:`Job` records (``decoded``: payload and
    result are already decoded, as in a JSON row); later columns are ignored."""
    times = _Instants({None: None})
    kinds, statuses = _TYPE, _STATUS
    loads = _load_json if not decoded else _as_is
    # One comprehension, positional arguments in Job's field order: per row, every call
    # and keyword costs.
    return [
        Job(
            row[0],
            row[1],
            kinds[row[2]],
            statuses[row[3]],
            loads(row[4]),
            loads(row[5]),
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            row[11],
            times[row[12]],
            times[row[13]],
            times[row[14]],
            times[row[15]],
            times[row[16]],
            row[17],
            row[18],
            row[19] == 1,
            row[20],
            row[21],
            row[22] == 1,
        )
        for row in rows
    ]


def row_to_job(row: Sequence[Any]) -> Job:
    """One ``SELECT JOB_COLUMNS`` row as a :class:`Job` (later columns are ignored)."""
    return rows_to_jobs([row])[0]


def _load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _as_is(value: Any) -> Any:
    return value


# -- producing -----------------------------------------------------------------------------
def enqueue(conn: sqlite3.Connection, jobs: Sequence[NewJob], now_us: int) -> list[int | None]:
    """Insert ``jobs``; plain ones in runs through ``executemany`` (the fast path)."""
    ids: list[int | None] = []
    plain: list[NewJob] = []
    for job in jobs:
        if job.status not in _INSERTABLE:
            raise ValueError(f"a new job cannot start {job.status}: use pending")
        if _is_plain(job):
            plain.append(job)
            continue
        _insert_plain(conn, plain, ids, now_us)
        ids.append(_insert_special(conn, job, now_us))
    _insert_plain(conn, plain, ids, now_us)
    return ids


def _is_plain(job: NewJob) -> bool:
    return (
        job.type is JobType.JOB
        and job.status is JobStatus.PENDING
        and job.unique_key is None
        and not job.exclusive
    )


def _insert_plain(
    conn: sqlite3.Connection, rows: list[NewJob], ids: list[int | None], now_us: int
) -> None:
    if not rows:
        return
    if len(rows) == 1:
        params = _insert_params(rows[0], now_us, JobStatus.PENDING, None)
        ids.append(conn.execute(_INSERT, params).lastrowid)  # no RETURNING row to step to
        rows.clear()
        return
    # One statement over a JSON document rather than executemany: sqlite3 re-takes the
    # GIL after every row, and each time may wait for a busy event loop.
    document = json.dumps([_plain_row(job) for job in rows])
    conn.execute(_INSERT_PLAIN_JSON, (document, now_us))
    # We hold the write lock and ids come from AUTOINCREMENT, so the rows of one insert
    # get consecutive ids, in document order, ending at the last inserted one.
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    ids.extend(range(last - len(rows) + 1, last + 1))
    rows.clear()


def _plain_row(job: NewJob) -> list[Any]:
    # The varying columns of a plain job, in _INSERT_PLAIN_JSON's order.
    return [
        job.name,
        job.payload_json,
        job.error,
        job.tag,
        job.priority,
        to_us(job.scheduled_for),
        int(job.resumable),
        job.max_crashes,
    ]


def _insert_params(
    job: NewJob, now_us: int, status: JobStatus, conflict_id: int | None
) -> tuple[Any, ...]:
    scheduled = to_us(job.scheduled_for)
    return (
        job.name,
        job.type.value,
        status.value,
        job.payload_json,
        job.error,
        job.tag,
        job.priority,
        conflict_id,
        scheduled,
        now_us,
        now_us if status in ENDED_STATUSES else None,
        now_us,
        job.unique_key,
        int(job.resumable),
        job.max_crashes,
        scheduled if job.type is JobType.CRON_TASK else None,
    )


def _insert_special(conn: sqlite3.Connection, job: NewJob, now_us: int) -> int | None:
    status, conflict_id = job.status, None
    if status is JobStatus.PENDING and job.unique_key is not None:
        row = conn.execute(
            f"SELECT id FROM batchwork_jobs WHERE unique_key = ? AND status IN {ACTIVE_SQL}",
            (job.unique_key,),
        ).fetchone()
        if row is not None:
            return int(row[0])
    if status is JobStatus.PENDING and job.exclusive:
        row = conn.execute(
            "SELECT id FROM batchwork_jobs"
            f" WHERE name = ? AND status IN {ACTIVE_SQL} ORDER BY id LIMIT 1",
            (job.name,),
        ).fetchone()
        if row is not None:
            status, conflict_id = JobStatus.SKIPPED, int(row[0])
    params = _insert_params(job, now_us, status, conflict_id)
    # DO NOTHING: a cron tick already recorded (by any worker) is not an error.
    row = conn.execute(_INSERT + " ON CONFLICT DO NOTHING RETURNING id", params).fetchone()
    return None if row is None else int(row[0])


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits (never for this connection's own)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


# -- working -------------------------------------------------------------------------------
def register_worker(conn: sqlite3.Connection, worker: WorkerInfo) -> None:
    """Insert or replace a worker row."""
    conn.execute(
        "INSERT OR REPLACE INTO batchwork_workers (id, hostname, pid, tags, concurrency,"
        " lease_timeout, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            worker.id,
            worker.hostname,
            worker.pid,
            None if worker.tags is None else json.dumps(list(worker.tags)),
            worker.concurrency,
            worker.lease_timeout,
            to_us(worker.started_at),
            to_us(worker.heartbeat_at),
        ),
    )


def unregister_worker(conn: sqlite3.Connection, worker_id: str) -> None:
    """Delete a worker row."""
    conn.execute("DELETE FROM batchwork_workers WHERE id = ?", (worker_id,))


def _claim_set(worker_id: str, now_us: int) -> tuple[str, list[Any]]:
    lease = secrets.token_hex(8)
    sql = (
        "UPDATE batchwork_jobs SET status = 'running', worker_id = ?, lease = ?,"
        " attempts = attempts + 1, started_at = coalesce(started_at, ?), claimed_at = ?,"
        " claimed_from = status, updated_at = ?"
    )
    return sql, [worker_id, lease, now_us, now_us, now_us]


def due_jobs_sql(tags: Sequence[str] | None) -> str:
    """The ids of due jobs in claim order (parameters: now, [tags as JSON], limit)."""
    tag_filter = ""
    if tags is not None:
        tag_filter = " AND (tag IS NULL OR tag IN (SELECT value FROM json_each(?)))"
    # INDEXED BY: without statistics the planner may prefer the status index and sort
    # every due row; the due index yields them in order and stops at LIMIT.
    return (
        "SELECT id FROM batchwork_jobs INDEXED BY batchwork_jobs_due"
        f" WHERE status IN {CLAIMABLE_SQL} AND scheduled_for <= ?{tag_filter}"
        " ORDER BY priority DESC, scheduled_for, id LIMIT ?"
    )


def claim_update(
    worker_id: str, tags: Sequence[str] | None, limit: int, now_us: int
) -> tuple[str, list[Any], str]:
    """The ``UPDATE`` that claims up to ``limit`` due jobs, its parameters and the lease."""
    sql, params = _claim_set(worker_id, now_us)
    lease = params[1]
    params.append(now_us)
    if tags is not None:
        params.append(json.dumps(list(tags)))
    params.append(limit)
    return f"{sql} WHERE id IN ({due_jobs_sql(tags)})", params, lease


def claim_job(conn: sqlite3.Connection, worker_id: str, job_id: int, now_us: int) -> Claimed | None:
    """Take one pending or paused job, due or not."""
    sql, params = _claim_set(worker_id, now_us)
    row = conn.execute(
        f"{sql} WHERE id = ? AND status IN {CLAIMABLE_SQL} RETURNING {JOB_COLUMNS}, lease",
        [*params, job_id],
    ).fetchone()
    return None if row is None else Claimed(row_to_job(row), row[23])


_FENCE = " WHERE id = ? AND worker_id = ? AND lease = ? AND status = 'running'"


def release(
    conn: sqlite3.Connection, worker_id: str, leases: Sequence[tuple[int, str]], now_us: int
) -> None:
    """Undo claims whose handler never started (status, attempts and first start)."""
    conn.executemany(
        "UPDATE batchwork_jobs SET status = coalesce(claimed_from, 'pending'),"
        " attempts = attempts - 1,"
        " started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,"
        " worker_id = NULL, lease = NULL, updated_at = ?" + _FENCE,
        [(now_us, job_id, worker_id, lease) for job_id, lease in leases],
    )


def heartbeat(
    conn: sqlite3.Connection, worker_id: str, now_us: int, running: Sequence[int]
) -> Heartbeat:
    """Renew the worker's lease and report cancellation requests."""
    cursor = conn.execute(
        "UPDATE batchwork_workers SET heartbeat_at = max(heartbeat_at, ?) WHERE id = ?",
        (now_us, worker_id),
    )
    if not cursor.rowcount:
        return Heartbeat(alive=False)
    if not running:
        return Heartbeat(alive=True)
    rows = conn.execute(
        "SELECT id FROM batchwork_jobs WHERE worker_id = ? AND status = 'running'"
        " AND cancel_requested = 1 AND id IN (SELECT value FROM json_each(?)) ORDER BY id",
        (worker_id, json.dumps(list(running))),
    ).fetchall()
    return Heartbeat(alive=True, cancel_ids=tuple(row[0] for row in rows))


def recover(conn: sqlite3.Connection, now_us: int) -> Recovery:
    """Declare expired workers dead and deal with their jobs and hooks."""
    dead = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM batchwork_workers"
            " WHERE heartbeat_at + CAST(lease_timeout * 1000000 AS INTEGER) < ? ORDER BY id",
            (now_us,),
        )
    ]
    if not dead:
        return Recovery()
    dead_json = json.dumps(dead)
    in_dead = "(SELECT value FROM json_each(?))"
    conn.execute(f"DELETE FROM batchwork_workers WHERE id IN {in_dead}", (dead_json,))
    resumed = conn.execute(
        "UPDATE batchwork_jobs SET status = 'pending', crashes = crashes + 1,"
        " worker_id = NULL, lease = NULL, updated_at = ?"
        f" WHERE status = 'running' AND worker_id IN {in_dead}"
        " AND resumable = 1 AND crashes < max_crashes RETURNING id",
        (now_us, dead_json),
    ).fetchall()
    crashed = conn.execute(
        "UPDATE batchwork_jobs SET status = 'crashed', crashes = crashes + 1,"
        " error = 'crashed: worker ' || worker_id || ' stopped heartbeating'"
        " || CASE WHEN resumable = 1 THEN ' (crashed ' || (crashes + 1) || ' times, the"
        " limit is ' || max_crashes || ')' ELSE '' END,"
        " ended_at = ?, duration = (? - claimed_at) / 1e6, lease = NULL, updated_at = ?,"
        " exit_hook = 'due', exit_hook_worker = NULL"
        f" WHERE status = 'running' AND worker_id IN {in_dead} RETURNING {JOB_COLUMNS}",
        (now_us, now_us, now_us, dead_json),
    ).fetchall()
    conn.execute(
        "UPDATE batchwork_jobs SET exit_hook = 'due', exit_hook_worker = NULL"
        f" WHERE exit_hook = 'taken' AND exit_hook_worker IN {in_dead}",
        (dead_json,),
    )
    return Recovery(
        crashed=tuple(sorted(rows_to_jobs(crashed), key=lambda job: job.id)),
        resumed=tuple(sorted(row[0] for row in resumed)),
        dead_workers=tuple(dead),
    )


def claim_exit_hooks(
    conn: sqlite3.Connection, worker_id: str, names: Sequence[str], limit: int
) -> list[Job]:
    """Mark due hooks of these names as taken by this worker; oldest jobs first."""
    if limit < 1 or not names:
        return []
    rows = conn.execute(
        "UPDATE batchwork_jobs SET exit_hook = 'taken', exit_hook_worker = ?"
        " WHERE id IN (SELECT id FROM batchwork_jobs WHERE exit_hook IN ('due', 'taken')"
        " AND exit_hook = 'due' AND name IN (SELECT value FROM json_each(?))"
        f" ORDER BY id LIMIT ?) RETURNING {JOB_COLUMNS}",
        (worker_id, json.dumps(list(names)), limit),
    ).fetchall()
    return sorted(rows_to_jobs(rows), key=lambda job: job.id)


def finish_exit_hooks(conn: sqlite3.Connection, worker_id: str, job_ids: Sequence[int]) -> None:
    """Mark hooks taken by this worker as done."""
    conn.execute(
        "UPDATE batchwork_jobs SET exit_hook = 'done', exit_hook_worker = NULL"
        " WHERE exit_hook = 'taken' AND exit_hook_worker = ?"
        " AND id IN (SELECT value FROM json_each(?))",
        (worker_id, json.dumps(list(job_ids))),
    )


# -- control -------------------------------------------------------------------------------
def cancel(conn: sqlite3.Connection, job_id: int, now_us: int) -> CancelResult | None:
    """Cancel one job; ``None`` when it does not exist."""
    row = conn.execute("SELECT status FROM batchwork_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    status = _STATUS[row[0]]
    if status in (JobStatus.PENDING, JobStatus.PAUSED):
        conn.execute(
            "UPDATE batchwork_jobs SET status = 'cancelled', ended_at = ?, updated_at = ?,"
            " exit_hook = 'due', exit_hook_worker = NULL"
            f" WHERE id = ? AND status IN {CLAIMABLE_SQL}",
            (now_us, now_us, job_id),
        )
        return CancelResult.CANCELLED
    if status is JobStatus.RUNNING:
        conn.execute(
            "UPDATE batchwork_jobs SET cancel_requested = 1, updated_at = ?"
            " WHERE id = ? AND status = 'running'",
            (now_us, job_id),
        )
        return CancelResult.REQUESTED
    return CancelResult.ALREADY_ENDED


_ENDED_SQL = "(" + ", ".join(f"'{status.value}'" for status in sorted(ENDED_STATUSES)) + ")"


def retry(conn: sqlite3.Connection, job_id: int, now_us: int) -> bool | None:
    """Put an ended job back to pending; ``None`` when it does not exist."""
    cursor = conn.execute(
        "UPDATE batchwork_jobs SET status = 'pending', scheduled_for = ?, ended_at = NULL,"
        " result = NULL, worker_id = NULL, lease = NULL, conflict_id = NULL, crashes = 0,"
        " cancel_requested = 0, exit_hook = 'none', exit_hook_worker = NULL, updated_at = ?,"
        # the key may belong to a newer active job by now: that one keeps it
        " unique_key = CASE WHEN EXISTS (SELECT 1 FROM batchwork_jobs AS a"
        "  WHERE a.unique_key = batchwork_jobs.unique_key"
        f"  AND a.status IN {ACTIVE_SQL}) THEN NULL ELSE unique_key END"
        f" WHERE id = ? AND status IN {_ENDED_SQL}",
        (now_us, now_us, job_id),
    )
    if cursor.rowcount:
        return True
    exists = conn.execute("SELECT 1 FROM batchwork_jobs WHERE id = ?", (job_id,)).fetchone()
    return None if exists is None else False


def purge(conn: sqlite3.Connection, ended_before_us: int, chunk: int) -> int:
    """Delete up to ``chunk`` ended jobs that ended before this instant."""
    return conn.execute(
        "DELETE FROM batchwork_jobs WHERE id IN (SELECT id FROM batchwork_jobs"
        f" INDEXED BY batchwork_jobs_ended WHERE ended_at < ? AND status IN {_ENDED_SQL}"
        " LIMIT ?)",
        (ended_before_us, chunk),
    ).rowcount
