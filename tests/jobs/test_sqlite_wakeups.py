"""SQLite wake-ups across processes: a job committed between the instant a claim takes as
``now`` and its transaction is not due for that claim, and must not be slept through."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from batchwork.jobs._sqlite import SQLiteStore

from .clock import ManualClock
from .store_helpers import new_job, worker


async def test_sqlite_a_commit_just_before_a_short_claim_wakes_the_next_wait(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    consumer, producer = SQLiteStore(url), SQLiteStore(url)  # two processes, in effect
    await consumer.open()
    await producer.open()
    try:
        await consumer.register_worker(worker(clock))
        claim_now = clock.now()
        assert await consumer.claim("w1", tags=None, limit=10, now=claim_now) == []
        # Enqueued just after the worker took ``now`` for its next claim, committed
        # before that claim's transaction: not due for it.
        later = claim_now + timedelta(milliseconds=1)
        await producer.enqueue([new_job(later)], now=later)
        assert await consumer.claim("w1", tags=None, limit=10, now=claim_now) == []
        # The wait returns within a poll instead of sleeping its whole 60 s, and a claim
        # with a fresh ``now`` takes the job; after that, the wait sleeps again.
        await asyncio.wait_for(consumer.wait_for_work(60), 10)
        [claimed] = await consumer.claim("w1", tags=None, limit=10, now=later)
        assert claimed.job.scheduled_for == later
        sleeper = asyncio.create_task(consumer.wait_for_work(60))
        await asyncio.sleep(0.2)
        assert not sleeper.done()
        sleeper.cancel()
    finally:
        await producer.close()
        await consumer.close()
