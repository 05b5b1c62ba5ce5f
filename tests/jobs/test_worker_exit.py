"""A worker process's event loop can end: ``run_worker`` leaves no task of its store behind.

``asyncio.run`` cancels every task left when its main coroutine returns and waits for them.
A psycopg pool task that is connecting when cancelled catches the cancellation and waits for
more work, forever: a worker that shut down gracefully then never exits (seen once in four
full runs of the cron process test, its pool growing during the shutdown).
"""

from __future__ import annotations

import asyncio

from batchwork.jobs import Job, JobProcessor, Signal


async def test_run_worker_leaves_no_task_behind(store_url: str) -> None:
    processor = JobProcessor(store_url, heartbeat_interval=0.2, lease_timeout=1.0)

    @processor.job()
    async def noop(job: Job, signal: Signal) -> None:
        """Nothing: the test is about what the worker leaves when it returns."""

    try:
        await processor.enqueue_many("noop", list(range(20)))
        await processor.run_worker(concurrency=4, burst=True)
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert left == []
    finally:
        await processor.close()
