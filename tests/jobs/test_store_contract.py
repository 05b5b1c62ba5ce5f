"""The store contract: every Store implementation passes these (SQLite and PostgreSQL).

Producing, claiming, completing, releasing and heartbeats. Crash recovery and exit hooks
are in ``test_store_contract_recovery.py``, crons in ``test_store_contract_crons.py``,
queries and control in ``test_store_contract_queries.py``.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest

from batchwork.jobs._model import CancelResult, JobStatus, JobType, dump_json
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import add, claim_all, cron_tick, new_job, outcome, worker


# -- enqueue -------------------------------------------------------------------------------
async def test_enqueue_returns_one_id_per_job_in_order(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    ids = await add(store, clock, *(new_job(now, payload={"n": n}) for n in range(5)))
    assert len(set(ids)) == 5
    assert ids == sorted(ids)
    for n, job_id in enumerate(ids):
        assert (await store.get(job_id)).payload == {"n": n}
    assert await store.enqueue([], now=now) == []


async def test_ids_match_their_jobs_in_a_large_mixed_batch(
    store: Store, clock: ManualClock
) -> None:
    now = clock.now()
    jobs = [new_job(now, payload={"n": n}) for n in range(600)]
    jobs[300] = new_job(now, payload={"n": 300}, unique_key="middle")
    jobs[450] = new_job(now, "other", payload={"n": 450}, exclusive=True)
    ids = await add(store, clock, *jobs)
    assert len(set(ids)) == 600
    for n in (0, 1, 299, 300, 301, 449, 450, 451, 599):
        assert (await store.get(ids[n])).payload == {"n": n}
    listed = {job.id: job.payload["n"] for job in await store.list_jobs(limit=1000)}
    assert listed == {job_id: n for n, job_id in enumerate(ids)}


async def test_a_new_job_record_has_every_field(store: Store, clock: ManualClock) -> None:
    due = clock.now() + timedelta(seconds=5)
    payload = {"path": "a.csv", "nested": [1, 2.5, None, True, {"ü": "ok"}]}
    [job_id] = await add(
        store,
        clock,
        new_job(due, "import", payload, priority=7, tag="main", resumable=True, max_crashes=5),
    )
    job = await store.get(job_id)
    assert (job.id, job.name, job.type, job.status) == (
        job_id,
        "import",
        JobType.JOB,
        JobStatus.PENDING,
    )
    assert job.payload == payload
    assert (job.result, job.error, job.attempts, job.worker_id, job.conflict_id) == (
        None,
        None,
        0,
        None,
        None,
    )
    assert (job.tag, job.priority, job.resumable, job.max_crashes, job.crashes) == (
        "main",
        7,
        True,
        5,
        0,
    )
    assert job.scheduled_for == due
    assert job.created_at == clock.now()
    assert job.updated_at == clock.now()
    assert (job.started_at, job.ended_at, job.duration) == (None, None, None)
    assert not job.cancel_requested
    assert job.scheduled_for.tzinfo is not None
    assert job.scheduled_for.utcoffset() == timedelta(0)


async def test_timestamps_keep_millisecond_precision(store: Store, clock: ManualClock) -> None:
    due = clock.now().replace(microsecond=123_456)
    elsewhere = due.astimezone(timezone(timedelta(hours=5, minutes=30)))
    ids = await add(store, clock, new_job(due), new_job(elsewhere))
    for job_id in ids:
        stored = (await store.get(job_id)).scheduled_for
        assert stored.tzinfo is not None
        assert stored.utcoffset() == timedelta(0)
        assert abs(stored - due) < timedelta(milliseconds=1)
        assert stored.astimezone(UTC).replace(microsecond=stored.microsecond // 1000 * 1000) == (
            due.replace(microsecond=123_000)
        )


async def test_unique_key_returns_the_active_job(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    first, same, other = await store.enqueue(
        [
            new_job(now, unique_key="k1"),
            new_job(now, unique_key="k1"),
            new_job(now, unique_key="k2"),
        ],
        now=now,
    )
    assert same == first
    assert other != first
    assert await store.enqueue([new_job(now, unique_key="k1")], now=now) == [first]
    assert len(await store.list_jobs()) == 2

    await store.register_worker(worker(clock))
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    assert await store.enqueue([new_job(now, unique_key="k1")], now=now) == [first]
    assert first is not None
    await store.complete("w1", [outcome(claimed[first], clock)])
    [after_end] = await store.enqueue([new_job(now, unique_key="k1")], now=now)
    assert after_end not in (None, first)


async def test_exclusive_enqueue_is_recorded_skipped(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    [first] = await add(store, clock, new_job(now, "report", exclusive=True))
    [second, other_name] = await add(
        store, clock, new_job(now, "report", exclusive=True), new_job(now, "x", exclusive=True)
    )
    skipped = await store.get(second)
    assert skipped.status is JobStatus.SKIPPED
    assert skipped.conflict_id == first
    assert skipped.ended_at == now
    assert (await store.get(other_name)).status is JobStatus.PENDING
    # a non-exclusive job of the same name is not refused
    [plain] = await add(store, clock, new_job(now, "report"))
    assert (await store.get(plain)).status is JobStatus.PENDING

    await store.register_worker(worker(clock))
    claimed = await store.claim("w1", tags=None, limit=1, now=now)
    assert [c.job.id for c in claimed] == [first]
    [third] = await add(store, clock, new_job(now, "report", exclusive=True))
    assert (await store.get(third)).conflict_id in (first, plain)  # both are active


async def test_cron_tick_is_stored_once(store: Store, clock: ManualClock) -> None:
    tick = clock.now()
    [first] = await store.enqueue([cron_tick("nightly", tick)], now=tick)
    again = await store.enqueue(
        [cron_tick("nightly", tick), cron_tick("nightly", tick + timedelta(minutes=1))],
        now=tick,
    )
    assert first is not None
    assert again[0] is None
    assert again[1] not in (None, first)
    assert (await store.get(first)).type is JobType.CRON_TASK
    # plain jobs with the same name and time are not ticks: never deduplicated
    assert len(await add(store, clock, new_job(tick, "nightly"), new_job(tick, "nightly"))) == 2


async def test_a_missed_tick_is_stored_ended(store: Store, clock: ManualClock) -> None:
    tick = clock.now() - timedelta(minutes=5)
    [job_id] = await store.enqueue(
        [cron_tick("nightly", tick, status=JobStatus.MISSED)], now=clock.now()
    )
    assert job_id is not None
    job = await store.get(job_id)
    assert job.status is JobStatus.MISSED
    assert job.ended_at == clock.now()
    await store.register_worker(worker(clock))
    assert await claim_all(store, clock) == []


# -- claim ---------------------------------------------------------------------------------
async def test_claim_order_is_priority_then_schedule_then_id(
    store: Store, clock: ManualClock
) -> None:
    t = clock.now()
    ids = await add(
        store,
        clock,
        new_job(t - timedelta(seconds=1), "low-old", priority=0),
        new_job(t - timedelta(seconds=9), "low-older", priority=0),
        new_job(t, "high", priority=5),
        new_job(t - timedelta(seconds=9), "low-older-second", priority=0),
        new_job(t, "negative", priority=-3),
    )
    await store.register_worker(worker(clock))
    claimed = await claim_all(store, clock)
    assert [c.job.id for c in claimed] == [ids[2], ids[1], ids[3], ids[0], ids[4]]
    assert all(c.job.status is JobStatus.RUNNING for c in claimed)


async def test_claim_takes_only_due_jobs(store: Store, clock: ManualClock) -> None:
    [later] = await add(store, clock, new_job(clock.now() + timedelta(seconds=10)))
    await store.register_worker(worker(clock))
    assert await claim_all(store, clock) == []
    clock.advance(10)
    assert [c.job.id for c in await claim_all(store, clock)] == [later]


async def test_claim_in_batches_up_to_the_limit(store: Store, clock: ManualClock) -> None:
    ids = await add(store, clock, *(new_job(clock.now()) for _ in range(10)))
    await store.register_worker(worker(clock))
    sizes, seen = [], []
    for _ in range(4):
        batch = await store.claim("w1", tags=None, limit=4, now=clock.now())
        sizes.append(len(batch))
        seen += [c.job.id for c in batch]
    assert sizes == [4, 4, 2, 0]
    assert seen == ids
    assert await store.claim("w1", tags=None, limit=0, now=clock.now()) == []


async def test_a_claim_starts_the_run(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.register_worker(worker(clock))
    clock.advance(2)
    [claimed] = await claim_all(store, clock)
    assert claimed.lease
    job = claimed.job
    assert (job.id, job.status, job.worker_id, job.attempts) == (
        job_id,
        JobStatus.RUNNING,
        "w1",
        1,
    )
    assert job.started_at == clock.now()
    assert job == await store.get(job_id)


async def test_claim_tags(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    untagged, main, gpu = await add(
        store, clock, new_job(now), new_job(now, tag="main"), new_job(now, tag="gpu")
    )
    await store.register_worker(worker(clock))
    got = await store.claim("w1", tags=["main", "other"], limit=10, now=now)
    assert sorted(c.job.id for c in got) == [untagged, main]
    assert await store.claim("w1", tags=["main"], limit=10, now=now) == []
    got = await store.claim("w1", tags=None, limit=10, now=now)
    assert [c.job.id for c in got] == [gpu]


async def test_claim_job_takes_one_job_due_or_not(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now() + timedelta(hours=1), tag="x"))
    await store.register_worker(worker(clock))
    claimed = await store.claim_job("w1", job_id, now=clock.now())
    assert claimed is not None
    assert claimed.job.status is JobStatus.RUNNING
    assert claimed.job.attempts == 1
    assert await store.claim_job("w1", job_id, now=clock.now()) is None
    assert await store.claim_job("w1", 987_654_321, now=clock.now()) is None


# -- complete ------------------------------------------------------------------------------
async def test_complete_writes_each_outcome(store: Store, clock: ManualClock) -> None:
    ids = await add(store, clock, *(new_job(clock.now()) for _ in range(3)))
    await store.register_worker(worker(clock))
    a, b, c = await claim_all(store, clock)
    clock.advance(1.5)
    written = await store.complete(
        "w1",
        [
            outcome(a, clock, result_json=dump_json({"rows": 3})),
            outcome(b, clock, JobStatus.ERRORED, error="ValueError: bad\nTraceback ..."),
            outcome(c, clock, JobStatus.TIMED_OUT, error="max_runtime"),
        ],
    )
    assert written == set(ids)
    finished, errored, timed_out = [await store.get(job_id) for job_id in ids]
    assert finished.status is JobStatus.FINISHED
    assert finished.result == {"rows": 3}
    assert finished.ended_at == clock.now()
    assert finished.duration == 0.5
    assert errored.status is JobStatus.ERRORED
    assert errored.error == "ValueError: bad\nTraceback ..."
    assert timed_out.status is JobStatus.TIMED_OUT
    assert await store.complete("w1", []) == set()


async def test_a_stale_lease_writes_nothing(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now(), resumable=True))
    await store.register_worker(worker(clock, lease_timeout=10))
    [old] = await claim_all(store, clock)
    clock.advance(11)
    recovery = await store.recover(now=clock.now())
    assert recovery.resumed == (job_id,)
    await store.register_worker(worker(clock, "w2"))
    [new] = await claim_all(store, clock, "w2")
    assert new.lease != old.lease

    assert await store.complete("w1", [outcome(old, clock)]) == set()
    assert await store.complete("w2", [outcome(new, clock, lease=old.lease)]) == set()
    assert await store.complete("w1", [outcome(new, clock)]) == set()
    job = await store.get(job_id)
    assert (job.status, job.worker_id) == (JobStatus.RUNNING, "w2")
    assert await store.complete("w2", [outcome(new, clock)]) == {job_id}
    assert (await store.get(job_id)).status is JobStatus.FINISHED
    # a second completion of an ended job changes nothing either
    assert await store.complete("w2", [outcome(new, clock, JobStatus.ERRORED)]) == set()
    assert (await store.get(job_id)).status is JobStatus.FINISHED


async def test_complete_retry_puts_the_job_back(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.register_worker(worker(clock))
    [first] = await claim_all(store, clock)
    started = first.job.started_at
    retry_at = clock.now() + timedelta(seconds=30)
    written = await store.complete(
        "w1", [outcome(first, clock, JobStatus.PENDING, error="boom", retry_at=retry_at)]
    )
    assert written == {job_id}
    job = await store.get(job_id)
    assert (job.status, job.error, job.worker_id, job.attempts) == (
        JobStatus.PENDING,
        "boom",
        None,
        1,
    )
    assert job.scheduled_for == retry_at
    assert job.ended_at is None
    assert await claim_all(store, clock) == []
    clock.advance(30)
    [second] = await claim_all(store, clock)
    assert second.job.attempts == 2
    assert second.job.started_at == started


async def test_complete_paused_waits_for_a_resume(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now(), resumable=True))
    await store.register_worker(worker(clock))
    [first] = await claim_all(store, clock)
    assert await store.complete("w1", [outcome(first, clock, JobStatus.PAUSED)]) == {job_id}
    paused = await store.get(job_id)
    assert (paused.status, paused.worker_id, paused.ended_at) == (JobStatus.PAUSED, None, None)
    clock.advance(1)
    [resumed] = await claim_all(store, clock)
    assert resumed.job.attempts == 2
    assert resumed.job.started_at == first.job.started_at


async def test_complete_refuses_a_status_a_run_cannot_end_in(
    store: Store, clock: ManualClock
) -> None:
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.register_worker(worker(clock))
    [claimed] = await claim_all(store, clock)
    with pytest.raises(ValueError):
        await store.complete("w1", [outcome(claimed, clock, JobStatus.SKIPPED)])
    assert (await store.get(job_id)).status is JobStatus.RUNNING


# -- release -------------------------------------------------------------------------------
async def test_release_restores_the_state_before_the_claim(
    store: Store, clock: ManualClock
) -> None:
    fresh, resumable = await add(
        store, clock, new_job(clock.now()), new_job(clock.now(), resumable=True)
    )
    await store.register_worker(worker(clock))
    first = await store.claim_job("w1", resumable, now=clock.now())
    assert first is not None
    await store.complete("w1", [outcome(first, clock, JobStatus.PAUSED)])
    before = await store.get(resumable)
    clock.advance(1)
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    await store.release("w1", [(job_id, c.lease) for job_id, c in claimed.items()])

    job = await store.get(fresh)
    assert (job.status, job.attempts, job.started_at, job.worker_id) == (
        JobStatus.PENDING,
        0,
        None,
        None,
    )
    job = await store.get(resumable)
    assert (job.status, job.attempts, job.started_at, job.worker_id) == (
        JobStatus.PAUSED,
        before.attempts,
        before.started_at,
        None,
    )
    assert sorted(c.job.id for c in await claim_all(store, clock)) == [fresh, resumable]


async def test_release_is_fenced(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.register_worker(worker(clock))
    [claimed] = await claim_all(store, clock)
    await store.release("w2", [(job_id, claimed.lease)])
    await store.release("w1", [(job_id, "not-the-lease")])
    assert (await store.get(job_id)).status is JobStatus.RUNNING
    await store.release("w1", [])


# -- heartbeat -----------------------------------------------------------------------------
async def test_heartbeat_renews_and_reports_cancellations(store: Store, clock: ManualClock) -> None:
    await add(store, clock, *(new_job(clock.now()) for _ in range(3)))
    await store.register_worker(worker(clock, lease_timeout=10))
    a, b, c = await claim_all(store, clock)
    running = [a.job.id, b.job.id, c.job.id]
    beat = await store.heartbeat("w1", now=clock.now(), running=running)
    assert (beat.alive, beat.cancel_ids) == (True, ())

    assert await store.cancel(b.job.id, now=clock.now()) is CancelResult.REQUESTED
    for _ in range(3):  # heartbeats every 8 s keep a 10 s lease alive
        clock.advance(8)
        beat = await store.heartbeat("w1", now=clock.now(), running=running)
        assert beat.alive
        assert beat.cancel_ids == (b.job.id,)
        assert (await store.recover(now=clock.now())).dead_workers == ()
    beat = await store.heartbeat("w1", now=clock.now(), running=[a.job.id])
    assert beat.cancel_ids == ()
    [info] = await store.workers()
    assert info.heartbeat_at == clock.now()


async def test_heartbeat_of_a_worker_declared_dead(store: Store, clock: ManualClock) -> None:
    await store.register_worker(worker(clock, lease_timeout=5))
    clock.advance(6)
    assert (await store.recover(now=clock.now())).dead_workers == ("w1",)
    beat = await store.heartbeat("w1", now=clock.now(), running=[])
    assert not beat.alive
    beat = await store.heartbeat("never-registered", now=clock.now(), running=[1])
    assert not beat.alive


async def test_unregister_removes_the_worker(store: Store, clock: ManualClock) -> None:
    await store.register_worker(worker(clock, "w1"))
    await store.register_worker(worker(clock, "w2", tags=("a", "b")))
    await store.unregister_worker("w1")
    [info] = await store.workers()
    assert (info.id, info.tags) == ("w2", ("a", "b"))
    assert not (await store.heartbeat("w1", now=clock.now(), running=[])).alive
