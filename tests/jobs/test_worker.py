"""The worker in one process: stepping with a manual clock, signals, shutdown, leases, crons."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from batchwork.errors import StoreError
from batchwork.jobs import Job, JobDef, JobProcessor, JobStatus, Signal, Worker
from batchwork.jobs._model import Outcome

from .apps.support import wait_until
from .clock import ManualClock


@pytest.fixture
async def processor(store_url: str, clock: ManualClock) -> AsyncIterator[JobProcessor]:
    proc = JobProcessor(
        store_url, clock=clock, heartbeat_interval=0.1, lease_timeout=5, shutdown_grace=0.3
    )
    yield proc
    await proc.close()


async def _status(processor: JobProcessor, job_id: int) -> str:
    return (await processor.get(job_id)).status


# -- claiming order, scheduling, routing ---------------------------------------------
async def test_runs_by_priority_then_oldest_first(
    processor: JobProcessor, clock: ManualClock
) -> None:
    order: list[str] = []

    @processor.job()
    async def record(job: Job, signal: Signal) -> None:
        order.append(job.payload)

    await record.enqueue("old-low")
    clock.advance(1)
    await record.enqueue("new-low")
    await record.enqueue("high", priority=5)
    await record.enqueue("future", run_at=timedelta(minutes=1), priority=9)
    async with Worker(processor, concurrency=1) as worker:
        assert await worker.drain() == 3
        assert order == ["high", "old-low", "new-low"]
        clock.advance(60)
        assert await worker.run_once() == 1
    assert order[-1] == "future"


async def test_concurrency_bounds_jobs_running_at_once(processor: JobProcessor) -> None:
    running = 0
    peak = 0

    @processor.job()
    async def busy(job: Job, signal: Signal) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await processor.enqueue_many("busy", list(range(12)))
    async with Worker(processor, concurrency=3) as worker:
        assert await worker.drain() == 12
    assert peak == 3


async def test_tags_route_jobs(processor: JobProcessor) -> None:
    for tag in (None, "a", "b"):
        await processor.enqueue("tagged", tag=tag)
    processor.job("tagged")(lambda job, signal: job.tag)
    async with Worker(processor, tags=["a"]) as worker:
        assert await worker.drain() == 2
    remaining = await processor.list(status="pending")
    assert [job.tag for job in remaining] == ["b"]
    async with Worker(processor) as untagged:  # tags=None takes every job
        assert await untagged.drain() == 1


async def test_sync_handlers_run_in_threads(processor: JobProcessor) -> None:
    @processor.job()
    def where(job: Job, signal: Signal) -> str:
        return threading.current_thread().name

    job_id = await where.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
    assert (await processor.get(job_id)).result.startswith("batchwork-job")


# -- outcomes ----------------------------------------------------------------------
async def test_retries_stay_pending_until_the_last_attempt(
    processor: JobProcessor, clock: ManualClock
) -> None:
    exits: list[tuple[str, int]] = []

    @processor.job(retries=2, backoff=10)
    async def flaky(job: Job, signal: Signal) -> None:
        raise ConnectionError(f"attempt {job.attempts}")

    @flaky.on_exit
    async def after(job: Job) -> None:
        exits.append((job.status, job.attempts))

    job_id = await flaky.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
        first = await processor.get(job_id)
        assert first.status == JobStatus.PENDING
        assert first.attempts == 1
        assert first.error is not None
        assert first.error.startswith("ConnectionError: attempt 1")
        delay = (first.scheduled_for - clock.now()).total_seconds()
        assert 5 <= delay < 10  # backoff 10 s, equal jitter
        assert await worker.drain() == 0  # not due yet
        clock.advance(10)
        await worker.drain()
        second = await processor.get(job_id)
        assert second.status == JobStatus.PENDING
        assert 10 <= (second.scheduled_for - clock.now()).total_seconds() < 20
        clock.advance(20)
        await worker.drain()
    final = await processor.get(job_id)
    assert final.status == JobStatus.ERRORED
    assert final.attempts == 3
    assert final.error is not None
    assert final.error.startswith("ConnectionError: attempt 3")
    assert exits == [("errored", 3)]


async def test_retry_that_succeeds_finishes(processor: JobProcessor, clock: ManualClock) -> None:
    @processor.job(retries=3, backoff=1)
    async def second_time(job: Job, signal: Signal) -> int:
        if job.attempts < 2:
            raise RuntimeError("first time fails")
        return job.attempts

    job_id = await second_time.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
        clock.advance(2)
        await worker.drain()
    job = await processor.get(job_id)
    assert (job.status, job.result, job.attempts) == ("finished", 2, 2)


async def test_unknown_job_names_are_errored_naming_the_job(processor: JobProcessor) -> None:
    processor.job("known")(lambda job, signal: None)
    job_id = await processor.enqueue("nobody.registered.this")
    async with Worker(processor) as worker:
        await worker.drain()
    job = await processor.get(job_id)
    assert job.status == JobStatus.ERRORED
    assert job.error is not None
    assert "'nobody.registered.this'" in job.error


async def test_result_json_cannot_hold_is_errored(processor: JobProcessor) -> None:
    @processor.job()
    async def returns_a_set(job: Job, signal: Signal) -> Any:
        return {1, 2}

    job_id = await returns_a_set.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
    job = await processor.get(job_id)
    assert job.status == JobStatus.ERRORED
    assert job.error is not None
    assert "result is not strict JSON" in job.error
    assert "set" in job.error


async def test_error_text_keeps_the_cause_chain(processor: JobProcessor) -> None:
    @processor.job()
    async def chained(job: Job, signal: Signal) -> None:
        try:
            raise KeyError("key")
        except KeyError as exc:
            raise ValueError("lookup failed") from exc

    job_id = await chained.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
    error = (await processor.get(job_id)).error
    assert error is not None
    assert error.splitlines()[0] == "ValueError: lookup failed"
    assert "KeyError: 'key'" in error
    assert "in chained" in error


# -- signals: max_runtime and cancel -------------------------------------------------
async def test_max_runtime_signals_then_stops_an_async_handler(processor: JobProcessor) -> None:
    reasons: list[str | None] = []
    exits: list[str] = []

    @processor.job(max_runtime=0.05)
    async def stubborn(job: Job, signal: Signal) -> None:
        try:
            await asyncio.sleep(60)  # ignores the signal
        finally:
            reasons.append(signal.reason)

    @stubborn.on_exit
    async def after(job: Job) -> None:
        exits.append(job.status)

    job_id = await stubborn.enqueue()
    started = time.monotonic()
    async with Worker(processor) as worker:
        await worker.drain()
    elapsed = time.monotonic() - started
    job = await processor.get(job_id)
    assert job.status == JobStatus.TIMED_OUT
    assert job.error is not None
    assert "max_runtime of 0.05 s" in job.error
    assert reasons == ["max_runtime"]
    assert exits == ["timed_out"]
    assert elapsed < 5  # max_runtime + grace (0.3 s), not the handler's 60 s


async def test_max_runtime_of_a_sync_handler_abandons_its_thread(
    processor: JobProcessor,
) -> None:
    release = threading.Event()

    @processor.job(max_runtime=0.05)
    def blocking(job: Job, signal: Signal) -> str:
        release.wait(10)  # a thread cannot be killed: it runs on, its value is discarded
        return "late"

    job_id = await blocking.enqueue()
    try:
        async with Worker(processor) as worker:
            await worker.drain()
        assert (await processor.get(job_id)).status == JobStatus.TIMED_OUT
    finally:
        release.set()


async def test_handler_that_returns_after_max_runtime_signal_is_timed_out(
    processor: JobProcessor,
) -> None:
    @processor.job(max_runtime=0.05)
    async def polite(job: Job, signal: Signal) -> str:
        reason = await signal.wait()
        return f"stopped: {reason}"

    job_id = await polite.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
    job = await processor.get(job_id)
    assert job.status == JobStatus.TIMED_OUT
    assert job.result is None


async def test_cancel_in_this_process_sets_the_signal_at_once(
    store_url: str, clock: ManualClock
) -> None:
    # Heartbeats every 30 s: only the in-process path can deliver the cancel in time, so the
    # bound below can be generous for a loaded machine and still tell the two paths apart.
    processor = JobProcessor(store_url, clock=clock, heartbeat_interval=30, lease_timeout=90)
    started = asyncio.Event()
    seen: list[str | None] = []

    @processor.job()
    async def waits(job: Job, signal: Signal) -> str:
        started.set()
        seen.append(await signal.wait())
        return "returned normally"  # still ends cancelled

    job_id = await waits.enqueue()
    worker = processor.worker(poll_interval=60)
    run = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    t0 = time.monotonic()
    assert await processor.cancel(job_id) is True
    await wait_until(lambda: _is(processor, job_id, "cancelled"))
    assert time.monotonic() - t0 < 5  # not the next heartbeat (30 s)
    assert seen == ["cancelled"]
    assert (await processor.get(job_id)).result is None
    worker.stop()
    await run
    await processor.close()


async def _is(processor: JobProcessor, job_id: int, status: str) -> bool:
    return await _status(processor, job_id) == status


# -- waking, burst, graceful shutdown -----------------------------------------------
async def test_enqueue_in_this_process_wakes_an_idle_worker_at_once(
    processor: JobProcessor,
) -> None:
    @processor.job()
    async def quick(job: Job, signal: Signal) -> str:
        return "ok"

    worker = processor.worker(poll_interval=60)
    run = asyncio.ensure_future(worker.run())
    await wait_until(lambda: _has_workers(processor))
    t0 = time.monotonic()
    job_id = await quick.enqueue()
    assert await processor.result(job_id, timeout=5) == "ok"
    assert time.monotonic() - t0 < 1  # not the 60 s poll
    worker.stop()
    await run


async def _has_workers(processor: JobProcessor) -> bool:
    return bool(await processor.workers())


async def test_burst_mode_drains_and_returns(processor: JobProcessor) -> None:
    processor.job("n")(lambda job, signal: job.payload)
    ids = await processor.enqueue_many("n", list(range(40)))
    await asyncio.wait_for(processor.run_worker(concurrency=4, burst=True), 10)
    assert [await processor.result(i, timeout=1) for i in ids] == list(range(40))
    assert await processor.workers() == []  # unregistered on the way out


async def test_cancelling_run_worker_shuts_down_gracefully(processor: JobProcessor) -> None:
    exits: list[int] = []
    started: set[str] = set()

    async def on_exit(job: Job) -> None:
        exits.append(job.id)

    @processor.job(resumable=True, on_exit=on_exit)
    async def resumable(job: Job, signal: Signal) -> str:
        started.add("resumable")
        await signal.wait()
        return "discarded"

    @processor.job(on_exit=on_exit)
    async def polite(job: Job, signal: Signal) -> str:
        started.add("polite")
        return f"stopped on {await signal.wait()}"

    @processor.job(on_exit=on_exit)
    async def stubborn(job: Job, signal: Signal) -> None:
        started.add("stubborn")
        await asyncio.sleep(60)

    ids = {name: await processor.enqueue(name) for name in ("resumable", "polite", "stubborn")}
    run = asyncio.ensure_future(processor.run_worker(concurrency=3))
    await wait_until(lambda: _true(len(started) == 3))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    paused = await processor.get(ids["resumable"])
    assert (paused.status, paused.result, paused.ended_at) == ("paused", None, None)
    polite_job = await processor.get(ids["polite"])
    assert (polite_job.status, polite_job.result) == ("finished", "stopped on shutdown")
    interrupted = await processor.get(ids["stubborn"])
    assert interrupted.status == JobStatus.ERRORED
    assert interrupted.error is not None
    assert interrupted.error.startswith("interrupted")
    assert sorted(exits) == sorted([ids["polite"], ids["stubborn"]])  # not for paused

    # a paused job is resumed by the next worker, keeping its first start
    resumed: list[int] = []
    processor.jobs["resumable"] = JobDef(
        lambda job, signal: resumed.append(job.attempts), resumable=True
    )
    async with Worker(processor) as worker:
        await worker.drain()
    again = await processor.get(ids["resumable"])
    assert again.status == JobStatus.FINISHED
    assert again.started_at == paused.started_at
    assert resumed == [2]


async def _true(value: bool) -> bool:
    return value


# -- leases -------------------------------------------------------------------------
async def test_lease_lost_stops_jobs_and_writes_nothing(store_url: str, clock: ManualClock) -> None:
    """Worker A stalls long enough to be declared dead; B recovers its job as crashed.
    A then learns it lost its lease: it signals ``lease_lost`` and overwrites nothing."""
    reasons: list[str | None] = []
    hooks: list[tuple[str, str]] = []
    started = asyncio.Event()

    async def slow(job: Job, signal: Signal) -> str:
        started.set()
        reasons.append(await signal.wait())
        return "A finished anyway"

    def make(name: str) -> JobProcessor:
        def on_exit(job: Job) -> None:
            hooks.append((name, job.status))

        return JobProcessor(
            store_url,
            jobs={"slow": JobDef(slow, on_exit=on_exit)},
            clock=clock,
            heartbeat_interval=0.1,
            lease_timeout=5,
            shutdown_grace=0.2,
        )

    a, b = make("a"), make("b")
    job_id = await a.enqueue("slow")
    worker_a = a.worker(poll_interval=60)
    run_a = asyncio.ensure_future(worker_a.run())
    await asyncio.wait_for(started.wait(), 5)
    async with Worker(b) as worker_b:
        # B steps far beyond A's lease (A keeps heartbeating at the manual clock's time)
        await worker_b.run_once(now=clock.now() + timedelta(seconds=60))
    crashed = await b.get(job_id)
    assert crashed.status == JobStatus.CRASHED
    assert crashed.error is not None
    await wait_until(lambda: _true(bool(reasons)))
    assert reasons == ["lease_lost"]
    await wait_until(lambda: _true(worker_a.stats.lost == 1))
    after = await b.get(job_id)
    assert (after.status, after.result) == ("crashed", None)  # A wrote nothing
    assert hooks == [("b", "crashed")]
    worker_a.stop()
    await run_a
    await a.close()
    await b.close()


# -- crons ------------------------------------------------------------------------
async def test_cron_ticks_are_fired_and_run_by_the_worker(
    processor: JobProcessor, clock: ManualClock
) -> None:
    ran: list[str] = []

    @processor.cron("* * * * *")
    async def every_minute(signal: Signal) -> None:
        ran.append("tick")

    clock.set(clock.now().replace(second=30, microsecond=0) + timedelta(minutes=1))
    async with Worker(processor) as worker:
        assert await worker.run_once() == 0  # reconciled now: first tick is the next minute
        clock.advance(30)
        assert await worker.drain() == 1
        assert await worker.drain() == 0  # exactly once per tick
    [tick] = await processor.list(name="every_minute")
    assert tick.type == "cron_task"
    assert tick.status == JobStatus.FINISHED
    assert tick.scheduled_for == clock.now()
    assert ran == ["tick"]


async def test_a_handler_that_swallows_cancellation_is_given_up_on(
    processor: JobProcessor,
) -> None:
    gave_up = asyncio.Event()

    @processor.job(max_runtime=0.05)
    async def deaf(job: Job, signal: Signal) -> None:
        while not gave_up.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    job_id = await deaf.enqueue()
    try:
        async with Worker(processor, concurrency=1) as worker:
            await asyncio.wait_for(worker.drain(), 10)
            assert worker.stats.running == 0  # its slot is free again
        assert (await processor.get(job_id)).status == JobStatus.TIMED_OUT
    finally:
        gave_up.set()


async def test_sync_handler_can_block_on_its_signal(processor: JobProcessor) -> None:
    @processor.job()
    def waits(job: Job, signal: Signal) -> str:
        signal.wait_blocking(10)
        return str(signal.reason)

    job_id = await waits.enqueue()
    worker = processor.worker(poll_interval=60)
    run = asyncio.ensure_future(worker.run())
    await wait_until(lambda: _is(processor, job_id, "running"))
    worker.stop()  # shutdown signal: a non-resumable job returning in time ends normally
    await run
    job = await processor.get(job_id)
    assert (job.status, job.result) == ("finished", "shutdown")


async def test_on_exit_of_a_job_cancelled_while_pending_runs_once_in_a_worker(
    processor: JobProcessor,
) -> None:
    ended: list[tuple[int, str]] = []

    @processor.job()
    async def never(job: Job, signal: Signal) -> None:
        raise AssertionError("a cancelled job must not run")

    @never.on_exit
    async def after(job: Job) -> None:
        ended.append((job.id, job.status))

    job_id = await never.enqueue(run_at=timedelta(hours=1))
    assert await processor.cancel(job_id) is True
    async with Worker(processor) as worker:
        assert await worker.run_once() == 0
        await worker.run_once()
    assert ended == [(job_id, "cancelled")]


async def test_exit_hook_errors_are_logged_with_the_job_id(
    processor: JobProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    @processor.job()
    async def fine(job: Job, signal: Signal) -> int:
        return 1

    @fine.on_exit
    def broken(job: Job) -> None:
        raise RuntimeError("hook bug")

    job_id = await fine.enqueue()
    async with Worker(processor) as worker:
        await worker.drain()
    assert (await processor.get(job_id)).status == JobStatus.FINISHED
    [record] = [r for r in caplog.records if "on_exit hook" in r.getMessage()]
    assert str(job_id) in record.getMessage()
    assert record.exc_info is not None


async def test_sync_producer_thread_wakes_a_worker_in_another_loop(
    processor: JobProcessor,
) -> None:
    @processor.job()
    async def square(job: Job, signal: Signal) -> int:
        return int(job.payload) ** 2

    worker = processor.worker(poll_interval=60)
    run = asyncio.ensure_future(worker.run())
    await wait_until(lambda: _has_workers(processor))

    def produce() -> tuple[int, float]:
        t0 = time.monotonic()
        job_id = processor.sync.enqueue("square", 7)
        return processor.sync.result(job_id, timeout=10), time.monotonic() - t0

    try:
        value, took = await asyncio.to_thread(produce)
    finally:
        await asyncio.to_thread(processor.sync.close)
        worker.stop()
        await run
    assert value == 49
    assert took < 5  # woken across loops, not by the 60 s poll


# -- outcome writes -----------------------------------------------------------------
async def test_outcomes_say_whether_the_job_has_an_exit_hook(processor: JobProcessor) -> None:
    @processor.job()
    async def plain(job: Job, signal: Signal) -> None:
        return None

    @processor.job()
    async def hooked(job: Job, signal: Signal) -> None:
        return None

    @hooked.on_exit
    async def after(job: Job) -> None:
        return None

    unknown_id = await processor.enqueue("registered_elsewhere")
    plain_id, hooked_id = await plain.enqueue(), await hooked.enqueue()
    store = await processor._ready_store()
    complete = store.complete
    written: dict[int, Outcome] = {}

    async def spy(worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        written.update((outcome.job_id, outcome) for outcome in outcomes)
        return await complete(worker_id, outcomes)

    store.complete = spy  # type: ignore[method-assign]
    async with Worker(processor) as worker:
        assert await worker.drain() == 3
    assert not written[plain_id].has_exit_hook
    assert (written[hooked_id].has_exit_hook, written[hooked_id].run_exit_hook) == (True, True)
    # Another worker may have the hook this one does not know of: it stays due.
    assert (written[unknown_id].has_exit_hook, written[unknown_id].run_exit_hook) == (True, False)


async def test_an_outcome_the_store_failed_to_write_is_written_again(
    processor: JobProcessor,
) -> None:
    hooks: list[str] = []

    @processor.job()
    async def once(job: Job, signal: Signal) -> str:
        return "done"

    @once.on_exit
    async def after(job: Job) -> None:
        hooks.append(job.result)

    job_id = await once.enqueue()
    store = await processor._ready_store()
    complete = store.complete
    failures = [StoreError("the disk hiccuped")]

    async def flaky(worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        if failures:
            raise failures.pop()
        return await complete(worker_id, outcomes)

    store.complete = flaky  # type: ignore[method-assign]
    async with Worker(processor) as worker:
        assert await worker.drain() == 1
        assert worker.stats.ended == {"finished": 1}
    assert not failures
    job = await processor.get(job_id)
    assert (job.status, job.result) == (JobStatus.FINISHED, "done")
    assert hooks == ["done"]


# -- the signal ---------------------------------------------------------------------
async def test_signal_wait_blocking_after_and_before_set() -> None:
    signal = Signal()
    assert not await asyncio.to_thread(signal.wait_blocking, 0.01)  # not set: times out
    waiting = asyncio.ensure_future(asyncio.to_thread(signal.wait_blocking, 10))
    await asyncio.sleep(0.05)
    signal.set("cancelled")
    assert await waiting
    assert signal.wait_blocking(0)  # already set: at once
    signal.set("shutdown")
    assert signal.reason == "cancelled"  # the first reason wins


# -- memory -------------------------------------------------------------------------
async def test_a_finished_job_leaves_almost_nothing_to_the_cyclic_gc(
    processor: JobProcessor,
) -> None:
    """A job's objects (record, signal, execution, task) are freed when it ends, not
    left in reference cycles whose collection would cost a busy worker much of its time."""

    @processor.job()
    async def noop(job: Job, signal: Signal) -> None:
        return None

    async def cyclic_garbage(jobs: int) -> int:
        await processor.enqueue_many("noop", list(range(jobs)))
        gc.collect()
        gc.disable()
        try:
            async with Worker(processor, concurrency=8) as worker:
                assert await worker.drain() == jobs
            return gc.collect()
        finally:
            gc.enable()

    few, many = await cyclic_garbage(10), await cyclic_garbage(60)
    # The outcome batcher's own per-batch cycle still holds about three objects per job.
    assert (many - few) / 50 < 5
