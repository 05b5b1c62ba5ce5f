"""Rows in and out of the PostgreSQL store: records from result rows, COPY text, URLs.

Pure functions (no I/O), kept apart from the store so the store reads as the list of
database calls it makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ._model import (
    ALLOWED_TRANSITIONS,
    CronState,
    Job,
    JobStatus,
    JobType,
    NewJob,
    Outcome,
    WorkerInfo,
    load_json,
)

_INSERTABLE = frozenset({JobStatus.PENDING, JobStatus.SKIPPED, JobStatus.MISSED})


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (connections already run with TimeZone=UTC)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


# Enum members by stored value: a dict lookup is several times cheaper than ``JobStatus(v)``
# for the hundreds of rows a claim returns.
_TYPES = {member.value: member for member in JobType}
_STATUSES = {member.value: member for member in JobStatus}


def job_from_row(r: Sequence[Any]) -> Job:
    """A :class:`Job` from a row selected with ``JOB_COLUMNS``."""
    return _job(r, load_json(r[4]))


def jobs_from_rows(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """:func:`job_from_row` for many rows, their payloads decoded by one ``json.loads``
    of them all as one array (a call per payload cost ten times more for small ones)."""
    if not rows:
        return []
    payloads = load_json("[" + ",".join([r[4] for r in rows]) + "]")
    return [_job(r, payload) for r, payload in zip(rows, payloads, strict=True)]


def _job(r: Sequence[Any], payload: Any) -> Job:
    return Job(
        r[0],
        r[1],
        _TYPES[r[2]],
        _STATUSES[r[3]],
        payload,
        load_json(r[5]),
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        utc(r[12]),
        utc(r[13]),
        utc_or_none(r[14]),
        utc_or_none(r[15]),
        utc(r[16]),
        r[17],
        r[18],
        r[19],
        r[20],
        r[21],
        r[22],
    )


def worker_from_row(r: Sequence[Any]) -> WorkerInfo:
    """A :class:`WorkerInfo` from a row of ``Sql.workers``."""
    return WorkerInfo(
        id=r[0],
        hostname=r[1],
        pid=r[2],
        tags=None if r[3] is None else tuple(r[3]),
        concurrency=r[4],
        lease_timeout=r[5],
        started_at=utc(r[6]),
        heartbeat_at=utc(r[7]),
        running=tuple(r[8]),
    )


def cron_from_row(r: Sequence[Any]) -> CronState:
    """A :class:`CronState` from a row of ``Sql.cron_states``."""
    return CronState(r[0], r[1], r[2], utc(r[3]), utc(r[4]), utc(r[5]))


def check_new_job(job: NewJob) -> None:
    """``ValueError`` for a job no enqueue may create (same rule as the SQLite store)."""
    if job.status not in _INSERTABLE:
        raise ValueError(f"a new job cannot start {job.status}: use pending")
    _check_aware(job.scheduled_for)


def check_outcome(outcome: Outcome) -> None:
    """``ValueError`` for an outcome no run may end with (same rule as the SQLite store)."""
    if outcome.status not in ALLOWED_TRANSITIONS[JobStatus.RUNNING]:
        raise ValueError(f"a run cannot end {outcome.status}")
    if outcome.status is JobStatus.PENDING and outcome.retry_at is None:
        raise ValueError(f"a retry of job {outcome.job_id} needs retry_at")
    _check_aware(outcome.ended_at)


def outcome_params(worker_id: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Parameters of ``Sql.complete``: the outcomes as parallel arrays."""
    return {
        "worker": worker_id,
        "ids": [o.job_id for o in outcomes],
        "leases": [o.lease for o in outcomes],
        "statuses": [JobStatus(o.status).value for o in outcomes],
        "ended": [o.ended_at for o in outcomes],
        "durations": [o.duration for o in outcomes],
        "results": [o.result_json for o in outcomes],
        "errors": [o.error for o in outcomes],
        "retry": [o.retry_at for o in outcomes],
        "hooks": [o.run_exit_hook for o in outcomes],
        "has_hooks": [o.has_exit_hook for o in outcomes],
    }


def _check_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: batchwork stores need aware datetimes")


def is_plain(job: NewJob) -> bool:
    """A job that needs no check before its insert: no key, no exclusivity, not a tick."""
    return (
        job.type is JobType.JOB
        and job.status is JobStatus.PENDING
        and job.unique_key is None
        and not job.exclusive
    )


def plain_row(job: NewJob, now: datetime) -> tuple[Any, ...]:
    """Parameters for the ``PLAIN_COLUMNS`` of one job (``Sql.insert_job``)."""
    return (
        job.name,
        job.payload_json,
        job.tag,
        job.priority,
        job.scheduled_for,
        now,
        now,
        job.resumable,
        job.max_crashes,
        job.error,
    )


def insert_row(
    job_id: int,
    job: NewJob,
    now: datetime,
    *,
    status: JobStatus | None = None,
    conflict_id: int | None = None,
    ended_at: datetime | None = None,
) -> tuple[Any, ...]:
    """Parameters for the ``INSERT_COLUMNS`` of one job."""
    return (
        *plain_row(job, now),
        job_id,
        job.type.value,
        (status or job.status).value,
        job.unique_key,
        conflict_id,
        ended_at,
    )


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str | None) -> str:
    return "\\N" if value is None else value.translate(_COPY_ESCAPES)


def copy_text(rows: Sequence[tuple[int, NewJob]], now: datetime) -> str:
    """COPY text-format lines for plain jobs, in the order of ``INSERT_COLUMNS``.

    Formatting the whole batch in Python and sending it in one write is several times
    faster than one ``write_row`` call per job; names, tags, errors and times repeat
    across a batch, so each distinct one is formatted once.
    """
    now_text = now.isoformat()
    stamps: dict[datetime, str] = {now: now_text}
    texts: dict[str | None, str] = {None: "\\N"}
    lines: list[str] = []
    append = lines.append
    for job_id, job in rows:
        due = stamps.get(job.scheduled_for)
        if due is None:
            due = stamps[job.scheduled_for] = job.scheduled_for.isoformat()
        name = texts.get(job.name)
        if name is None:
            name = texts[job.name] = _text(job.name)
        tag = texts.get(job.tag)
        if tag is None:
            tag = texts[job.tag] = _text(job.tag)
        error = texts.get(job.error)
        if error is None:
            error = texts[job.error] = _text(job.error)
        payload = job.payload_json
        if "\\" in payload or "\t" in payload or "\n" in payload or "\r" in payload:
            payload = payload.translate(_COPY_ESCAPES)
        append(
            f"{name}\t{payload}\t{tag}\t{job.priority}\t{due}\t{now_text}\t{now_text}\t"
            f"{'t' if job.resumable else 'f'}\t{job.max_crashes}\t{error}\t"
            f"{job_id}\tjob\tpending\t\\N\t\\N\t\\N\n"
        )
    return "".join(lines)


# Query options that are batchwork's, not libpq's: taken out of the conninfo.
STORE_OPTIONS = ("schema", "durable_completions")


def split_url(url: str) -> tuple[str, dict[str, str], str]:
    """``(conninfo URL without batchwork's options, those options, host:port/db for
    messages)``; batchwork's options are the keys of :data:`STORE_OPTIONS`.

    Example::

        split_url("postgresql://u@db:5432/app?schema=jobs&sslmode=require")
        # ("postgresql://u@db:5432/app?sslmode=require", {"schema": "jobs"}, "db:5432/app")
    """
    parts = urlsplit(url)
    options: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in STORE_OPTIONS:
            options[key] = value
        else:
            rest.append((key, value))
    conninfo = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    return conninfo, options, where


def url_flag(options: dict[str, str], key: str, default: bool) -> bool:
    """A yes/no URL option (``true``/``false``, ``on``/``off``, ``1``/``0``, ``yes``/``no``).

    Example::

        url_flag({"durable_completions": "off"}, "durable_completions", True)  # False
    """
    value = options.get(key)
    if value is None:
        return default
    words = {"true": True, "on": True, "1": True, "yes": True}
    words |= {"false": False, "off": False, "0": False, "no": False}
    try:
        return words[value.lower()]
    except KeyError:
        raise ValueError(
            f"store URL option {key}={value!r} is not a yes/no value (use true or false)"
        ) from None
