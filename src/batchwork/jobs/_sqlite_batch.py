"""Claims and completions in a fixed number of SQLite steps, whatever the batch size.

Python's ``sqlite3`` releases the GIL around every step: every row fetched, every row of
an ``executemany``. On the writer thread each re-acquisition may wait up to the
interpreter's switch interval (5 ms) while the event loop runs Python, which is exactly
what a draining worker's loop does. So a batch crosses as one JSON document: a claim is
one ``UPDATE`` plus one ``SELECT`` that aggregates the rows with ``json_group_array``;
completions are, for each kind of outcome present (end, retry, pause), one fenced
``UPDATE … FROM json_each`` in a savepoint when every lease matches (the usual case),
else a fenced ``SELECT`` of the ids that will be written plus that ``UPDATE``.
Encoding outcomes and building records happen on the event loop, before and after the
hop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._model import ALLOWED_TRANSITIONS, Claimed, JobStatus, Outcome
from ._sqlite_ops import claim_update, rows_to_jobs
from ._sqlite_schema import to_us

_FROM_RUNNING = ALLOWED_TRANSITIONS[JobStatus.RUNNING]

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
    return [Claimed(job, lease) for job in rows_to_jobs(rows, decoded=True)]


Document = tuple[str, list[int], tuple[Any, ...]]
"""Outcomes of one kind: a JSON document, its job ids in order, the values all share."""
Outcomes = tuple[Document, Document, Document, Document]
"""Encoded outcomes: the documents of the runs that end alike (status, result, error and
exit hook: one batch of no-op jobs), that end otherwise, are retried and pause."""

# What an ended run may be, checked in SQL too: no document can write another status.
_PENDING, _PAUSED, _FINISHED = JobStatus.PENDING, JobStatus.PAUSED, JobStatus.FINISHED
_ENDS = _FROM_RUNNING - {_PENDING, _PAUSED}
_ENDS_SQL = "(" + ", ".join(f"'{status.value}'" for status in sorted(_ENDS)) + ")"


def outcomes_json(worker_id: str, outcomes: Sequence[Outcome]) -> Outcomes:
    """Check and encode outcomes for :func:`complete` (runs on the event loop).

    One document per kind of outcome, each with only the columns that kind writes: every
    value extracted from a document costs its row (a single document with every column
    and ``CASE`` on the kind cost twice as much per completion). Ends that all share
    their status, result, error and hook go as parameters once (~20 % less per row).
    """
    ends: list[list[Any]] = []
    shared: list[tuple[Any, ...]] = []
    retries: list[list[Any]] = []
    pauses: list[list[Any]] = []
    instants: dict[datetime, int] = {}  # outcomes of one batch mostly share ended_at
    for outcome in outcomes:
        status = outcome.status
        # ``is`` first: hashing an enum member (the set) runs Python code.
        end = status is _FINISHED or status in _ENDS
        if not (end or status is _PENDING or status is _PAUSED):
            raise ValueError(f"a run cannot end {status}")
        ended = instants.get(outcome.ended_at)
        if ended is None:
            ended = instants[outcome.ended_at] = to_us(outcome.ended_at)
        if end:
            if outcome.run_exit_hook:
                hook, hook_worker = "taken", worker_id
            else:
                # No hook to run: 'none' keeps the row out of the exit hook index.
                hook, hook_worker = ("due" if outcome.has_exit_hook else "none"), None
            ends.append([outcome.job_id, outcome.lease, ended, outcome.duration])
            # status is a str: JSON and SQLite take its value
            shared.append((status, outcome.result_json, outcome.error, hook, hook_worker))
        elif status is _PENDING:
            if outcome.retry_at is None:
                raise ValueError(f"a retry of job {outcome.job_id} needs retry_at")
            retries.append(
                [
                    outcome.job_id,
                    outcome.lease,
                    outcome.error,
                    ended,
                    outcome.duration,
                    to_us(outcome.retry_at),
                ]
            )
        else:
            pauses.append([outcome.job_id, outcome.lease, ended, outcome.duration])
    alike: list[list[Any]] = []
    if shared and shared.count(shared[0]) == len(shared):
        alike, ends = ends, []
    else:
        ends = [
            [job_id, lease, *end[:3], ended, duration, *end[3:]]
            for (job_id, lease, ended, duration), end in zip(ends, shared, strict=True)
        ]
    return (
        _document(alike, shared[0] if alike else ()),
        _document(ends),
        _document(retries),
        _document(pauses),
    )


def _document(rows: list[list[Any]], values: tuple[Any, ...] = ()) -> Document:
    return json.dumps(rows), [row[0] for row in rows], values


def _x(i: int) -> str:
    return f"json_extract(o.value, '$[{i}]')"


# Every document row starts with the job id and the lease. The unary + keeps the planner
# off the status index: it must walk the outcomes and look each job up by id, not scan
# every running job once per outcome.
_FENCE = (
    f"batchwork_jobs.id = {_x(0)} AND batchwork_jobs.worker_id = ?2"
    f" AND batchwork_jobs.lease = {_x(1)} AND +batchwork_jobs.status = 'running'"
)
_END_FENCE = f"{_FENCE} AND {_x(2)} IN {_ENDS_SQL}"
_ALIKE_FENCE = f"{_FENCE} AND ?3 IN {_ENDS_SQL}"
_FROM = "FROM json_each(?1) AS o"


def _writable(fence: str) -> str:
    return f"SELECT json_group_array(batchwork_jobs.id) {_FROM} JOIN batchwork_jobs ON {fence}"


# An ended run keeps its worker_id (who ran it); a retry or a pause frees the job, keeps
# its result and its exit hook state; a pause also keeps its error. Each: the SELECT of
# the writable ids, how many of the shared values it takes, the UPDATE.
_WRITES = (
    (
        _writable(_ALIKE_FENCE),
        1,
        "UPDATE batchwork_jobs SET status = ?3, result = ?4, error = ?5,"
        f" ended_at = {_x(2)}, duration = {_x(3)}, lease = NULL, updated_at = {_x(2)},"
        f" exit_hook = ?6, exit_hook_worker = ?7 {_FROM} WHERE {_ALIKE_FENCE}",
    ),
    (
        _writable(_END_FENCE),
        0,
        f"UPDATE batchwork_jobs SET status = {_x(2)}, result = {_x(3)}, error = {_x(4)},"
        f" ended_at = {_x(5)}, duration = {_x(6)}, lease = NULL, updated_at = {_x(5)},"
        f" exit_hook = {_x(7)}, exit_hook_worker = {_x(8)} {_FROM} WHERE {_END_FENCE}",
    ),
    (
        _writable(_FENCE),
        0,
        f"UPDATE batchwork_jobs SET status = 'pending', error = {_x(2)},"
        f" scheduled_for = {_x(5)}, ended_at = NULL, duration = {_x(4)}, lease = NULL,"
        f" updated_at = {_x(3)}, worker_id = NULL {_FROM} WHERE {_FENCE}",
    ),
    (
        _writable(_FENCE),
        0,
        f"UPDATE batchwork_jobs SET status = 'paused', ended_at = NULL, duration = {_x(3)},"
        f" lease = NULL, updated_at = {_x(2)}, worker_id = NULL {_FROM} WHERE {_FENCE}",
    ),
)


def complete(conn: sqlite3.Connection, worker_id: str, outcomes: Outcomes) -> list[Any]:
    """Write encoded outcomes whose lease still matches; return the ids written.

    Every lease usually matches: then the ``UPDATE`` alone, in a savepoint, changes as
    many rows as the document has distinct ids, and those are the ids written. When it
    changes fewer, it is undone and the fenced ``SELECT`` names the writable ids first.
    """
    written: list[Any] = []
    for (document, ids, values), (writable, fenced, write) in zip(outcomes, _WRITES, strict=True):
        if not ids:
            continue
        params = (document, worker_id, *values)
        if len(set(ids)) == len(ids):
            conn.execute("SAVEPOINT batchwork_complete")
            if conn.execute(write, params).rowcount == len(ids):
                conn.execute("RELEASE batchwork_complete")
                written.extend(ids)
                continue
            conn.execute("ROLLBACK TO batchwork_complete")
            conn.execute("RELEASE batchwork_complete")
        found = json.loads(conn.execute(writable, params[: 2 + fenced]).fetchone()[0])
        if found:
            conn.execute(write, params)
            written.extend(found)
    return written
