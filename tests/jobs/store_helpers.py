"""Small builders shared by the store-contract tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchwork.jobs._model import (
    Claimed,
    JobStatus,
    JobType,
    NewJob,
    Outcome,
    WorkerInfo,
    dump_json,
)
from batchwork.jobs._store import Store

from .clock import ManualClock


def new_job(
    at: datetime,
    name: str = "task",
    payload: Any = None,
    **options: Any,
) -> NewJob:
    """A :class:`NewJob` due at ``at`` (options as NewJob's fields)."""
    return NewJob(name=name, payload_json=dump_json(payload), scheduled_for=at, **options)


def cron_tick(name: str, at: datetime, **options: Any) -> NewJob:
    """The record of one cron tick at ``at``."""
    return NewJob(
        name=name, payload_json="null", scheduled_for=at, type=JobType.CRON_TASK, **options
    )


async def add(store: Store, clock: ManualClock, *jobs: NewJob) -> list[int]:
    """Enqueue jobs that all get a fresh id; return the ids."""
    ids = await store.enqueue(jobs, now=clock.now())
    assert all(job_id is not None for job_id in ids)
    return [job_id for job_id in ids if job_id is not None]


def worker(
    clock: ManualClock,
    worker_id: str = "w1",
    *,
    lease_timeout: float = 30.0,
    tags: tuple[str, ...] | None = None,
) -> WorkerInfo:
    """A worker row starting its lease now."""
    return WorkerInfo(
        id=worker_id,
        hostname="test-host",
        pid=1234,
        tags=tags,
        concurrency=8,
        lease_timeout=lease_timeout,
        started_at=clock.now(),
        heartbeat_at=clock.now(),
    )


def outcome(
    claimed: Claimed,
    clock: ManualClock,
    status: JobStatus = JobStatus.FINISHED,
    **options: Any,
) -> Outcome:
    """How ``claimed``'s run ended, now (``lease=`` overrides the claim's lease)."""
    fields: dict[str, Any] = {"lease": claimed.lease, "duration": 0.5, **options}
    return Outcome(job_id=claimed.job.id, status=status, ended_at=clock.now(), **fields)


async def claim_all(store: Store, clock: ManualClock, worker_id: str = "w1") -> list[Claimed]:
    """Claim every due job for ``worker_id``."""
    return await store.claim(worker_id, tags=None, limit=1000, now=clock.now())
