"""What only the PostgreSQL store does: transactional enqueue, COPY, LISTEN/NOTIFY, the
database clock, the history table's effect on claim plans, racing migrations."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import psycopg
import pytest

from batchwork.errors import StoreError
from batchwork.jobs._model import CancelResult, JobStatus, NewJob
from batchwork.jobs._postgres import PostgresStore, _migrations
from batchwork.jobs._postgres_conn import Conn
from batchwork.jobs._postgres_rows import outcome_params
from batchwork.jobs._store import store_from_url

from ..backends import POSTGRES_DSN as DSN
from ..backends import postgres_url
from .clock import ManualClock
from .store_helpers import new_job, outcome, worker


@pytest.fixture
async def pg(schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_url(DSN, schema))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def job_at(store: PostgresStore, name: str = "task", payload: object = None) -> NewJob:
    return new_job(store.now(), name, payload)


# -- URL, construction, errors ------------------------------------------------------------
def test_store_from_url_takes_the_schema_from_the_url() -> None:
    store = store_from_url("postgres://nobody@127.0.0.1:1/nowhere?schema=jobs_here")
    assert isinstance(store, PostgresStore)
    assert store.schema == "jobs_here"
    assert PostgresStore("postgresql://x@127.0.0.1/db").schema == "batchwork"


def test_a_schema_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="plain identifier"):
        PostgresStore("postgresql://x@127.0.0.1/db?schema=a;drop")


async def test_an_unreachable_server_raises_store_error_with_the_cause() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1.0)
    with pytest.raises(StoreError, match="cannot open") as caught:
        await store.open()
    assert isinstance(caught.value.__cause__, psycopg.Error)
    with pytest.raises(StoreError, match="not open"):
        await store.get(1)


async def test_driver_errors_leave_the_store_as_store_error(pg: PostgresStore, schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".workers')
    with pytest.raises(StoreError) as caught:
        await pg.workers()
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)


def test_missing_psycopg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.delitem(sys.modules, "batchwork.jobs._postgres")
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install 'batchwork\[postgres\]'"):
        importlib.import_module("batchwork.jobs._postgres")


# -- transactional enqueue ----------------------------------------------------------------
async def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(pg: PostgresStore) -> None:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        [job_id] = await pg.enqueue([job_at(pg)], now=pg.now(), connection=conn)
        assert job_id is not None
        await conn.rollback()
    assert await pg.list_jobs() == []


async def test_enqueue_in_a_committed_transaction_keeps_the_job(pg: PostgresStore) -> None:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        ids = await pg.enqueue(
            [job_at(pg, "a"), job_at(pg, "b", {"k": 1})], now=pg.now(), connection=conn
        )
        # invisible to others until the caller commits
        assert await pg.list_jobs() == []
        await conn.commit()
    assert [job.id for job in await pg.list_jobs()] == sorted(ids, reverse=True)  # type: ignore[type-var]


async def test_enqueue_inside_a_transaction_block_of_an_autocommit_connection(
    pg: PostgresStore,
) -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        async with conn.transaction(force_rollback=True):
            await pg.enqueue([job_at(pg)], now=pg.now(), connection=conn)
            assert (await conn.execute("SELECT 1")).rowcount == 1
        assert await pg.list_jobs() == []
        # outside a block, an autocommit connection commits the jobs at once
        ids = await pg.enqueue([job_at(pg), job_at(pg)], now=pg.now(), connection=conn)
    assert [job.id for job in await pg.list_jobs()] == ids[::-1]


async def test_enqueue_in_a_blocking_connection_follows_its_transaction(
    pg: PostgresStore,
) -> None:
    with psycopg.connect(DSN) as conn:
        await pg.enqueue([job_at(pg, "gone")], now=pg.now(), connection=conn)
        conn.rollback()
        ids = await pg.enqueue(
            [job_at(pg, "kept"), new_job(pg.now(), "kept", unique_key="k")],
            now=pg.now(),
            connection=conn,
        )
        assert await pg.list_jobs() == []
        conn.commit()
    assert [job.id for job in await pg.list_jobs()] == ids[::-1]
    assert {job.name for job in await pg.list_jobs()} == {"kept"}


async def test_enqueue_refuses_a_connection_that_is_not_psycopg(pg: PostgresStore) -> None:
    with pytest.raises(TypeError, match=r"psycopg\.AsyncConnection or psycopg\.Connection"):
        await pg.enqueue([job_at(pg)], now=pg.now(), connection=object())


# -- COPY ---------------------------------------------------------------------------------
async def test_enqueue_of_10000_jobs_goes_through_copy_in_order(pg: PostgresStore) -> None:
    tricky = {"text": "tab\there\nnew line \\ back\\slash \u00e9\u4e2d", "n": [1, 2.5, None]}
    jobs = [job_at(pg, "bulk", {"i": i, **tricky}) for i in range(10_000)]
    ids = await pg.enqueue(jobs, now=pg.now())
    assert ids == sorted(ids)  # type: ignore[type-var]
    assert len(set(ids)) == 10_000
    assert await pg.counts() == {("bulk", JobStatus.PENDING): 10_000}
    last = await pg.get(ids[-1])  # type: ignore[arg-type]
    assert last.payload == {"i": 9_999, **tricky}


async def test_a_batch_whose_ids_are_not_consecutive_gets_each_of_them(
    pg: PostgresStore, schema: str
) -> None:
    # as if other sessions had drawn ids in between: the ids come back one by one
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'ALTER SEQUENCE "{schema}".job_id_seq INCREMENT BY 3')
    ids = await pg.enqueue([job_at(pg, "spread", i) for i in range(5)], now=pg.now())
    assert [ids[i + 1] - ids[i] for i in range(4)] == [3] * 4  # type: ignore[operator]
    for i, job_id in enumerate(ids):
        assert (await pg.get(job_id)).payload == i  # type: ignore[arg-type]


async def test_a_batch_mixing_plain_and_checked_jobs_keeps_order_and_semantics(
    pg: PostgresStore,
) -> None:
    now = pg.now()
    ids = await pg.enqueue(
        [
            new_job(now, "x"),
            new_job(now, "keyed", unique_key="k"),
            new_job(now, "x"),
            new_job(now, "keyed", unique_key="k"),
            new_job(now, "x", exclusive=True),
        ],
        now=now,
    )
    assert ids[1] == ids[3]
    assert ids[0] < ids[1] < ids[2] < ids[4]  # type: ignore[operator]
    skipped = await pg.get(ids[4])  # type: ignore[arg-type]
    assert (skipped.status, skipped.conflict_id) == (JobStatus.SKIPPED, ids[0])


# -- wake-ups -----------------------------------------------------------------------------
async def test_an_enqueue_from_another_connection_wakes_a_waiting_worker(
    pg: PostgresStore, schema: str
) -> None:
    other = PostgresStore(postgres_url(DSN, schema))
    await other.open()
    try:
        for _ in range(3):
            waiter = asyncio.create_task(pg.wait_for_work(10.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            started = time.perf_counter()
            await other.enqueue([job_at(other)], now=other.now())
            await asyncio.wait_for(waiter, 2.0)
            assert time.perf_counter() - started < 1.0
        # a change between two waits (here: while claiming) is not missed
        await other.enqueue([job_at(other)], now=other.now())
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await pg.wait_for_work(10.0)
        assert time.perf_counter() - started < 2.0  # not the 10 s wait
    finally:
        await other.close()


@contextlib.asynccontextmanager
async def named_store(schema: str, prefix: str) -> AsyncIterator[tuple[PostgresStore, str]]:
    """An open store whose sessions carry a fresh ``application_name`` (given back)."""
    app = f"{prefix}_{uuid4().hex[:8]}"
    store = PostgresStore(postgres_url(DSN, schema) + f"&application_name={app}")
    await store.open()
    try:
        yield store, app
    finally:
        await store.close()


def terminate_sessions(conn: psycopg.Connection[Any], app: str) -> int:
    """End every session named ``app``; how many there were."""
    row = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (app,),
    ).fetchone()
    return row[0] if row else 0


async def test_listen_reconnects_after_its_session_is_terminated(schema: str) -> None:
    async with named_store(schema, "bw_listen") as (store, app):
        with psycopg.connect(DSN, autocommit=True) as conn:

            def listening() -> int:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND query LIKE 'LISTEN%%'",
                    (app,),
                ).fetchone()
                return row[0] if row else 0

            # a store that only enqueues never listens; the first wait starts it
            await store.enqueue([job_at(store)], now=store.now())
            assert listening() == 0
            await store.wait_for_work(0)
            assert listening() == 1
            terminate_sessions(conn, app)
            deadline = time.monotonic() + 10
            while True:  # the listener comes back on its own
                await asyncio.sleep(0.05)
                if listening() == 1 and store._db.listening:
                    break
                assert time.monotonic() < deadline, "LISTEN connection did not come back"
            await store.wait_for_work(0)  # the reconnection itself counts as a change
            waiter = asyncio.create_task(store.wait_for_work(10.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            conn.execute(f"SELECT pg_notify('{store.channel}', '')")
            await asyncio.wait_for(waiter, 2.0)
        # the pool's connections were terminated too: reads retry on fresh ones
        assert len(await store.list_jobs()) == 1


async def test_a_kept_connection_the_server_ended_is_replaced_before_an_enqueue(
    schema: str,
) -> None:
    async with named_store(schema, "bw_kept") as (store, app):
        await store.enqueue([job_at(store)], now=store.now())  # its connection is kept
        with psycopg.connect(DSN, autocommit=True) as conn:
            assert terminate_sessions(conn, app) >= 1
        await asyncio.sleep(0.2)  # the termination message reaches the socket
        # an enqueue is never retried: it must get a live connection at once
        await store.enqueue([job_at(store)], now=store.now())
        assert len(await store.list_jobs()) == 2


async def test_concurrent_calls_share_a_pool_of_one(schema: str) -> None:
    store = PostgresStore(postgres_url(DSN, schema), pool_size=1, connect_timeout=3.0)
    await store.open()
    try:
        ids = await asyncio.gather(
            *(store.enqueue([job_at(store, payload=i)], now=store.now()) for i in range(30))
        )
        jobs = await asyncio.gather(*(store.get(job_id) for [job_id] in ids))  # type: ignore[arg-type]
        assert sorted(job.payload for job in jobs) == list(range(30))
    finally:
        await store.close()


# -- database clock -----------------------------------------------------------------------
async def test_now_is_the_database_clock_and_heartbeats_refresh_it(pg: PostgresStore) -> None:
    async def database_now() -> datetime:
        with psycopg.connect(DSN) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            value: datetime = row[0]
            return value

    assert abs((pg.now() - await database_now()).total_seconds()) < 0.5
    # a store whose offset is wrong by an hour is put right by its next heartbeat
    db_epoch, measured_at = pg._clock
    pg._clock = (db_epoch + 3600, measured_at)
    assert (pg.now() - await database_now()).total_seconds() > 3000
    await pg.register_worker(worker(ManualClock(pg.now())))
    await pg.heartbeat("w1", now=pg.now(), running=())
    assert abs((pg.now() - await database_now()).total_seconds()) < 0.5
    assert pg.now().tzinfo is UTC


# -- history table ------------------------------------------------------------------------
async def test_claims_use_the_ready_index_however_large_the_history(
    pg: PostgresStore, schema: str
) -> None:
    clock = ManualClock(pg.now())
    now = clock.now()
    await pg.enqueue([new_job(now, "old") for _ in range(500)], now=now)
    await pg.register_worker(worker(clock))
    claimed = await pg.claim("w1", tags=None, limit=500, now=now)
    assert len(await pg.complete("w1", [outcome(c, clock) for c in claimed])) == 500
    await pg.enqueue([new_job(now - timedelta(seconds=i), "new") for i in range(2_000)], now=now)
    with psycopg.connect(DSN, autocommit=True) as conn:
        # ended jobs left the hot table; add many more history rows the quick way
        conn.execute(
            f'INSERT INTO "{schema}".job_history (id, name, type, status, payload, '
            "scheduled_for, created_at, updated_at, ended_at) SELECT -g, 'old', 'job', "
            "'finished', 'null', now(), now(), now(), now() FROM generate_series(1, 100000) g"
        )
        conn.execute(f'ANALYZE "{schema}".jobs, "{schema}".job_history')
        hot, history = (
            conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
            for table in ("jobs", "job_history")
        )
        assert (hot, history) == ((2_000,), (100_500,))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                b"EXPLAIN " + pg._sql.claim(tagged=False),
                {"now": now, "limit": 10, "worker": "w1", "lease": "x"},
            ).fetchall()
        )
    assert "Index Scan using jobs_ready" in plan, plan
    assert "job_history" not in plan
    assert "Seq Scan" not in plan, plan


async def test_completions_do_not_join_every_job_of_the_worker(pg: PostgresStore) -> None:
    # No statistics (never analysed) and many ended jobs of the same worker: the plan
    # must not read every job of the worker and join each with every outcome.
    clock = ManualClock(pg.now())
    await pg.enqueue([new_job(clock.now()) for _ in range(3_000)], now=clock.now())
    await pg.register_worker(worker(clock))
    for _ in range(5):
        claimed = await pg.claim("w1", tags=None, limit=200, now=clock.now())
        await pg.complete("w1", [outcome(c, clock) for c in claimed])
    claimed = await pg.claim("w1", tags=None, limit=200, now=clock.now())
    params = outcome_params("w1", [outcome(c, clock) for c in claimed])

    async def explain(conn: Conn) -> str:
        sql = pg._sql.complete(durable=True, requeue=False, end=True)
        rows = await (await conn.query(b"EXPLAIN " + sql, params)).fetchall()
        return "\n".join(row[0] for row in rows)

    plan = await pg._db.run(pg, "explain", explain, retry=False)
    assert "jobs_worker" not in plan, plan
    # by primary key, or (a small table) one scan hashed against the outcomes
    assert "Index Scan using jobs_pkey on jobs" in plan or "Hash Join" in plan, plan
    assert "Nested Loop" not in plan or "Index Scan using jobs_pkey on jobs" in plan, plan


# -- exit hooks ---------------------------------------------------------------------------
async def test_a_job_without_an_exit_hook_leaves_none_due(pg: PostgresStore, schema: str) -> None:
    clock = ManualClock(pg.now())
    await pg.enqueue([new_job(clock.now(), "task") for _ in range(3)], now=clock.now())
    await pg.register_worker(worker(clock))
    hookless, hooked, failed = await pg.claim("w1", tags=None, limit=3, now=clock.now())
    outcomes = [
        outcome(hookless, clock, has_exit_hook=False),
        outcome(hooked, clock),
        outcome(failed, clock, JobStatus.ERRORED, error="boom", has_exit_hook=False),
    ]
    assert await pg.complete("w1", outcomes) == {c.job.id for c in (hookless, hooked, failed)}
    due = await pg.claim_exit_hooks("w2", names=["task"], limit=10)
    assert [job.id for job in due] == [hooked.job.id]
    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT id, exit_hook FROM "{schema}".job_history ORDER BY id'
        ).fetchall()
    assert rows == [(hookless.job.id, None), (hooked.job.id, "taken"), (failed.job.id, None)]


# -- migrations ---------------------------------------------------------------------------
def test_processes_racing_to_migrate_a_fresh_schema_all_succeed(schema: str) -> None:
    url = postgres_url(DSN, schema)
    code = textwrap.dedent(
        f"""
        import asyncio
        from batchwork.jobs._postgres import PostgresStore, _migrations

        async def main():
            store = PostgresStore({url!r})
            await store.open()
            await store.close()

        asyncio.run(main())
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(5)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 5
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            f'SELECT version FROM "{schema}".schema_version ORDER BY version'
        ).fetchall()
    assert [version for (version,) in rows] == [version for version, _ in _migrations()]
    assert len(rows) >= 2


async def test_a_schema_newer_than_the_code_is_refused(schema: str) -> None:
    store = PostgresStore(postgres_url(DSN, schema))
    await store.open()
    await store.close()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (999)')
    with pytest.raises(StoreError, match="version 999"):
        await store.open()


# -- time zone of records -----------------------------------------------------------------
async def test_records_carry_utc_datetimes_whatever_the_given_offset(pg: PostgresStore) -> None:
    paris = datetime(2030, 6, 1, 14, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    [job_id] = await pg.enqueue([new_job(paris)], now=pg.now())
    job = await pg.get(job_id)  # type: ignore[arg-type]
    assert job.scheduled_for == paris
    assert job.scheduled_for.tzinfo is UTC


# -- lost replies -------------------------------------------------------------------------
async def test_a_completion_repeated_after_a_lost_reply_is_reported_written(
    pg: PostgresStore,
) -> None:
    clock = ManualClock(pg.now())
    await pg.enqueue([new_job(clock.now()), new_job(clock.now())], now=clock.now())
    await pg.register_worker(worker(clock))
    first, second = await pg.claim("w1", tags=None, limit=2, now=clock.now())
    outcomes = [
        outcome(first, clock),
        outcome(second, clock, JobStatus.PENDING, retry_at=clock.now(), error="boom"),
    ]
    assert await pg.complete("w1", outcomes) == {first.job.id, second.job.id}
    # as if the reply of that call had been lost: the same call again is recognised
    pg._unconfirmed.update({first.lease, second.lease})
    assert await pg.complete("w1", outcomes) == {first.job.id, second.job.id}
    assert not pg._unconfirmed
    # a different outcome for the same lease is still refused
    pg._unconfirmed.add(first.lease)
    assert await pg.complete("w1", [outcome(first, clock, JobStatus.ERRORED)]) == set()
    assert (await pg.get(first.job.id)).status is JobStatus.FINISHED


async def test_a_claim_whose_reply_was_lost_is_put_back_before_the_next_claim(
    pg: PostgresStore,
) -> None:
    clock = ManualClock(pg.now())
    [job_id] = await pg.enqueue([new_job(clock.now())], now=clock.now())
    await pg.register_worker(worker(clock))
    [lost] = await pg.claim("w1", tags=None, limit=1, now=clock.now())
    pg._uncertain["w1"] = {lost.lease}  # as if the reply had never arrived
    [again] = await pg.claim("w1", tags=None, limit=1, now=clock.now())
    assert again.job.id == job_id
    assert again.lease != lost.lease
    assert again.job.attempts == 1  # the lost claim was undone, not counted
    assert await pg.complete("w1", [outcome(lost, clock)]) == set()


async def test_asynchronous_completions_are_an_explicit_option(schema: str) -> None:
    store = PostgresStore(postgres_url(DSN, schema), durable_completions=False)
    assert b"synchronous_commit" not in store._sql.complete(durable=True)
    assert b"synchronous_commit" in store._sql.complete(durable=False)
    await store.open()
    try:
        clock = ManualClock(store.now())
        await store.enqueue([new_job(clock.now())], now=clock.now())
        await store.register_worker(worker(clock))
        [claimed] = await store.claim("w1", tags=None, limit=1, now=clock.now())
        assert await store.complete("w1", [outcome(claimed, clock)]) == {claimed.job.id}
        assert (await store.get(claimed.job.id)).status is JobStatus.FINISHED
    finally:
        await store.close()


async def test_asynchronous_completions_can_be_asked_for_in_the_url(schema: str) -> None:
    store = store_from_url(postgres_url(DSN, schema) + "&durable_completions=off")
    assert isinstance(store, PostgresStore)
    assert store._durable is False
    await store.open()  # libpq never sees the option (it would refuse an unknown one)
    try:
        await store.enqueue([new_job(store.now())], now=store.now())
    finally:
        await store.close()
    assert PostgresStore(postgres_url(DSN, schema))._durable is True


def test_a_url_flag_that_is_not_yes_or_no_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"durable_completions='maybe'.*true or false"):
        PostgresStore("postgresql://x@127.0.0.1/db?durable_completions=maybe")


async def test_a_transactional_enqueue_wakes_workers_when_the_caller_commits(
    pg: PostgresStore, schema: str
) -> None:
    worker_store = PostgresStore(postgres_url(DSN, schema))
    await worker_store.open()
    try:
        await worker_store.wait_for_work(0)  # listening from here on
        async with await psycopg.AsyncConnection.connect(DSN) as conn:
            await pg.enqueue([job_at(pg)], now=pg.now(), connection=conn)
            waiter = asyncio.create_task(worker_store.wait_for_work(10.0))
            await asyncio.sleep(0.2)
            assert not waiter.done()  # not before the commit
            await conn.commit()
            await asyncio.wait_for(waiter, 2.0)
        # and a retried job wakes them too
        [job] = await pg.list_jobs()
        assert await pg.cancel(job.id, now=pg.now()) is CancelResult.CANCELLED
        await worker_store.wait_for_work(0)
        waiter = asyncio.create_task(worker_store.wait_for_work(10.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        assert await pg.retry(job.id, now=pg.now())
        await asyncio.wait_for(waiter, 2.0)
    finally:
        await worker_store.close()
