"""The store contract: crash recovery and durable on_exit hooks."""

from __future__ import annotations

import asyncio

from batchwork.jobs._model import JobStatus
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import add, claim_all, new_job, outcome, worker


async def test_recover_resumes_resumable_jobs_and_crashes_others(
    store: Store, clock: ManualClock
) -> None:
    resumable, plain = await add(
        store, clock, new_job(clock.now(), resumable=True), new_job(clock.now())
    )
    await store.register_worker(worker(clock, "w1", lease_timeout=10))
    first = {c.job.id: c for c in await claim_all(store, clock)}

    clock.advance(10)  # exactly at the lease: still alive
    assert (await store.recover(now=clock.now())).dead_workers == ()
    clock.advance(1)
    recovery = await store.recover(now=clock.now())
    assert recovery.dead_workers == ("w1",)
    assert recovery.resumed == (resumable,)
    assert [job.id for job in recovery.crashed] == [plain]

    crashed = await store.get(plain)
    assert crashed.status is JobStatus.CRASHED
    assert crashed.ended_at == clock.now()
    assert crashed.error is not None
    assert "w1" in crashed.error
    assert recovery.crashed[0] == crashed

    back = await store.get(resumable)
    assert (back.status, back.crashes, back.worker_id, back.attempts) == (
        JobStatus.PENDING,
        1,
        None,
        1,
    )
    assert await store.workers() == []
    assert (await store.recover(now=clock.now())).dead_workers == ()

    await store.register_worker(worker(clock, "w2"))
    [rerun] = await claim_all(store, clock, "w2")
    assert rerun.job.id == resumable
    assert rerun.job.attempts == 2
    assert rerun.job.started_at == first[resumable].job.started_at


async def test_recover_stops_resuming_after_max_crashes(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now(), resumable=True, max_crashes=2))
    for round_ in range(3):
        worker_id = f"w{round_}"
        await store.register_worker(worker(clock, worker_id, lease_timeout=5))
        [claimed] = await claim_all(store, clock, worker_id)
        assert claimed.job.id == job_id
        clock.advance(6)
        recovery = await store.recover(now=clock.now())
        if round_ < 2:
            assert recovery.resumed == (job_id,)
            assert (await store.get(job_id)).crashes == round_ + 1
        else:
            assert recovery.resumed == ()
            assert [job.id for job in recovery.crashed] == [job_id]
    job = await store.get(job_id)
    assert job.status is JobStatus.CRASHED
    assert job.attempts == 3


async def test_recover_uses_each_workers_own_lease_timeout(
    store: Store, clock: ManualClock
) -> None:
    await store.register_worker(worker(clock, "short", lease_timeout=10))
    await store.register_worker(worker(clock, "long", lease_timeout=60))
    clock.advance(30)
    assert (await store.recover(now=clock.now())).dead_workers == ("short",)
    assert [w.id for w in await store.workers()] == ["long"]
    clock.advance(31)
    assert (await store.recover(now=clock.now())).dead_workers == ("long",)


async def test_recover_leaves_live_workers_jobs_alone(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.register_worker(worker(clock, "w1", lease_timeout=10))
    await claim_all(store, clock)
    for _ in range(5):
        clock.advance(9)
        await store.heartbeat("w1", now=clock.now(), running=[job_id])
        recovery = await store.recover(now=clock.now())
        assert (recovery.dead_workers, recovery.resumed, recovery.crashed) == ((), (), ())
    assert (await store.get(job_id)).status is JobStatus.RUNNING


# -- exit hooks ----------------------------------------------------------------------------
async def test_ended_jobs_have_their_hook_due_once(store: Store, clock: ManualClock) -> None:
    ids = await add(store, clock, *(new_job(clock.now(), "mail") for _ in range(20)))
    [other] = await add(store, clock, new_job(clock.now(), "other"))
    await store.register_worker(worker(clock, "w1"))
    await store.register_worker(worker(clock, "w2"))
    claimed = await claim_all(store, clock)
    await store.complete("w1", [outcome(c, clock) for c in claimed])

    batches = await asyncio.gather(
        *(
            store.claim_exit_hooks(worker_id, names=["mail"], limit=3)
            for _ in range(5)
            for worker_id in ("w1", "w2")
        )
    )
    taken = [job.id for batch in batches for job in batch]
    assert sorted(taken) == sorted(set(taken))
    assert sorted(taken) == ids
    assert all(job.status is JobStatus.FINISHED for batch in batches for job in batch)
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=100) == []

    await store.finish_exit_hooks("w1", ids)
    await store.finish_exit_hooks("w2", ids)
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=100) == []
    assert await store.claim_exit_hooks("w1", names=[], limit=100) == []
    [hook] = await store.claim_exit_hooks("w2", names=["other", "absent"], limit=100)
    assert hook.id == other


async def test_a_hook_taken_at_completion_is_not_due(store: Store, clock: ManualClock) -> None:
    await add(store, clock, new_job(clock.now(), "mail"))
    await store.register_worker(worker(clock))
    [claimed] = await claim_all(store, clock)
    await store.complete("w1", [outcome(claimed, clock, JobStatus.ERRORED, run_exit_hook=True)])
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=10) == []
    await store.finish_exit_hooks("w1", [claimed.job.id])
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=10) == []


async def test_no_hook_for_runs_that_did_not_end(store: Store, clock: ManualClock) -> None:
    retried, paused = await add(
        store, clock, new_job(clock.now(), "mail"), new_job(clock.now(), "mail", resumable=True)
    )
    await store.register_worker(worker(clock))
    claimed = {c.job.id: c for c in await claim_all(store, clock)}
    await store.complete(
        "w1",
        [
            outcome(claimed[retried], clock, JobStatus.PENDING, retry_at=clock.now()),
            outcome(claimed[paused], clock, JobStatus.PAUSED),
        ],
    )
    assert await store.claim_exit_hooks("w1", names=["mail"], limit=10) == []


async def test_hooks_of_a_dead_worker_are_due_again(store: Store, clock: ManualClock) -> None:
    [job_id] = await add(store, clock, new_job(clock.now(), "mail"))
    await store.register_worker(worker(clock, "w1", lease_timeout=10))
    [claimed] = await claim_all(store, clock)
    await store.complete("w1", [outcome(claimed, clock, run_exit_hook=True)])
    await store.register_worker(worker(clock, "w2", lease_timeout=60))
    assert await store.claim_exit_hooks("w2", names=["mail"], limit=10) == []

    clock.advance(11)
    recovery = await store.recover(now=clock.now())
    assert recovery.dead_workers == ("w1",)
    [hook] = await store.claim_exit_hooks("w2", names=["mail"], limit=10)
    assert hook.id == job_id
    await store.finish_exit_hooks("w1", [job_id])  # the dead worker cannot finish it
    clock.advance(1)
    await store.recover(now=clock.now())
    assert await store.claim_exit_hooks("w2", names=["mail"], limit=10) == []
    await store.finish_exit_hooks("w2", [job_id])


async def test_crashed_and_cancelled_jobs_have_their_hook_due(
    store: Store, clock: ManualClock
) -> None:
    running, pending = await add(
        store, clock, new_job(clock.now(), "mail"), new_job(clock.now(), "mail")
    )
    await store.register_worker(worker(clock, "w1", lease_timeout=5))
    await store.claim("w1", tags=None, limit=1, now=clock.now())
    await store.cancel(pending, now=clock.now())
    clock.advance(6)
    await store.recover(now=clock.now())
    hooks = await store.claim_exit_hooks("w2", names=["mail"], limit=10)
    assert sorted(job.id for job in hooks) == [running, pending]
    assert {job.status for job in hooks} == {JobStatus.CRASHED, JobStatus.CANCELLED}
