"""``run_worker`` closes this loop's store when it returns; work still running on that
store in the same loop (another worker, an inline ``run``) must keep its store."""

from __future__ import annotations

import asyncio
import contextlib

from batchwork.jobs import Job, JobProcessor, Signal


async def test_a_returning_worker_leaves_the_other_workers_store_open(store_url: str) -> None:
    processor = JobProcessor(
        store_url, heartbeat_interval=0.2, lease_timeout=5.0, shutdown_grace=0.2
    )
    started = asyncio.Event()
    release = asyncio.Event()

    @processor.job(tag="slow")
    async def slow(job: Job, signal: Signal) -> str:
        started.set()
        await release.wait()
        return "done"

    job_id = await processor.enqueue("slow")
    second = asyncio.create_task(processor.run_worker(concurrency=1, tags=["slow"], burst=True))
    try:
        await asyncio.wait_for(started.wait(), 10)
        # another worker of this process, for other tags, finds nothing and returns
        await processor.run_worker(concurrency=1, tags=["other"], burst=True)
        release.set()
        await asyncio.wait_for(second, 10)
        assert await processor.result(job_id, timeout=10) == "done"
    finally:
        release.set()
        second.cancel()
        with contextlib.suppress(BaseException):
            await second
        await processor.close()


async def test_a_returning_worker_leaves_an_inline_runs_store_open(store_url: str) -> None:
    processor = JobProcessor(
        store_url, heartbeat_interval=0.2, lease_timeout=5.0, shutdown_grace=0.2
    )
    started = asyncio.Event()
    release = asyncio.Event()

    @processor.job()
    async def slow(job: Job, signal: Signal) -> str:
        started.set()
        await release.wait()
        return "done"

    run = asyncio.create_task(processor.run("slow"))
    try:
        await asyncio.wait_for(started.wait(), 10)
        await processor.run_worker(concurrency=1, burst=True)
        release.set()
        job = await asyncio.wait_for(run, 10)
        assert job.status == "finished"
        assert (await processor.get(job.id)).result == "done"
    finally:
        release.set()
        run.cancel()
        with contextlib.suppress(BaseException):
            await run
        await processor.close()
