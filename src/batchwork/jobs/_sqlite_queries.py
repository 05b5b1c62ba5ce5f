"""The SQL of the SQLite store, continued: crons and read-only queries."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from ._model import (
    CronSpec,
    CronState,
    Job,
    JobStatus,
    NewJob,
    TimelinePoint,
    WorkerInfo,
)
from ._sqlite_ops import JOB_COLUMNS, enqueue, row_to_job, rows_to_jobs
from ._sqlite_schema import from_us

# Which ended statuses count as failures in the throughput timeline.
FAILED_SQL = "('errored', 'timed_out', 'crashed')"


# -- crons ---------------------------------------------------------------------------------
def reconcile_crons(conn: sqlite3.Connection, specs: Sequence[CronSpec], now_us: int) -> None:
    """Make the stored crons match ``specs``."""
    stored = {
        row[0]: (row[1], row[2])
        for row in conn.execute("SELECT name, expression, timezone FROM batchwork_crons")
    }
    wanted = {spec.name: spec for spec in specs}
    for name in stored.keys() - wanted.keys():
        conn.execute("DELETE FROM batchwork_crons WHERE name = ?", (name,))
        _drop_pending_ticks(conn, name)
    for name, spec in wanted.items():
        if name not in stored:
            conn.execute(
                "INSERT INTO batchwork_crons (name, expression, timezone, watermark,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, spec.expression, spec.timezone, now_us, now_us, now_us),
            )
        elif stored[name] != (spec.expression, spec.timezone):
            conn.execute(
                "UPDATE batchwork_crons SET expression = ?, timezone = ?, watermark = ?,"
                " updated_at = ? WHERE name = ?",
                (spec.expression, spec.timezone, now_us, now_us, name),
            )
            _drop_pending_ticks(conn, name)


def _drop_pending_ticks(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(
        "DELETE FROM batchwork_jobs WHERE name = ? AND type = 'cron_task' AND status = 'pending'",
        (name,),
    )


def cron_states(conn: sqlite3.Connection) -> list[CronState]:
    """Every stored cron, by name."""
    return [
        CronState(
            name=row[0],
            expression=row[1],
            timezone=row[2],
            watermark=from_us(row[3]),
            created_at=from_us(row[4]),
            updated_at=from_us(row[5]),
        )
        for row in conn.execute(
            "SELECT name, expression, timezone, watermark, created_at, updated_at"
            " FROM batchwork_crons ORDER BY name"
        )
    ]


def fire_cron_ticks(
    conn: sqlite3.Connection,
    name: str,
    ticks: Sequence[NewJob],
    watermark_us: int,
    now_us: int,
) -> list[int | None]:
    """Insert tick records and raise the cron's watermark (never lower it)."""
    ids = enqueue(conn, ticks, now_us)
    conn.execute(
        "UPDATE batchwork_crons SET watermark = max(watermark, ?), updated_at = ? WHERE name = ?",
        (watermark_us, now_us, name),
    )
    return ids


# -- queries -------------------------------------------------------------------------------
def get(conn: sqlite3.Connection, job_id: int) -> Job | None:
    """One job, or ``None``."""
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM batchwork_jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return None if row is None else row_to_job(row)


def list_jobs(
    conn: sqlite3.Connection,
    *,
    status: JobStatus | None,
    name: str | None,
    tag: str | None,
    limit: int,
    offset: int,
) -> list[Job]:
    """Jobs newest first, filtered."""
    where, params = [], []
    for column, value in (("status", status), ("name", name), ("tag", tag)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(str(value))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM batchwork_jobs NOT INDEXED{clause}"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, max(limit, 0), max(offset, 0)],
    ).fetchall()
    return rows_to_jobs(rows)


def counts(conn: sqlite3.Connection) -> dict[tuple[str, JobStatus], int]:
    """Jobs per ``(name, status)``."""
    return {
        (row[0], JobStatus(row[1])): row[2]
        for row in conn.execute(
            "SELECT name, status, count(*) FROM batchwork_jobs GROUP BY name, status"
        )
    }


def timeline(conn: sqlite3.Connection, since_us: int, bucket_us: int) -> list[TimelinePoint]:
    """Finished and failed jobs per bucket since ``since``; empty buckets are left out."""
    rows = conn.execute(
        "SELECT (ended_at - ?) / ? AS bucket, sum(status = 'finished'),"
        f" sum(status IN {FAILED_SQL}), avg(max(claimed_at - scheduled_for, 0) / 1e6)"
        " FROM batchwork_jobs WHERE ended_at >= ?"
        f" AND (status = 'finished' OR status IN {FAILED_SQL})"
        " GROUP BY bucket ORDER BY bucket",
        (since_us, bucket_us, since_us),
    ).fetchall()
    return [
        TimelinePoint(
            at=from_us(since_us + row[0] * bucket_us),
            finished=row[1],
            failed=row[2],
            mean_pickup=row[3],
        )
        for row in rows
    ]


def workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    """Registered workers with the ids of the jobs each runs."""
    running: dict[str, list[int]] = {}
    for worker_id, job_id in conn.execute(
        "SELECT worker_id, id FROM batchwork_jobs WHERE status = 'running' ORDER BY id"
    ):
        running.setdefault(worker_id, []).append(job_id)
    return [
        _row_to_worker(row, running.get(row[0], []))
        for row in conn.execute(
            "SELECT id, hostname, pid, tags, concurrency, lease_timeout, started_at, heartbeat_at"
            " FROM batchwork_workers ORDER BY started_at, id"
        )
    ]


def _row_to_worker(row: Sequence[Any], running: list[int]) -> WorkerInfo:
    return WorkerInfo(
        id=row[0],
        hostname=row[1],
        pid=row[2],
        tags=None if row[3] is None else tuple(json.loads(row[3])),
        concurrency=row[4],
        lease_timeout=row[5],
        started_at=from_us(row[6]),
        heartbeat_at=from_us(row[7]),
        running=tuple(running),
    )
