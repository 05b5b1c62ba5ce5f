"""What only the SQLite store promises: URLs, pragmas, migrations, the transition guards,
error mapping, group commit and the claim index."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest

from batchwork.errors import StoreError
from batchwork.jobs import _sqlite_batch as batch
from batchwork.jobs._model import JobStatus, NewJob, WorkerInfo
from batchwork.jobs._sqlite import SQLiteStore, SQLiteStoreStats
from batchwork.jobs._sqlite_ops import due_jobs_sql
from batchwork.jobs._sqlite_schema import migrations, split_statements
from batchwork.jobs._store import Store, store_from_url

from .clock import ManualClock
from .store_helpers import add, new_job


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


async def pragma(store: SQLiteStore, name: str) -> object:
    writer, _ = store._threads()
    return await writer.call(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])


def test_sqlite_store_is_a_store(tmp_path: Path) -> None:
    store: Store = store_from_url(url_of(tmp_path / "a.db"))
    assert isinstance(store, SQLiteStore)
    assert store.url == url_of(tmp_path / "a.db")
    assert not (tmp_path / "a.db").exists()  # no I/O before open()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "mysql:///x.db",
        "sqlite:///x.db?synchronous=OFF",
    ],
)
def test_sqlite_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite|synchronous|store URL"):
        SQLiteStore(url)


def test_sqlite_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(url_of(tmp_path / "a.db"), synchronous="EXTRA-FAST")
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore(url_of(tmp_path / "a.db", "?busy_timeout=-1"))


async def test_sqlite_relative_paths_and_pragmas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("sqlite:///sub/dir/jobs.db")
    await store.open()
    try:
        assert (tmp_path / "sub" / "dir" / "jobs.db").exists()
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 1  # NORMAL
        assert await pragma(store, "busy_timeout") == 10_000
    finally:
        await store.close()
    full = SQLiteStore("sqlite:///sub/dir/jobs.db?synchronous=full&busy_timeout=0.25")
    assert (full.synchronous, full.busy_timeout) == ("FULL", 0.25)
    await full.open()
    try:
        assert await pragma(full, "synchronous") == 2  # FULL
        assert await pragma(full, "busy_timeout") == 250
    finally:
        await full.close()


async def test_sqlite_schema_versions_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    for _ in range(2):
        store = SQLiteStore(url_of(path))
        await store.open()
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM batchwork_schema")]
    assert versions == [number for number, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(url_of(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO batchwork_schema VALUES (999, 0)")
    with pytest.raises(StoreError, match="999"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.get(1)


def test_sqlite_migration_scripts_split_into_statements() -> None:
    script = "CREATE TABLE a (x);\n-- note\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n"
    script += "  SELECT 1; SELECT 2;\nEND;\n\n-- trailing comment\n"
    assert split_statements(script) == [
        "CREATE TABLE a (x);",
        "-- note\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  SELECT 1; SELECT 2;\nEND;",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE a (x)")


async def test_sqlite_schema_has_no_transition_trigger(tmp_path: Path) -> None:
    # Migration 2 dropped the trigger (and its table): the statements' guards do its job.
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "batchwork_jobs_transition" not in names
    assert "batchwork_transitions" not in names


async def test_sqlite_complete_writes_only_what_a_run_may_end_as(
    tmp_path: Path, clock: ManualClock
) -> None:
    # A forged outcome document (past the Python check) naming a status a run cannot end
    # as is fenced off in SQL: nothing is written.
    path = tmp_path / "jobs.db"
    store = SQLiteStore(url_of(path))
    await store.open()
    try:
        [job_id] = await add(store, clock, new_job(clock.now()))
        now = clock.now()
        await store.register_worker(WorkerInfo("w", "host", 1, None, 1, 30.0, now, now))
        [claimed] = await store.claim("w", tags=None, limit=1, now=now)
        row = [job_id, claimed.lease, "skipped", "null", None, 1, 0.0, "due", None]
        alike = [job_id, claimed.lease, 1, 0.0]
        shared = ("skipped", "null", None, "due", None)
        none: batch.Document = ("[]", [], ())
        writer, _ = store._threads()
        forgeries: list[batch.Outcomes] = [
            (none, (json.dumps([row]), [job_id], ()), none, none),
            ((json.dumps([alike]), [job_id], shared), none, none, none),
        ]
        for forged in forgeries:
            written = await writer.call(
                partial(batch.complete, worker_id="w", outcomes=forged), write=True
            )
            assert written == []
        assert (await store.get(job_id)).status is JobStatus.RUNNING
    finally:
        await store.close()


async def test_sqlite_driver_errors_become_store_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as caught:
        await SQLiteStore(url_of(garbage)).open()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    blocker = tmp_path / "dir.db"
    blocker.mkdir()
    with pytest.raises(StoreError) as caught:
        await SQLiteStore(url_of(blocker)).open()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


async def test_sqlite_a_held_lock_gives_store_error_then_recovers(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(url_of(path, "?busy_timeout=0.05"))
    await store.open()
    try:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked") as caught:
            await store.enqueue([new_job(clock.now())], now=clock.now())
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        other.close()
        assert len(await add(store, clock, new_job(clock.now()))) == 1
    finally:
        await store.close()


async def test_sqlite_one_bad_call_does_not_spoil_a_group_commit(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    try:
        bad = NewJob("bad", "{}", clock.now(), status=JobStatus.RUNNING)
        now = clock.now()
        calls = [store.enqueue([new_job(now, f"ok{i}")], now=now) for i in range(40)]
        # "half" and "unique" are written before the bad job fails: the savepoint undoes them
        half = [new_job(now, "half"), new_job(now, "unique", unique_key="u"), bad]
        calls.insert(20, store.enqueue(half, now=now))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[20], ValueError)
        assert all(isinstance(r, list) for i, r in enumerate(results) if i != 20)
        names = {job.name for job in await store.list_jobs(limit=100)}
        assert names == {f"ok{i}" for i in range(40)}  # nothing of call 20 is left
    finally:
        await store.close()


@pytest.mark.parametrize("tags", [None, ["main"]])
async def test_sqlite_claim_uses_the_due_index(
    tmp_path: Path, clock: ManualClock, tags: list[str] | None
) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    try:
        await add(store, clock, *(new_job(clock.now()) for _ in range(50)))
    finally:
        await store.close()
    params: list[object] = [0, *([json.dumps(tags)] if tags else []), 10]
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("ANALYZE")
        plan = conn.execute(f"EXPLAIN QUERY PLAN {due_jobs_sql(tags)}", params).fetchall()
    text = " ".join(str(row[-1]) for row in plan)
    assert "batchwork_jobs_due" in text
    assert "TEMP B-TREE" not in text  # no sort: the index gives the order


async def test_sqlite_enqueue_on_a_caller_connection_is_refused(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    try:
        with pytest.raises(ValueError, match="PostgreSQL"):
            await store.enqueue([new_job(clock.now())], now=clock.now(), connection=object())
    finally:
        await store.close()


async def test_sqlite_close_ends_a_wait_and_refuses_later_calls(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    waiter = asyncio.create_task(store.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.close()
    await asyncio.wait_for(waiter, 5)
    with pytest.raises(StoreError, match="not open"):
        await store.enqueue([new_job(clock.now())], now=clock.now())
    await store.close()  # closing twice is harmless


async def test_sqlite_calls_racing_close_are_answered(tmp_path: Path, clock: ManualClock) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    calls = [
        asyncio.create_task(store.enqueue([new_job(clock.now())], now=clock.now()))
        for _ in range(200)
    ]
    await asyncio.sleep(0)
    await store.close()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
    assert all(isinstance(r, list | StoreError) for r in results)


async def test_sqlite_writes_queued_behind_a_transaction_commit_together(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(url_of(tmp_path / "jobs.db"))
    await store.open()
    try:
        assert store.stats.failed_transactions == 0
        gate = threading.Event()
        blocker = asyncio.create_task(store._write(lambda conn: gate.wait(10)))
        await asyncio.sleep(0.05)  # the writer thread is now inside the blocker
        before = store.stats
        calls = [
            asyncio.create_task(store.enqueue([new_job(clock.now(), f"j{i}")], now=clock.now()))
            for i in range(10)
        ]
        await asyncio.sleep(0.05)
        gate.set()
        assert await blocker is True
        ids = await asyncio.gather(*calls)
        after = store.stats
        assert len({i for [i] in ids}) == 10
        assert after.transactions - before.transactions == 1
        assert after.largest_group == 10
        assert after.writer_calls - before.writer_calls == 10
        await store.get(ids[0][0] or 0)
        assert store.stats.reader_calls > before.reader_calls
    finally:
        await store.close()
    assert store.stats == SQLiteStoreStats()
