"""Review guards on both stores: completions mixing stale and valid leases, and
cancelled or concurrent enqueues that must leave all of a batch or none of it."""

from __future__ import annotations

import asyncio
import contextlib

from batchwork.jobs._model import JobStatus
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import add, claim_all, new_job, outcome, worker


async def test_a_completion_mixing_stale_and_valid_leases_writes_only_the_valid(
    store: Store, clock: ManualClock
) -> None:
    ids = await add(store, clock, *(new_job(clock.now(), f"j{i}") for i in range(4)))
    await store.register_worker(worker(clock))
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    outcomes = [
        outcome(claimed[ids[0]], clock),
        outcome(claimed[ids[1]], clock, lease="stale"),
        outcome(claimed[ids[2]], clock, JobStatus.ERRORED, error="boom"),
        outcome(claimed[ids[3]], clock, lease="stale", status=JobStatus.ERRORED, error="x"),
    ]
    assert await store.complete("w1", outcomes) == {ids[0], ids[2]}
    statuses = [(await store.get(job_id)).status for job_id in ids]
    assert statuses == [
        JobStatus.FINISHED,
        JobStatus.RUNNING,
        JobStatus.ERRORED,
        JobStatus.RUNNING,
    ]
    # the stale ones can still be completed with their own lease
    late = [outcome(claimed[ids[1]], clock), outcome(claimed[ids[3]], clock)]
    assert await store.complete("w1", late) == {ids[1], ids[3]}
    assert await store.complete("w1", late) in (set(), {ids[1], ids[3]})  # never rewritten
    assert (await store.get(ids[1])).status is JobStatus.FINISHED


async def test_concurrent_one_job_enqueues_each_get_their_own_stored_job(
    store: Store, clock: ManualClock
) -> None:
    calls = [
        store.enqueue([new_job(clock.now(), f"j{i}", {"i": i})], now=clock.now()) for i in range(40)
    ]
    results = await asyncio.gather(*calls)
    ids = [r[0] for r in results]
    assert len(set(ids)) == 40
    for i, job_id in enumerate(ids):
        assert job_id is not None
        job = await store.get(job_id)
        assert (job.name, job.payload) == (f"j{i}", {"i": i})


async def test_a_cancelled_enqueue_stores_all_of_its_batch_or_none(
    store: Store, clock: ManualClock
) -> None:
    for size, delay in ((3, 0.0), (3, 0.001), (300, 0.0), (300, 0.002), (5000, 0.005)):
        jobs = [new_job(clock.now(), f"batch{size}-{delay}") for _ in range(size)]
        call = asyncio.create_task(store.enqueue(jobs, now=clock.now()))
        await asyncio.sleep(delay)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        stored = await store.list_jobs(name=f"batch{size}-{delay}", limit=10_000)
        assert len(stored) in (0, size)
        # the store still works for the next call
        [job_id] = await add(store, clock, new_job(clock.now(), "after"))
        assert (await store.get(job_id)).name == "after"


async def test_a_batch_of_alike_ends_with_one_stale_lease_writes_the_others(
    store: Store, clock: ManualClock
) -> None:
    ids = await add(store, clock, *(new_job(clock.now(), f"j{i}") for i in range(5)))
    await store.register_worker(worker(clock))
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    # every end shares status, result, error and hook: one document of id, lease, end
    outcomes = [outcome(claimed[job_id], clock) for job_id in ids]
    outcomes[3] = outcome(claimed[ids[3]], clock, lease="stale")
    assert await store.complete("w1", outcomes) == set(ids) - {ids[3]}
    assert (await store.get(ids[3])).status is JobStatus.RUNNING
    assert [(await store.get(i)).status for i in ids].count(JobStatus.FINISHED) == 4
    # a duplicate outcome for one job is written once
    again = [outcome(claimed[ids[3]], clock), outcome(claimed[ids[3]], clock)]
    assert await store.complete("w1", again) == {ids[3]}
