"""Crons end to end: JobProcessor + stepped workers + a manual clock, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest

from batchwork.errors import InvalidCron
from batchwork.jobs import CronDef, Job, JobProcessor, Signal
from batchwork.jobs._model import JobStatus, JobType
from batchwork.jobs._worker import Worker

from .clock import ManualClock

MakeProcessor = Callable[..., JobProcessor]


@pytest.fixture
def at_hour(clock: ManualClock) -> ManualClock:
    """The clock moved to the next whole hour (close to a database's own clock)."""
    clock.set(clock.now().replace(minute=0, second=0) + timedelta(hours=1))
    return clock


@pytest.fixture
async def make(store_url: str, at_hour: ManualClock) -> AsyncIterator[MakeProcessor]:
    """Build processors on one store (as separate processes would), closed afterwards."""
    made: list[JobProcessor] = []

    def build(**options: Any) -> JobProcessor:
        # A lease far longer than the test's clock jumps: only the crons are under test.
        defaults: dict[str, Any] = {
            "clock": at_hour,
            "heartbeat_interval": 0.2,
            "lease_timeout": 10 * 24 * 3600,
            "shutdown_grace": 0.2,
        }
        processor = JobProcessor(store_url, **{**defaults, **options})
        made.append(processor)
        return processor

    yield build
    for processor in made:
        await processor.close()


async def started(stack: AsyncExitStack, *workers: Worker) -> list[Worker]:
    """Start the workers at the same time and stop them when the test ends."""
    await asyncio.gather(*(w.start() for w in workers))
    return [await stack.enter_async_context(w) for w in workers]


async def records(processor: JobProcessor, name: str) -> list[Job]:
    jobs = await processor.list(name=name, limit=1000)
    ticks = [job for job in jobs if job.type is JobType.CRON_TASK]
    return sorted(ticks, key=lambda job: job.scheduled_for)


def statuses(jobs: list[Job]) -> list[str]:
    return [str(job.status) for job in jobs]


async def test_each_tick_runs_once_across_workers(
    make: MakeProcessor, at_hour: ManualClock
) -> None:
    calls: list[int] = []

    async def minutely(signal: Signal) -> None:
        calls.append(1)

    processors = [make(crons={"minutely": CronDef("* * * * *", minutely)}) for _ in range(4)]
    start = at_hour.now()
    async with AsyncExitStack() as stack:
        workers = await started(stack, *(p.worker(concurrency=2) for p in processors))
        for _ in range(5):
            at_hour.advance(60)
            await asyncio.gather(*(w.run_once() for w in workers))
    ticks = await records(processors[0], "minutely")
    assert [job.scheduled_for for job in ticks] == [
        start + timedelta(minutes=m) for m in range(1, 6)
    ]
    assert statuses(ticks) == ["finished"] * 5
    assert len(calls) == 5


async def test_outage_gives_one_run_and_missed_records(
    make: MakeProcessor, at_hour: ManualClock
) -> None:
    processor = make()
    calls: list[int] = []

    @processor.cron("*/5 * * * *")
    async def five(signal: Signal) -> None:
        calls.append(1)

    async with AsyncExitStack() as stack:
        [worker] = await started(stack, processor.worker())
        at_hour.advance(3 * 3600 + 60)  # three hours without a pass
        await worker.run_once()
        await worker.run_once()
    ticks = await records(processor, "five")
    assert len(calls) == 1
    assert statuses(ticks) == ["missed"] * 35 + ["finished"]
    [info] = await processor.crons()
    assert info.missed == 35
    assert info.last_status == "finished"


async def test_max_runtime_times_out_and_calls_on_exit(
    make: MakeProcessor, at_hour: ManualClock
) -> None:
    processor = make()
    exits: list[str] = []

    @processor.cron("* * * * *", max_runtime=0.1)
    async def stubborn(signal: Signal) -> None:
        await asyncio.sleep(30)  # ignores the signal: stopped after the grace

    @stubborn.on_exit
    async def after(job: Job) -> None:
        exits.append(str(job.status))

    async with AsyncExitStack() as stack:
        [worker] = await started(stack, processor.worker())
        at_hour.advance(60)
        await worker.run_once()
        await worker.run_once()
    [tick] = await records(processor, "stubborn")
    assert tick.status is JobStatus.TIMED_OUT
    assert exits == ["timed_out"]
    [info] = await processor.crons()
    assert info.overran


async def test_exclusive_cron_skips_a_tick_only_while_the_last_one_runs(
    make: MakeProcessor, at_hour: ManualClock
) -> None:
    release, running = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    async def slow_first(signal: Signal) -> None:
        calls.append(1)
        if len(calls) == 1:
            running.set()
            await release.wait()

    crons = {"sync": CronDef("* * * * *", slow_first)}
    first, second = make(crons=crons), make(crons=crons)
    async with AsyncExitStack() as stack:
        busy, free = await started(stack, first.worker(), second.worker())
        at_hour.advance(60)
        blocked = asyncio.ensure_future(busy.run_once())
        await asyncio.wait_for(running.wait(), 10)
        at_hour.advance(60)
        await free.run_once()  # tick 2 while tick 1 runs: skipped
        release.set()
        await asyncio.wait_for(blocked, 10)
        at_hour.advance(60)
        await free.run_once()  # tick 3 after tick 1 ended: runs
        at_hour.advance(60)
        await free.run_once()  # tick 4: runs too, no alternate skipping
    ticks = await records(first, "sync")
    assert statuses(ticks) == ["finished", "skipped", "finished", "finished"]
    assert ticks[1].conflict_id == ticks[0].id
    assert len(calls) == 3


async def test_worker_start_reconciles_crons(make: MakeProcessor, at_hour: ManualClock) -> None:
    async def noop(signal: Signal) -> None:
        return None

    old = make(
        crons={
            "keep": CronDef("* * * * *", noop),
            "gone": CronDef("* * * * *", noop),
            "change": CronDef("0 * * * *", noop),
        }
    )
    async with AsyncExitStack() as stack:
        [worker] = await started(stack, old.worker(concurrency=1))
        at_hour.advance(60)
        await worker.run_once()  # runs "keep"; "gone" waits for a free slot
    assert statuses(await records(old, "gone")) == ["pending"]

    restart = at_hour.advance(30)
    new = make(
        crons={
            "keep": CronDef("* * * * *", noop),
            "change": CronDef("*/10 * * * *", noop),
            "fresh": CronDef("* * * * *", noop),
        }
    )
    async with AsyncExitStack() as stack:
        # Many workers starting at once leave one stored cron each.
        await started(stack, *(new.worker() for _ in range(5)))
        infos = {info.name: info for info in await new.crons()}
    assert sorted(infos) == ["change", "fresh", "keep"]
    assert await records(new, "gone") == []  # its pending tick was dropped
    assert infos["change"].expression == "*/10 * * * *"
    assert infos["change"].next_tick == restart - timedelta(seconds=90) + timedelta(minutes=10)
    assert infos["fresh"].next_tick == restart + timedelta(seconds=30)


async def test_tags_route_crons(make: MakeProcessor, at_hour: ManualClock) -> None:
    ran: list[str] = []

    def handler(name: str) -> Callable[[Signal], Any]:
        async def run(signal: Signal) -> None:
            ran.append(name)

        return run

    crons = {
        "plain": CronDef("* * * * *", handler("plain")),
        "gpu": CronDef("* * * * *", handler("gpu"), tag="gpu"),
        "cpu": CronDef("* * * * *", handler("cpu"), tag="cpu"),
    }
    processor = make(crons=crons)
    async with AsyncExitStack() as stack:
        [gpu] = await started(stack, processor.worker(tags=["gpu"]))
        assert len(await processor.crons()) == 3  # a tagged worker stores every cron
        at_hour.advance(60)
        await gpu.run_once()
        assert sorted(ran) == ["gpu", "plain"]
        assert await records(processor, "cpu") == []
        [cpu] = await started(stack, processor.worker(tags=["cpu"]))
        await cpu.run_once()
    assert sorted(ran) == ["cpu", "gpu", "plain"]


async def test_crons_flags_a_late_cron_when_no_worker_runs(
    make: MakeProcessor, at_hour: ManualClock
) -> None:
    processor = make()

    @processor.cron("*/5 * * * *", checkin_margin=60)
    async def five(signal: Signal) -> None:
        return None

    async with AsyncExitStack() as stack:
        await started(stack, processor.worker())
    [info] = await processor.crons()
    assert not info.late
    assert info.description == "Every fifth minute of every hour"
    at_hour.advance(5 * 60 + 61)  # the tick is a margin overdue and nobody fired it
    [info] = await processor.crons()
    assert info.late
    assert info.next_tick == at_hour.now() - timedelta(seconds=61)


def test_invalid_cron_is_refused_at_registration(tmp_path: Any) -> None:
    processor = JobProcessor(f"sqlite:///{tmp_path / 'unused.db'}")

    async def handler(signal: Signal) -> None:
        return None

    with pytest.raises(InvalidCron, match=r"'61 \* \* \* \*'.*bad minute"):
        processor.cron("61 * * * *")(handler)
    with pytest.raises(InvalidCron, match="@reboot"):
        JobProcessor(
            f"sqlite:///{tmp_path / 'unused.db'}", crons={"x": CronDef("@reboot", handler)}
        )
