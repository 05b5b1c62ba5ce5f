"""Claims and completions in a fixed number of SQLite steps, whatever the batch size.

Python's ``sqlite3`` releases the GIL around every step: every row fetched, every row of
an ``executemany``. On the writer thread each re-acquisition may wait up to the
interpreter's switch interval (5 ms) while the event loop runs Python, which is exactly
what a draining worker's loop does. So a batch crosses as one JSON document: a claim is
one ``UPDATE`` plus one ``SELECT`` that aggregates the rows with ``json_group_array``;
completions are one fenced ``SELECT`` of the ids that will be written plus one
``UPDATE … FROM json_each``. Encoding outcomes and building records happen on the event
loop, before and after the hop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._model import ALLOWED_TRANSITIONS, Claimed, JobStatus, Outcome
from ._sqlite_ops import claim_update, row_to_job
from ._sqlite_schema import to_us

_FROM_RUNNING = ALLOWED_TRANSITIONS[JobStatus.RUNNING]
# What a run may end as, checked in SQL too: no document can write another status.
_FROM_RUNNING_SQL = "(" + ", ".join(f"'{status.value}'" for status in sorted(_FROM_RUNNING)) + ")"

# JOB_COLUMNS as one JSON array per row; payload and result embedded as JSON values.
_JSON_ROW = (
    "json_array(id, name, type, status, json(payload), json(result), error, attempts, tag,"
    " priority, worker_id, conflict_id, scheduled_for, created_at, started_at, ended_at,"
    " updated_at, duration, unique_key, resumable, max_crashes, crashes, cancel_requested)"
)


def claim(
    conn: sqlite3.Connection,
    worker_id: str,
    tags: Sequence[str] | None,
    limit: int,
    now_us: int,
) -> tuple[str, int, str]:
    """Claim up to ``limit`` due jobs; return the lease, how many, and the rows as JSON."""
    if limit < 1:
        return "", 0, "[]"
    sql, params, lease = claim_update(worker_id, tags, limit, now_us)
    count = conn.execute(sql, params).rowcount
    if not count:
        return lease, 0, "[]"
    # The lease is fresh for this claim, so it names exactly the rows just taken.
    row = conn.execute(
        f"SELECT json_group_array({_JSON_ROW}) FROM batchwork_jobs"
        " WHERE status = 'running' AND worker_id = ? AND lease = ?",
        (worker_id, lease),
    ).fetchone()
    return lease, count, str(row[0])


def claimed_from_json(lease: str, text: str) -> list[Claimed]:
    """The records of a :func:`claim`, in claim order (runs on the event loop)."""
    rows = json.loads(text)
    rows.sort(key=lambda row: (-row[9], row[12], row[0]))
    times: dict[int | None, datetime | None] = {None: None}
    return [Claimed(row_to_job(row, times, decoded=True), lease) for row in rows]


def outcomes_json(worker_id: str, outcomes: Sequence[Outcome]) -> str:
    """Check and encode outcomes for :func:`complete` (runs on the event loop)."""
    rows = []
    instants: dict[datetime, int] = {}  # outcomes of one batch mostly share ended_at
    for outcome in outcomes:
        status = outcome.status
        if status not in _FROM_RUNNING:
            raise ValueError(f"a run cannot end {status}")
        ended = instants.get(outcome.ended_at)
        if ended is None:
            ended = instants[outcome.ended_at] = to_us(outcome.ended_at)
        retry_at = None
        if status is JobStatus.PENDING:
            if outcome.retry_at is None:
                raise ValueError(f"a retry of job {outcome.job_id} needs retry_at")
            kind, retry_at = "retry", to_us(outcome.retry_at)
        else:
            kind = "pause" if status is JobStatus.PAUSED else "end"
        hook, hook_worker = ("taken", worker_id) if outcome.run_exit_hook else ("due", None)
        rows.append(
            [
                outcome.job_id,
                outcome.lease,
                status.value,
                kind,
                outcome.result_json,
                outcome.error,
                ended,
                outcome.duration,
                retry_at,
                hook,
                hook_worker,
            ]
        )
    return json.dumps(rows)


_OUTCOMES = (
    "WITH o AS (SELECT json_extract(value, '$[0]') AS o_id,"
    " json_extract(value, '$[1]') AS o_lease, json_extract(value, '$[2]') AS o_status,"
    " json_extract(value, '$[3]') AS o_kind, json_extract(value, '$[4]') AS o_result,"
    " json_extract(value, '$[5]') AS o_error, json_extract(value, '$[6]') AS o_ended,"
    " json_extract(value, '$[7]') AS o_duration, json_extract(value, '$[8]') AS o_retry,"
    " json_extract(value, '$[9]') AS o_hook, json_extract(value, '$[10]') AS o_hook_worker"
    " FROM json_each(?))"
)
# The unary + keeps the planner off the status index: it must walk the outcomes and
# look each job up by id, not scan every running job once per outcome.
_FENCE = (
    "batchwork_jobs.id = o.o_id AND batchwork_jobs.worker_id = ?"
    " AND batchwork_jobs.lease = o.o_lease AND +batchwork_jobs.status = 'running'"
    f" AND o.o_status IN {_FROM_RUNNING_SQL}"
)
_WRITABLE = (
    f"{_OUTCOMES} SELECT json_group_array(batchwork_jobs.id) FROM o JOIN batchwork_jobs ON {_FENCE}"
)
# An ended run keeps its worker_id (who ran it); a retry or a pause frees the job.
_WRITE = (
    f"{_OUTCOMES} UPDATE batchwork_jobs SET status = o.o_status,"
    " result = CASE o.o_kind WHEN 'end' THEN o.o_result ELSE result END,"
    " error = CASE o.o_kind WHEN 'pause' THEN error ELSE o.o_error END,"
    " scheduled_for = CASE o.o_kind WHEN 'retry' THEN o.o_retry ELSE scheduled_for END,"
    " ended_at = CASE o.o_kind WHEN 'end' THEN o.o_ended END,"
    " duration = o.o_duration, lease = NULL, updated_at = o.o_ended,"
    " worker_id = CASE o.o_kind WHEN 'end' THEN worker_id END,"
    " exit_hook = CASE o.o_kind WHEN 'end' THEN o.o_hook ELSE exit_hook END,"
    " exit_hook_worker = CASE o.o_kind WHEN 'end' THEN o.o_hook_worker"
    " ELSE exit_hook_worker END"
    f" FROM o WHERE {_FENCE}"
)


def complete(conn: sqlite3.Connection, worker_id: str, outcomes: str) -> list[Any]:
    """Write encoded outcomes whose lease still matches; return the ids written."""
    written = json.loads(conn.execute(_WRITABLE, (outcomes, worker_id)).fetchone()[0])
    if written:
        conn.execute(_WRITE, (outcomes, worker_id))
    return list(written)
