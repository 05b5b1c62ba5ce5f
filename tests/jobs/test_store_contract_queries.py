"""The store contract: queries and control (get, list, cancel, retry, counts, timeline,
workers, purge)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from batchwork.errors import JobNotFound
from batchwork.jobs._model import CancelResult, JobStatus
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import add, claim_all, new_job, outcome, worker


async def test_get_an_unknown_id_raises(store: Store) -> None:
    with pytest.raises(JobNotFound) as caught:
        await store.get(424_242)
    assert caught.value.job_id == 424_242


async def test_list_jobs_newest_first_with_filters_and_paging(
    store: Store, clock: ManualClock
) -> None:
    ids = await add(
        store,
        clock,
        *(new_job(clock.now(), f"n{i % 3}", tag="t" if i % 2 else None) for i in range(12)),
    )
    await store.register_worker(worker(clock))
    [first] = await store.claim("w1", tags=None, limit=1, now=clock.now())
    assert first.job.id == ids[0]

    assert [job.id for job in await store.list_jobs()] == ids[::-1]
    assert [job.id for job in await store.list_jobs(limit=5)] == ids[::-1][:5]
    assert [job.id for job in await store.list_jobs(limit=5, offset=10)] == ids[::-1][10:]
    assert [job.id for job in await store.list_jobs(name="n1")] == ids[1::3][::-1]
    assert [job.id for job in await store.list_jobs(tag="t")] == ids[1::2][::-1]
    by_both = await store.list_jobs(name="n1", tag="t")
    assert [job.id for job in by_both] == [ids[7], ids[1]]
    running = await store.list_jobs(status=JobStatus.RUNNING)
    assert [job.id for job in running] == [ids[0]]
    assert await store.list_jobs(status=JobStatus.CRASHED) == []
    assert await store.list_jobs(name="absent") == []


async def test_cancel(store: Store, clock: ManualClock) -> None:
    pending, running, paused, ended = await add(
        store,
        clock,
        new_job(clock.now() + timedelta(hours=1)),
        *(new_job(clock.now(), resumable=True) for _ in range(3)),
    )
    await store.register_worker(worker(clock))
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    await store.complete(
        "w1",
        [
            outcome(claimed[paused], clock, JobStatus.PAUSED),
            outcome(claimed[ended], clock),
        ],
    )
    clock.advance(1)

    assert await store.cancel(pending, now=clock.now()) is CancelResult.CANCELLED
    job = await store.get(pending)
    assert (job.status, job.ended_at) == (JobStatus.CANCELLED, clock.now())
    assert await store.cancel(paused, now=clock.now()) is CancelResult.CANCELLED
    assert (await store.get(paused)).status is JobStatus.CANCELLED

    assert await store.cancel(running, now=clock.now()) is CancelResult.REQUESTED
    job = await store.get(running)
    assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)

    assert await store.cancel(ended, now=clock.now()) is CancelResult.ALREADY_ENDED
    assert await store.cancel(pending, now=clock.now()) is CancelResult.ALREADY_ENDED
    assert (await store.get(ended)).status is JobStatus.FINISHED
    with pytest.raises(JobNotFound):
        await store.cancel(424_242, now=clock.now())


async def test_retry(store: Store, clock: ManualClock) -> None:
    failed, waiting = await add(store, clock, new_job(clock.now(), "mail"), new_job(clock.now()))
    await store.register_worker(worker(clock))
    [claimed] = await store.claim("w1", tags=None, limit=1, now=clock.now())
    await store.cancel(failed, now=clock.now())  # requested: stays running
    await store.complete("w1", [outcome(claimed, clock, JobStatus.ERRORED, error="boom")])
    clock.advance(60)

    assert await store.retry(failed, now=clock.now()) is True
    job = await store.get(failed)
    assert (job.status, job.error, job.scheduled_for, job.ended_at) == (
        JobStatus.PENDING,
        "boom",
        clock.now(),
        None,
    )
    assert not job.cancel_requested
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=10) == []
    assert await store.retry(failed, now=clock.now()) is False
    assert await store.retry(waiting, now=clock.now()) is False
    with pytest.raises(JobNotFound):
        await store.retry(424_242, now=clock.now())

    again = {c.job.id: c.job.attempts for c in await claim_all(store, clock)}
    assert again == {failed: 2, waiting: 1}


async def test_retry_leaves_a_unique_key_to_the_newer_active_job(
    store: Store, clock: ManualClock
) -> None:
    [old, solo] = await add(
        store, clock, new_job(clock.now(), unique_key="k"), new_job(clock.now(), unique_key="s")
    )
    await store.register_worker(worker(clock))
    await store.complete("w1", [outcome(c, clock) for c in await claim_all(store, clock)])
    [newer] = await add(store, clock, new_job(clock.now(), unique_key="k"))
    assert newer != old
    assert await store.retry(old, now=clock.now()) is True
    assert await store.retry(solo, now=clock.now()) is True
    assert (await store.get(old)).unique_key is None
    assert (await store.get(newer)).unique_key == "k"
    assert (await store.get(solo)).unique_key == "s"  # nobody else holds it: kept
    again = await store.enqueue(
        [new_job(clock.now(), unique_key="k"), new_job(clock.now(), unique_key="s")],
        now=clock.now(),
    )
    assert again == [newer, solo]


async def test_retry_revives_skipped_and_crashed_jobs(store: Store, clock: ManualClock) -> None:
    [active] = await add(store, clock, new_job(clock.now(), "x", exclusive=True))
    [skipped] = await add(store, clock, new_job(clock.now(), "x", exclusive=True))
    await store.register_worker(worker(clock, lease_timeout=1))
    await claim_all(store, clock)
    clock.advance(2)
    await store.recover(now=clock.now())
    assert (await store.get(active)).status is JobStatus.CRASHED
    for job_id in (skipped, active):
        assert await store.retry(job_id, now=clock.now()) is True
        assert (await store.get(job_id)).status is JobStatus.PENDING


async def test_counts_per_name_and_status(store: Store, clock: ManualClock) -> None:
    assert await store.counts() == {}
    await add(store, clock, *(new_job(clock.now(), "a") for _ in range(3)), new_job(clock.now()))
    await store.register_worker(worker(clock))
    [claimed] = await store.claim("w1", tags=None, limit=1, now=clock.now())
    await store.complete("w1", [outcome(claimed, clock)])
    assert await store.counts() == {
        ("a", JobStatus.FINISHED): 1,
        ("a", JobStatus.PENDING): 2,
        ("task", JobStatus.PENDING): 1,
    }


async def test_timeline_buckets(store: Store, clock: ManualClock) -> None:
    since = clock.now()
    await add(store, clock, *(new_job(clock.now()) for _ in range(6)))
    await store.register_worker(worker(clock, lease_timeout=3600))
    clock.advance(2)  # picked up 2 s after scheduled_for
    a, b, c, d, e, f = await claim_all(store, clock)
    clock.advance(10)
    await store.complete("w1", [outcome(a, clock), outcome(b, clock, JobStatus.ERRORED)])
    clock.advance(65)  # next minute bucket
    await store.complete(
        "w1",
        [
            outcome(c, clock),
            outcome(d, clock),
            outcome(e, clock, JobStatus.TIMED_OUT),
            outcome(f, clock, JobStatus.CANCELLED),
        ],
    )
    points = await store.timeline(since=since, bucket=60)
    assert [(p.at, p.finished, p.failed) for p in points] == [
        (since, 1, 1),
        (since + timedelta(seconds=60), 2, 1),
    ]
    for point in points:
        assert point.mean_pickup == pytest.approx(2.0, abs=0.01)
    assert await store.timeline(since=clock.now() + timedelta(seconds=1), bucket=60) == []


async def test_workers_with_their_running_jobs(store: Store, clock: ManualClock) -> None:
    ids = await add(store, clock, *(new_job(clock.now()) for _ in range(3)))
    await store.register_worker(worker(clock, "w1", tags=("main",)))
    clock.advance(1)
    await store.register_worker(worker(clock, "w2", lease_timeout=12.5))
    await store.claim("w1", tags=["main"], limit=2, now=clock.now())
    await store.claim("w2", tags=None, limit=5, now=clock.now())
    w1, w2 = await store.workers()
    assert (w1.id, w1.tags, w1.running, w1.hostname, w1.pid, w1.concurrency) == (
        "w1",
        ("main",),
        tuple(ids[:2]),
        "test-host",
        1234,
        8,
    )
    assert (w2.id, w2.tags, w2.running, w2.lease_timeout) == ("w2", None, (ids[2],), 12.5)
    assert w2.started_at == clock.now()


async def test_purge_deletes_only_jobs_ended_before(store: Store, clock: ManualClock) -> None:
    old, recent, active = await add(store, clock, *(new_job(clock.now()) for _ in range(3)))
    await store.register_worker(worker(clock, lease_timeout=3600))
    claimed = {c.job.id: c for c in await store.claim("w1", tags=None, limit=2, now=clock.now())}
    await store.complete("w1", [outcome(claimed[old], clock)])
    cutoff = clock.advance(60)
    await store.complete("w1", [outcome(claimed[recent], clock)])
    clock.advance(60)

    assert await store.purge(ended_before=cutoff) == 1
    with pytest.raises(JobNotFound):
        await store.get(old)
    assert {job.id for job in await store.list_jobs()} == {recent, active}
    assert await store.purge(ended_before=cutoff) == 0
    assert await store.purge(ended_before=clock.now()) == 1
    assert [job.id for job in await store.list_jobs()] == [active]
    [newer] = await add(store, clock, new_job(clock.now()))
    assert newer > active  # purged ids are never reused
