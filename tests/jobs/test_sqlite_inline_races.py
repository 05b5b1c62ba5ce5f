"""Review guards on the SQLite store's inline enqueue: several event loops and threads
on one store, close() racing with enqueues, a lock held by another connection."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from batchwork.errors import StoreError
from batchwork.jobs._model import JobStatus
from batchwork.jobs._sqlite import SQLiteStore

from .clock import ManualClock
from .store_helpers import new_job


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


async def test_enqueues_from_several_loops_on_one_store_all_land(
    store: SQLiteStore, clock: ManualClock
) -> None:
    results: dict[int, list[int | None]] = {}
    errors: list[BaseException] = []

    async def produce(thread: int) -> None:
        calls = [
            store.enqueue([new_job(clock.now(), f"t{thread}-{i}")], now=clock.now())
            for i in range(30)
        ]
        results[thread] = [ids[0] for ids in await asyncio.gather(*calls)]

    def run(thread: int) -> None:
        try:
            asyncio.run(produce(thread))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    def run_all() -> None:
        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # this loop enqueues too while the four threads' loops do
    await asyncio.gather(asyncio.to_thread(run_all), produce(99))
    assert errors == []
    every = [job_id for ids in results.values() for job_id in ids]
    assert len(every) == len(set(every)) == 150
    names: dict[int | None, str] = {job.id: job.name for job in await store.list_jobs(limit=1000)}
    for thread, ids in results.items():
        assert [names[job_id] for job_id in ids] == [f"t{thread}-{i}" for i in range(30)]


async def test_close_racing_with_enqueues_never_hangs_nor_loses_an_answered_job(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    for round_ in range(20):
        store = SQLiteStore(url)
        await store.open()
        calls = [
            asyncio.create_task(
                store.enqueue([new_job(clock.now(), f"r{round_}-{i}")], now=clock.now())
            )
            for i in range(5)
        ]
        if round_ % 2:
            await asyncio.sleep(0)
        await asyncio.wait_for(store.close(), 10)
        done, _ = await asyncio.wait(calls, timeout=10)
        assert len(done) == len(calls)  # answered, one way or the other
        answered = [c.result()[0] for c in calls if c.exception() is None]
        for call in calls:
            if call.exception() is not None:
                assert isinstance(call.exception(), StoreError)
        async with SQLiteStore(url) as check:
            stored = {
                j.id for j in await check.list_jobs(limit=100) if j.name.startswith(f"r{round_}-")
            }
        assert set(answered) <= stored


async def test_an_inline_group_with_a_cancelled_and_a_failing_call_writes_the_rest(
    store: SQLiteStore, clock: ManualClock
) -> None:
    calls = [
        asyncio.create_task(store.enqueue([new_job(clock.now(), f"j{i}")], now=clock.now()))
        for i in range(6)
    ]
    bad = asyncio.create_task(
        store.enqueue([new_job(clock.now(), status=JobStatus.RUNNING)], now=clock.now())
    )
    calls[2].cancel()
    results = await asyncio.gather(*calls, bad, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert isinstance(results[6], ValueError)
    names = sorted(job.name for job in await store.list_jobs())
    assert names == ["j0", "j1", "j3", "j4", "j5"]
