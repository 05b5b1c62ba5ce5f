"""The SQLite store's inline enqueue: a lone write committed on the caller's thread when
the write lock is free at once, and on the writer thread otherwise."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from batchwork.errors import StoreError
from batchwork.jobs import _sqlite, _sqlite_thread
from batchwork.jobs._model import JobStatus
from batchwork.jobs._sqlite import SQLiteStore

from .clock import ManualClock
from .store_helpers import new_job


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


async def test_sqlite_a_lone_enqueue_commits_inline(store: SQLiteStore, clock: ManualClock) -> None:
    before = store.stats
    [job_id] = await store.enqueue([new_job(clock.now(), "a")], now=clock.now())
    after = store.stats
    assert after.inline_transactions == before.inline_transactions + 1
    assert after.transactions == before.transactions
    assert job_id is not None
    assert (await store.get(job_id)).status is JobStatus.PENDING  # another connection sees it


async def test_sqlite_inline_enqueue_keeps_unique_keys_and_errors(
    store: SQLiteStore, clock: ManualClock
) -> None:
    first = await store.enqueue([new_job(clock.now(), unique_key="k")], now=clock.now())
    again = await store.enqueue([new_job(clock.now(), unique_key="k")], now=clock.now())
    assert first == again
    with pytest.raises(ValueError, match="cannot start running"):
        await store.enqueue([new_job(clock.now(), status=JobStatus.RUNNING)], now=clock.now())
    assert store.stats.failed_transactions == 1  # the writer thread ran it again, and failed
    assert len(await store.list_jobs()) == 1


async def test_sqlite_concurrent_inline_enqueues_share_one_transaction(
    store: SQLiteStore, clock: ManualClock
) -> None:
    calls = [store.enqueue([new_job(clock.now(), f"j{i}")], now=clock.now()) for i in range(50)]
    bad = store.enqueue([new_job(clock.now(), status=JobStatus.RUNNING)], now=clock.now())
    results = await asyncio.gather(*calls[:25], bad, *calls[25:], return_exceptions=True)
    assert isinstance(results[25], ValueError)  # undone, then refused by the writer thread
    ids = [result[0] for result in results if isinstance(result, list)]
    assert len(set(ids)) == 50
    stats = store.stats
    assert stats.inline_transactions == 1
    assert stats.failed_transactions == 1
    names: dict[int | None, str] = {job.id: job.name for job in await store.list_jobs(limit=100)}
    assert [names[job_id] for job_id in ids] == [f"j{i}" for i in range(50)]


async def test_sqlite_a_cancelled_inline_enqueue_writes_nothing(
    store: SQLiteStore, clock: ManualClock
) -> None:
    call = asyncio.create_task(store.enqueue([new_job(clock.now())], now=clock.now()))
    await asyncio.sleep(0)  # the call is queued for this loop turn's transaction
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await store.enqueue([new_job(clock.now(), "after")], now=clock.now())
    assert [job.name for job in await store.list_jobs()] == ["after"]


async def test_sqlite_inline_enqueue_wakes_a_waiting_worker(
    store: SQLiteStore, clock: ManualClock
) -> None:
    await store.claim("w1", tags=None, limit=10, now=clock.now())  # nothing: marks the mark
    waiter = asyncio.create_task(store.wait_for_work(60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.enqueue([new_job(clock.now())], now=clock.now())
    await asyncio.wait_for(waiter, 10)
    assert store.stats.inline_transactions == 1


async def test_sqlite_enqueue_goes_to_the_writer_while_another_process_writes(
    store: SQLiteStore, clock: ManualClock, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        calls = [
            asyncio.create_task(store.enqueue([new_job(clock.now(), f"j{i}")], now=clock.now()))
            for i in range(5)
        ]
        await asyncio.sleep(0.05)
        # the writer thread waits for the lock; the loop does not
        assert not any(call.done() for call in calls)
        other.execute("COMMIT")
        results = await asyncio.wait_for(asyncio.gather(*calls), 10)
    finally:
        other.close()
    # each call written exactly once
    assert sorted(job.name for job in await store.list_jobs()) == [f"j{i}" for i in range(5)]
    assert len({ids[0] for ids in results}) == 5
    assert store.stats.inline_transactions == 0
    assert store.stats.transactions >= 1


async def test_sqlite_no_inline_enqueue_with_full_sync(tmp_path: Path, clock: ManualClock) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}", synchronous="FULL")
    await store.open()
    try:
        await store.enqueue([new_job(clock.now())], now=clock.now())
        assert store.stats.inline_transactions == 0
        assert store.stats.transactions >= 1
    finally:
        await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.enqueue([new_job(clock.now())], now=clock.now())


async def test_sqlite_large_enqueues_go_to_the_writer(
    store: SQLiteStore, clock: ManualClock
) -> None:
    jobs = [new_job(clock.now()) for _ in range(_sqlite.INLINE_MAX_JOBS + 1)]
    assert len(await store.enqueue(jobs, now=clock.now())) == len(jobs)
    assert store.stats.inline_transactions == 0


async def test_sqlite_inline_commits_ask_the_writer_for_checkpoints(
    store: SQLiteStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_thread, "CHECKPOINT_EVERY", 3)
    before = store.stats.writer_calls
    for _ in range(6):
        await store.enqueue([new_job(clock.now())], now=clock.now())
    writer, _ = store._threads()
    log, done = await writer.call(
        lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:]
    )
    assert store.stats.writer_calls - before == 3  # two posted checkpoints and this call
    assert log == done


async def test_sqlite_closed_store_refuses_enqueues(tmp_path: Path, clock: ManualClock) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.enqueue([new_job(clock.now())], now=clock.now())
    assert store.stats.inline_transactions == 0


async def test_sqlite_a_posted_call_runs_outside_the_group_transaction(tmp_path: Path) -> None:
    path = tmp_path / "posted.db"
    thread = _sqlite_thread.ConnectionThread(
        "writer", lambda: sqlite3.connect(path, isolation_level=None), on_commit=None
    )
    thread.start()
    try:
        gate = threading.Event()
        seen: list[bool] = []
        # The first call holds the thread, so the next write and the posted call queue up
        # behind it and are taken as one group.
        blocker = asyncio.ensure_future(thread.call(lambda conn: gate.wait(10)))
        await asyncio.sleep(0.05)
        write = asyncio.ensure_future(
            thread.call(lambda conn: conn.execute("CREATE TABLE t (x)"), write=True)
        )
        thread.post(lambda conn: seen.append(conn.in_transaction))
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        await write
        await thread.call(lambda conn: None)  # the posted call ran before this one
        assert seen == [False]
    finally:
        thread.stop()
