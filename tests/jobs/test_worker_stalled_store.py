"""The worker over a stalled store: the backlog of unwritten outcomes is bounded, and a
store call that swallows a cancellation (a background loop's, or the claim's when the
worker is cancelled) does not keep the worker from stopping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pytest

from batchwork.jobs import Job, JobProcessor, JobStatus, Signal, Worker
from batchwork.jobs._model import Claimed, Outcome
from batchwork.jobs._worker import _BACKLOG_PER_SLOT

from .apps.support import wait_until
from .clock import ManualClock

CONCURRENCY = 2
BACKLOG = _BACKLOG_PER_SLOT * CONCURRENCY


@pytest.fixture
async def processor(store_url: str, clock: ManualClock) -> AsyncIterator[JobProcessor]:
    proc = JobProcessor(
        store_url, clock=clock, heartbeat_interval=0.05, lease_timeout=5, shutdown_grace=0.3
    )
    yield proc
    await proc.close()


async def test_claims_pause_while_too_many_outcomes_are_unwritten(
    processor: JobProcessor,
) -> None:
    """With every ``complete`` held, the worker claims only while at most ``BACKLOG``
    ended jobs await their write, and claims the rest once the writes go through."""
    total = BACKLOG + 5 * CONCURRENCY
    ran = 0

    @processor.job()
    async def noop(job: Job, signal: Signal) -> None:
        nonlocal ran
        ran += 1

    await processor.enqueue_many("noop", [None] * total)
    store = await processor._ready_store()
    claim, complete = store.claim, store.complete
    writes = asyncio.Event()
    held = written = 0
    unwritten_at_claims: list[int] = []

    async def counted_claim(
        worker_id: str, *, tags: Sequence[str] | None, limit: int, now: datetime
    ) -> list[Claimed]:
        nonlocal held
        # Held jobs either run (their slots are the ones not free) or await their write.
        unwritten_at_claims.append(held - written - (CONCURRENCY - limit))
        claimed = await claim(worker_id, tags=tags, limit=limit, now=now)
        held += len(claimed)
        return claimed

    async def held_complete(worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        nonlocal written
        await writes.wait()
        done = await complete(worker_id, outcomes)
        written += len(outcomes)
        return done

    store.claim = counted_claim  # type: ignore[method-assign]
    store.complete = held_complete  # type: ignore[method-assign]
    worker = Worker(processor, concurrency=CONCURRENCY)
    run = asyncio.ensure_future(worker.run())

    async def parked() -> bool:
        return held > BACKLOG and ran == held

    async def all_written() -> bool:
        return written == total

    try:
        await wait_until(parked)
        assert held <= BACKLOG + CONCURRENCY < total
        assert max(unwritten_at_claims) <= BACKLOG
        writes.set()
        await wait_until(all_written)
    finally:
        writes.set()
        worker.stop()
        await asyncio.wait_for(run, 10)
    assert max(unwritten_at_claims) <= BACKLOG
    assert worker.stats.ended == {"finished": total}
    assert (await processor.stats()).by_status.get(JobStatus.FINISHED) == total


@pytest.mark.parametrize("call", ["heartbeat", "recover"])
async def test_a_loop_whose_store_call_swallows_its_cancel_still_stops(
    processor: JobProcessor, call: str
) -> None:
    """Like psycopg_pool on Python 3.11, when a connection is handed over just as the
    cancellation lands: the call returns normally, and the loop must not go on."""
    store = await processor._ready_store()
    real = getattr(store, call)
    calls = 0
    swallowed = False

    async def stalls_then_swallows(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls, swallowed
        calls += 1
        try:
            await asyncio.Event().wait()  # no connection comes until the cancel
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
        return await real(*args, **kwargs)

    setattr(store, call, stalls_then_swallows)
    worker = Worker(processor, concurrency=1)
    run = asyncio.ensure_future(worker.run())

    async def stalled() -> bool:
        return calls > 0

    await wait_until(stalled)
    worker.stop()
    await asyncio.wait_for(run, 10)
    assert swallowed


async def test_a_claim_that_swallows_the_cancel_of_run_still_stops_the_worker(
    processor: JobProcessor,
) -> None:
    """The swallowed cancellation still counts: ``run`` shuts down and raises it."""
    store = await processor._ready_store()
    claim = store.claim
    calls = 0
    swallowed = False

    async def stalls_then_swallows(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls, swallowed
        calls += 1
        if not swallowed:
            try:
                await asyncio.Event().wait()  # no connection comes until the cancel
            except asyncio.CancelledError:
                swallowed = True
        return await claim(*args, **kwargs)

    store.claim = stalls_then_swallows  # type: ignore[method-assign]
    worker = Worker(processor, concurrency=1)
    run = asyncio.ensure_future(worker.run())

    async def stalled() -> bool:
        return calls > 0

    await wait_until(stalled)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    assert swallowed
    assert await processor.workers() == []  # shut down and unregistered
