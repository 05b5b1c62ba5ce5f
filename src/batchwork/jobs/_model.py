"""The job domain: statuses, allowed transitions and the records stores hand back.

Pure data and pure rules: no I/O, no asyncio. Stores translate these to SQL; the worker
and the processor decide with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from batchwork.errors import PayloadError


class JobStatus(StrEnum):
    """Where a job is in its life; the value is the string stored and shown.

    Example::

        if job.status is JobStatus.FINISHED: ...
        assert JobStatus.FINISHED == "finished"
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"
    SKIPPED = "skipped"
    MISSED = "missed"

    @property
    def ended(self) -> bool:
        """True for a status no job leaves on its own (only ``retry`` revives it)."""
        return self in ENDED_STATUSES


class JobType(StrEnum):
    """A job enqueued by a program, or the run of one cron tick."""

    JOB = "job"
    CRON_TASK = "cron_task"


ENDED_STATUSES = frozenset(
    {
        JobStatus.FINISHED,
        JobStatus.ERRORED,
        JobStatus.CANCELLED,
        JobStatus.TIMED_OUT,
        JobStatus.CRASHED,
        JobStatus.SKIPPED,
        JobStatus.MISSED,
    }
)
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED})

# Every status change a store may write. ``retry`` (ended -> pending) is the only way out of
# an ended status; RUNNING -> PENDING covers both a retry after a failed attempt and a
# resumable job recovered after its worker crashed.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.PAUSED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.PENDING,
            JobStatus.PAUSED,
            JobStatus.FINISHED,
            JobStatus.ERRORED,
            JobStatus.CANCELLED,
            JobStatus.TIMED_OUT,
            JobStatus.CRASHED,
        }
    ),
    **{status: frozenset({JobStatus.PENDING}) for status in ENDED_STATUSES},
}


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    """Whether a store may change a job from ``old`` to ``new``.

    Example::

        assert can_transition(JobStatus.PENDING, JobStatus.RUNNING)
        assert not can_transition(JobStatus.FINISHED, JobStatus.RUNNING)
    """
    return new in ALLOWED_TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class Job:
    """One job record, as stored.

    ``payload`` and ``result`` are decoded JSON; timestamps are aware UTC datetimes;
    ``duration`` is seconds of the last run (``None`` until a run ended).

    Example::

        job = await processor.get(job_id)
        print(job.name, job.status, job.attempts, job.error)
    """

    id: int
    name: str
    type: JobType
    status: JobStatus
    payload: Any
    result: Any
    error: str | None
    attempts: int
    tag: str | None
    priority: int
    worker_id: str | None
    conflict_id: int | None
    scheduled_for: datetime
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    duration: float | None
    unique_key: str | None = None
    resumable: bool = False
    max_crashes: int = 3
    crashes: int = 0
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class NewJob:
    """What the processor asks a store to insert.

    ``payload_json`` is already strict JSON text (see :func:`dump_json`). ``status`` is
    ``PENDING`` except for cron ticks recorded as ``MISSED``. A ``CRON_TASK`` is unique
    by ``(name, scheduled_for)``: inserting the same tick twice keeps the first.
    ``exclusive``: when another job of this name is pending, running or paused, the row is
    stored ``SKIPPED`` with ``conflict_id`` naming it. ``unique_key``: when an active job
    has the same key, nothing is inserted and that job's id is returned.
    """

    name: str
    payload_json: str
    scheduled_for: datetime
    type: JobType = JobType.JOB
    status: JobStatus = JobStatus.PENDING
    priority: int = 0
    tag: str | None = None
    unique_key: str | None = None
    exclusive: bool = False
    resumable: bool = False
    max_crashes: int = 3
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a worker now runs, with the lease token every later write must present."""

    job: Job
    lease: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one claimed run ended, written back by :meth:`Store.complete`.

    ``status`` is an ended status, ``PAUSED`` (graceful shutdown of a resumable job), or
    ``PENDING`` (a retry: ``retry_at`` is the new ``scheduled_for``; the error is kept).
    ``run_exit_hook`` marks the job's ``on_exit`` hook as taken by this worker, which runs
    it right after; otherwise an ended job's hook is left due for any worker, unless
    ``has_exit_hook`` is false (the worker knows the job's definition has no hook), in
    which case nothing is left due and the store spends no index entry on it.
    """

    job_id: int
    lease: str
    status: JobStatus
    ended_at: datetime
    duration: float
    result_json: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    run_exit_hook: bool = False
    has_exit_hook: bool = True


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live (or recently live) worker process as the store knows it.

    Example::

        for w in await processor.workers():
            print(w.id, w.hostname, w.tags, w.heartbeat_at, w.running)
    """

    id: str
    hostname: str
    pid: int
    tags: tuple[str, ...] | None
    concurrency: int
    lease_timeout: float
    started_at: datetime
    heartbeat_at: datetime
    running: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The store's answer to a heartbeat: still alive, and which running jobs to cancel."""

    alive: bool
    cancel_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Recovery:
    """What one crash-recovery pass did: jobs ended ``crashed`` and jobs put back to run."""

    crashed: tuple[Job, ...] = ()
    resumed: tuple[int, ...] = ()
    dead_workers: tuple[str, ...] = ()


class CancelResult(StrEnum):
    """What :meth:`Store.cancel` did."""

    CANCELLED = "cancelled"  # pending or paused: ended at once
    REQUESTED = "requested"  # running: its worker is told at its next heartbeat
    ALREADY_ENDED = "already_ended"


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A cron as registered: name, normalised expression and IANA time zone."""

    name: str
    expression: str
    timezone: str


@dataclass(frozen=True, slots=True)
class CronState:
    """A cron as stored: the schedule and the watermark (the last tick considered)."""

    name: str
    expression: str
    timezone: str
    watermark: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """Jobs ended in one time bucket, for throughput charts."""

    at: datetime
    finished: int
    failed: int
    mean_pickup: float | None


def dump_json(value: Any, *, what: str = "payload") -> str:
    """Encode ``value`` as strict JSON text, or raise :class:`PayloadError` naming why.

    Strict: no NaN or infinities, string keys only, no types JSON lacks (never pickle).

    Example::

        dump_json({"path": "a.csv"})      # '{"path":"a.csv"}'
        dump_json({"at": object()})       # PayloadError: ... object
    """
    try:
        _check_keys(value)
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} is not strict JSON: {exc}") from exc


def _refuse(value: Any) -> Any:
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_refuse)


def _check_keys(value: Any) -> None:
    # json.dumps silently turns int/float/bool/None keys into strings, so a payload would
    # not come back equal to what was enqueued; refuse instead.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict key {key!r} of type {type(key).__name__} is not a str")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def load_json(text: str | None) -> Any:
    """Decode JSON text written by :func:`dump_json` (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)
