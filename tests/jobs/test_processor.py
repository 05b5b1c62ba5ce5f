"""JobProcessor: construction, registration, producing, queries, control, inline runs, sync."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchwork.errors import InvalidCron, JobFailed, JobNotFound, PayloadError
from batchwork.jobs import CronDef, Job, JobDef, JobProcessor, JobStatus, Signal, Worker

from .clock import ManualClock


@pytest.fixture
async def processor(store_url: str, clock: ManualClock) -> AsyncIterator[JobProcessor]:
    proc = JobProcessor(store_url, clock=clock, heartbeat_interval=0.2, lease_timeout=5)
    yield proc
    await proc.close()


async def _noop(job: Job, signal: Signal) -> None:
    return None


# -- construction and registration (no loop, no I/O) -----------------------------------
def test_construction_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    processor = JobProcessor(f"sqlite:///{path}", jobs={"a": JobDef(_noop)})
    assert not path.exists()
    assert list(processor.jobs) == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker_tags": []}, "worker_tags"),
        ({"heartbeat_interval": 5, "lease_timeout": 5}, "lease_timeout"),
        ({"heartbeat_interval": -1}, "heartbeat_interval"),
        ({"shutdown_grace": -1}, "shutdown_grace"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_invalid_options_are_refused_naming_them(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JobProcessor("sqlite:///unused.db", **kwargs)


def test_unsupported_store_url_is_refused() -> None:
    with pytest.raises(ValueError, match="mysql"):
        JobProcessor("mysql://localhost/db")


def test_durations_accept_timedelta() -> None:
    processor = JobProcessor(
        "sqlite:///unused.db",
        heartbeat_interval=timedelta(seconds=2),
        lease_timeout=timedelta(minutes=1),
        shutdown_grace=timedelta(seconds=3),
    )
    assert (processor.heartbeat_interval, processor.lease_timeout) == (2.0, 60.0)
    assert processor.shutdown_grace == 3.0


def test_decorators_register_jobs_and_crons() -> None:
    processor = JobProcessor("sqlite:///unused.db")

    @processor.job(retries=2, backoff=timedelta(seconds=3), tag="t", max_runtime=60)
    async def first(job: Job, signal: Signal) -> int:
        return 1

    @processor.job
    def second(job: Job, signal: Signal) -> None: ...

    @processor.job("third-name", exclusive=True)
    async def third(job: Job, signal: Signal) -> None: ...

    @first.on_exit
    async def after(job: Job) -> None: ...

    @processor.cron("*/5 * * * *", checkin_margin=timedelta(minutes=2))
    async def tick(signal: Signal) -> None: ...

    assert set(processor.jobs) == {"first", "second", "third-name"}
    definition = processor.jobs["first"]
    assert (definition.retries, definition.backoff, definition.tag) == (2, 3.0, "t")
    assert definition.max_runtime == 60.0
    assert definition.on_exit is after
    assert processor.jobs["third-name"].exclusive
    assert processor.cron_defs["tick"].checkin_margin == 120.0
    assert processor.cron_defs["tick"].exclusive


def test_registered_job_still_calls_the_handler() -> None:
    processor = JobProcessor("sqlite:///unused.db")

    @processor.job()
    def double(job: Any, signal: Any) -> int:
        return int(job) * 2

    assert double(21, Signal()) == 42
    assert double.name == "double"


def test_duplicate_names_and_bad_crons_are_refused() -> None:
    processor = JobProcessor("sqlite:///unused.db", jobs={"a": JobDef(_noop)})
    with pytest.raises(ValueError, match="'a'"):
        processor.job("a")(_noop)
    with pytest.raises(InvalidCron, match="61 \\* \\* \\* \\*"):
        processor.cron("61 * * * *")(lambda signal: None)


def test_dict_style_registration() -> None:
    processor = JobProcessor(
        "sqlite:///unused.db",
        jobs={"import": JobDef(_noop, resumable=True, tag="io")},
        crons={"refresh": CronDef("@hourly", lambda signal: None, checkin_margin=60)},
        worker_tags=["io"],
    )
    assert processor.jobs["import"].resumable
    assert processor.cron_defs["refresh"].expression
    assert processor.worker_tags == ("io",)


# -- producing ----------------------------------------------------------------------------
async def test_enqueue_stores_a_pending_job(processor: JobProcessor, clock: ManualClock) -> None:
    processor.job("send", tag="mail")(_noop)
    job_id = await processor.enqueue("send", {"to": "a@b.c"}, priority=3)
    job = await processor.get(job_id)
    assert job.status == JobStatus.PENDING
    assert (job.name, job.payload, job.priority, job.tag) == ("send", {"to": "a@b.c"}, 3, "mail")
    assert job.type == "job"
    assert job.scheduled_for == clock.now()
    assert job.created_at.tzinfo is not None
    assert job.attempts == 0


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"at": datetime(2030, 1, 1)}, "datetime"),
        ({"x": math.nan}, "float"),
        ({1: "int key"}, "int"),
        ({"s": {1, 2}}, "set"),
    ],
)
async def test_payload_that_json_cannot_hold_is_refused_and_nothing_stored(
    processor: JobProcessor, payload: Any, named: str
) -> None:
    with pytest.raises(PayloadError, match=named):
        await processor.enqueue("send", payload)
    with pytest.raises(PayloadError):
        await processor.enqueue_many("send", [{"ok": 1}, payload])
    assert await processor.list() == []


async def test_enqueue_accepts_unregistered_names(processor: JobProcessor) -> None:
    job_id = await processor.enqueue("defined.elsewhere")
    assert (await processor.get(job_id)).name == "defined.elsewhere"


async def test_run_at_absolute_relative_and_naive(
    processor: JobProcessor, clock: ManualClock
) -> None:
    later = clock.now() + timedelta(hours=2)
    assert (await processor.get(await processor.enqueue("a", run_at=later))).scheduled_for == later
    relative = await processor.enqueue("a", run_at=timedelta(minutes=5))
    scheduled = (await processor.get(relative)).scheduled_for
    assert scheduled == clock.now() + timedelta(minutes=5)
    with pytest.raises(ValueError, match="timezone-aware"):
        await processor.enqueue("a", run_at=datetime(2030, 1, 1))


async def test_enqueue_many_in_order(processor: JobProcessor) -> None:
    ids = await processor.enqueue_many("resize", [{"i": i} for i in range(50)])
    assert len(ids) == 50
    assert ids == sorted(ids)
    jobs = await processor.list(name="resize", limit=100)
    assert [job.payload["i"] for job in jobs] == list(range(49, -1, -1))
    assert await processor.enqueue_many("resize", []) == []


async def test_unique_key_returns_the_active_job(processor: JobProcessor) -> None:
    first = await processor.enqueue("sync", unique_key="user-1")
    assert await processor.enqueue("sync", unique_key="user-1") == first
    assert await processor.enqueue("sync", unique_key="user-2") != first


async def test_exclusive_job_is_skipped_naming_the_conflict(processor: JobProcessor) -> None:
    processor.job("report", exclusive=True)(_noop)
    first = await processor.enqueue("report")
    second = await processor.enqueue("report")
    skipped = await processor.get(second)
    assert skipped.status == JobStatus.SKIPPED
    assert skipped.conflict_id == first


# -- queries and control -------------------------------------------------------------
async def test_get_unknown_id(processor: JobProcessor) -> None:
    with pytest.raises(JobNotFound):
        await processor.get(424242)


async def test_list_filters_newest_first(processor: JobProcessor) -> None:
    a = await processor.enqueue("a", tag="x")
    b = await processor.enqueue("b")
    c = await processor.enqueue("a")
    assert [j.id for j in await processor.list()] == [c, b, a]
    assert [j.id for j in await processor.list(name="a")] == [c, a]
    assert [j.id for j in await processor.list(tag="x")] == [a]
    assert [j.id for j in await processor.list(limit=1)] == [c]
    await processor.cancel(b)
    assert [j.id for j in await processor.list(status="cancelled")] == [b]


async def test_cancel_and_retry_report_whether_they_changed_something(
    processor: JobProcessor,
) -> None:
    job_id = await processor.enqueue("a")
    assert await processor.retry(job_id) is False  # not ended yet
    assert await processor.cancel(job_id) is True
    assert (await processor.get(job_id)).status == JobStatus.CANCELLED
    assert await processor.cancel(job_id) is False
    assert await processor.retry(job_id) is True
    assert (await processor.get(job_id)).status == JobStatus.PENDING
    with pytest.raises(JobNotFound):
        await processor.cancel(999999)


async def test_result_values_failures_and_timeouts(processor: JobProcessor) -> None:
    @processor.job()
    async def answer(job: Job, signal: Signal) -> Any:
        if job.payload == "fail":
            raise RuntimeError("nope")
        return job.payload

    ok = await answer.enqueue({"v": 42})
    none = await answer.enqueue(None)
    bad = await answer.enqueue("fail")
    waiting = await processor.enqueue("never.run")
    async with Worker(processor, tags=None) as worker:
        # the unknown name would be taken too; cancel it first so it stays unended
        await processor.cancel(waiting)
        await worker.drain()
    assert await processor.result(ok, timeout=5) == {"v": 42}
    assert await processor.result(none, timeout=5) is None
    with pytest.raises(JobFailed, match=f"job {bad} ended errored: RuntimeError: nope"):
        await processor.result(bad, timeout=5)
    pending = await processor.enqueue("nobody", run_at=timedelta(days=1))
    with pytest.raises(TimeoutError, match=str(pending)):
        await processor.result(pending, timeout=0.05)


async def test_result_wakes_when_a_worker_in_this_process_ends_the_job(
    processor: JobProcessor,
) -> None:
    @processor.job()
    async def slow(job: Job, signal: Signal) -> str:
        await asyncio.sleep(0.05)
        return "done"

    job_id = await slow.enqueue()
    worker = processor.worker(burst=True)
    task = asyncio.ensure_future(worker.run())
    assert await processor.result(job_id, timeout=10) == "done"
    await task


async def test_stats_timeline_workers_purge(processor: JobProcessor, clock: ManualClock) -> None:
    processor.job("ok")(_noop)
    await processor.enqueue_many("ok", [1, 2, 3])
    await processor.enqueue("later", run_at=timedelta(hours=1))
    async with Worker(processor) as worker:
        await worker.drain()
        workers = await processor.workers()
        assert worker.id in [w.id for w in workers]
    stats = await processor.stats()
    assert stats.total == 4
    assert stats.by_status == {"finished": 3, "pending": 1}
    assert stats.by_name["ok"] == {"finished": 3}
    points = await processor.timeline(since=clock.now() - timedelta(minutes=5), bucket=60)
    assert sum(p.finished for p in points) == 3
    assert await processor.purge() == 0  # retention: 90 days
    clock.advance(timedelta(days=91))
    assert await processor.purge() == 3
    assert await processor.purge(older_than=0) == 0
    assert (await processor.stats()).by_status == {"pending": 1}


# -- inline runs -------------------------------------------------------------------------
async def test_run_inline_records_the_job_and_calls_on_exit_first(
    processor: JobProcessor,
) -> None:
    seen: list[tuple[int, str, Any]] = []

    @processor.job()
    async def add(job: Job, signal: Signal) -> int:
        return int(job.payload["a"] + job.payload["b"])

    @add.on_exit
    async def after(job: Job) -> None:
        seen.append((job.id, job.status, job.result))

    job = await processor.run("add", {"a": 2, "b": 3})
    assert job.status == JobStatus.FINISHED
    assert job.result == 5
    assert job.attempts == 1
    assert seen == [(job.id, "finished", 5)]
    assert (await processor.get(job.id)).status == JobStatus.FINISHED
    assert await processor.workers() == []  # the inline worker row is gone


async def test_run_inline_retries_then_errors(processor: JobProcessor) -> None:
    exits: list[int] = []

    @processor.job(retries=2, backoff=0.001)
    def flaky(job: Job, signal: Signal) -> None:
        raise ValueError("always")

    @flaky.on_exit
    def after(job: Job) -> None:
        exits.append(job.attempts)

    job = await processor.run("flaky")
    assert job.status == JobStatus.ERRORED
    assert job.attempts == 3
    assert job.error is not None
    assert job.error.startswith("ValueError: always")
    assert exits == [3]


async def test_run_inline_refuses_unknown_names_and_bad_payloads(
    processor: JobProcessor,
) -> None:
    processor.job("known")(_noop)
    with pytest.raises(LookupError, match="'ghost'"):
        await processor.run("ghost")
    with pytest.raises(PayloadError, match="object"):
        await processor.run("known", {"x": object()})
    assert await processor.list() == []


async def test_run_inline_can_be_cancelled_by_id(processor: JobProcessor) -> None:
    started = asyncio.Event()

    @processor.job()
    async def waits(job: Job, signal: Signal) -> str:
        started.set()
        await signal.wait()
        return "stopped early"

    run = asyncio.ensure_future(processor.run("waits"))
    await asyncio.wait_for(started.wait(), 5)
    [running] = await processor.list(status="running")
    assert await processor.cancel(running.id) is True
    job = await run
    assert job.status == JobStatus.CANCELLED


# -- crons ----------------------------------------------------------------------------
async def test_crons_lists_registered_crons(processor: JobProcessor) -> None:
    @processor.cron("*/5 * * * *", timezone="Europe/Paris")
    async def refresh(signal: Signal) -> None: ...

    async with Worker(processor) as worker:
        await worker.run_once()
    [info] = await processor.crons()
    assert info.name == "refresh"
    assert info.timezone == "Europe/Paris"
    assert info.next_tick is not None


# -- blocking twins -------------------------------------------------------------------
def test_sync_twins_from_plain_threads(tmp_path: Path) -> None:
    processor = JobProcessor(f"sqlite:///{tmp_path / 'sync.db'}")
    processor.job("echo")(_noop)
    sync = processor.sync
    try:
        ids: list[int] = []

        def produce() -> None:
            ids.append(sync.enqueue("echo", {"n": 1}))

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids.extend(sync.enqueue_many("echo", [{"n": 2}, {"n": 3}]))
        assert len(set(ids)) == 6
        assert sync.get(ids[0]).status == JobStatus.PENDING
        assert len(sync.list(name="echo")) == 6
        assert sync.cancel(ids[0]) is True
        assert sync.retry(ids[0]) is True
        with pytest.raises(TimeoutError):
            sync.result(ids[0], timeout=0.01)
        with pytest.raises(PayloadError):
            sync.enqueue("echo", {"bad": object()})
        assert processor.sync is sync  # one helper loop, not one per call
    finally:
        sync.close()


def test_jobs_exports_are_sorted_and_complete() -> None:
    import batchwork.jobs

    assert batchwork.jobs.__all__ == sorted(batchwork.jobs.__all__)
    for name in ("CronDef", "Job", "JobDef", "JobProcessor", "Signal", "Worker"):
        assert name in batchwork.jobs.__all__
        assert getattr(batchwork.jobs, name).__name__ == name
