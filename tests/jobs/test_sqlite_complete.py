"""The SQLite store's completions when only some leases match: the fast path (one fenced
``UPDATE``) gives way to the fenced ``SELECT`` first, and nothing else is written."""

from __future__ import annotations

from pathlib import Path

from batchwork.jobs._model import JobStatus
from batchwork.jobs._sqlite import SQLiteStore

from .clock import ManualClock
from .store_helpers import add, claim_all, new_job, outcome, worker


async def test_sqlite_a_batch_with_stale_leases_writes_only_the_others(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    try:
        await store.register_worker(worker(clock))
        first, stale, third = await add(store, clock, *(new_job(clock.now()) for _ in range(3)))
        claimed = {c.job.id: c for c in await claim_all(store, clock)}
        outcomes = [
            outcome(claimed[first], clock),
            outcome(claimed[stale], clock, lease="not-the-lease"),
            outcome(claimed[third], clock, JobStatus.ERRORED, error="boom"),
            outcome(claimed[first], clock),  # the same job twice in one batch
        ]
        assert await store.complete("w1", outcomes) == {first, third}
        statuses = {job.id: job.status for job in await store.list_jobs()}
        assert statuses == {
            first: JobStatus.FINISHED,
            stale: JobStatus.RUNNING,
            third: JobStatus.ERRORED,
        }
        assert await store.complete("w1", [outcome(claimed[stale], clock)]) == {stale}
        assert await store.complete("w1", [outcome(claimed[stale], clock)]) == set()
    finally:
        await store.close()
