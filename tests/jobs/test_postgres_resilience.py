"""The PostgreSQL store under connection loss: its sessions are terminated again and again
in the middle of enqueue, claim and complete traffic, and no job is lost or run twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import uuid4

import psycopg
import pytest

from batchwork.errors import StoreError
from batchwork.jobs._model import JobStatus
from batchwork.jobs._postgres import PostgresStore

from ..backends import POSTGRES_DSN as DSN
from ..backends import postgres_url
from .clock import ManualClock
from .store_helpers import new_job, outcome, worker

JOBS = 400


async def _terminate(app: str, times: int, stop: asyncio.Event) -> int:
    """Terminate every session named ``app`` every few tens of milliseconds."""
    killed = 0
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        for _ in range(times):
            if stop.is_set():
                break
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            )
            row = await cur.fetchone()
            killed += row[0] if row else 0
            await asyncio.sleep(0.04)
    return killed


async def test_terminated_sessions_lose_no_job_and_run_none_twice(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = f"bw_chaos_{uuid4().hex[:8]}"
    store = PostgresStore(postgres_url(DSN, schema) + f"&application_name={app}")
    await store.open()
    clock = ManualClock(store.now())
    await store.register_worker(worker(clock))
    acknowledged: dict[int, int] = {}  # payload number -> job id
    executed: list[int] = []
    produced = asyncio.Event()
    stop = asyncio.Event()

    async def produce() -> None:
        n = 0
        while n < JOBS:
            size = 1 if n % 40 < 20 else 20  # one call each, then batches (COPY)
            batch = [new_job(clock.now(), "chaos", {"n": n + i}) for i in range(size)]
            with contextlib.suppress(StoreError):  # not acknowledged: send it again
                ids = await store.enqueue(batch, now=clock.now())
                for i, job_id in enumerate(ids):
                    assert job_id is not None
                    acknowledged[n + i] = job_id
                n += size
        produced.set()

    async def work() -> None:
        while True:
            try:
                claimed = await store.claim("w1", tags=None, limit=25, now=clock.now())
            except StoreError:
                continue
            if not claimed:
                if produced.is_set() and await _drained(store):
                    return
                await asyncio.sleep(0.01)
                continue
            executed.extend(c.job.id for c in claimed)
            outcomes = [outcome(c, clock) for c in claimed]
            while True:  # a completion is retried until its write is confirmed
                try:
                    written = await store.complete("w1", outcomes)
                except StoreError:
                    continue
                assert written == {c.job.id for c in claimed}
                break

    caplog.set_level(logging.WARNING, logger="batchwork.postgres")
    try:
        chaos = asyncio.create_task(_terminate(app, 60, stop))
        await asyncio.wait_for(asyncio.gather(produce(), work()), timeout=90)
        stop.set()
        killed = await chaos
        assert killed > 10, "the test did not terminate sessions during the traffic"
        jobs = await store.list_jobs(limit=10 * JOBS)
    finally:
        await store.close()

    # every acknowledged enqueue exists; an unacknowledged one may exist too (sent again)
    ids = {job.id for job in jobs}
    assert set(acknowledged.values()) <= ids
    assert {job.payload["n"] for job in jobs} == set(range(JOBS))
    # every job ran exactly once and ended finished
    assert sorted(executed) == sorted(ids)
    assert {job.status for job in jobs} == {JobStatus.FINISHED}
    assert all(job.attempts == 1 for job in jobs)
    assert any("unreachable" in r.getMessage() for r in caplog.records)


async def _drained(store: PostgresStore) -> bool:
    try:
        counts = await store.counts()
    except StoreError:
        return False
    return all(status is JobStatus.FINISHED for _, status in counts)
