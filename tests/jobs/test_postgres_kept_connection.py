"""Review guards on the PostgreSQL store's kept connection: after a cancelled or failed
call it is never handed on inside a transaction, and calls on a pool of one never wait
for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from batchwork.errors import JobNotFound, StoreError
from batchwork.jobs._postgres import PostgresStore
from batchwork.jobs._postgres_conn import Conn

from ..backends import POSTGRES_DSN as DSN
from ..backends import postgres_url
from .store_helpers import new_job


@pytest.fixture
async def pg1(schema: str) -> AsyncIterator[PostgresStore]:
    """A store with a pool of one connection: the kept one is the only one."""
    store = PostgresStore(postgres_url(DSN, schema), pool_size=1, connect_timeout=3.0)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _visible_elsewhere(schema: str, job_id: int | None) -> bool:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {schema}.jobs WHERE id = %s", (job_id,))
        row = await cur.fetchone()
        assert row is not None
        return bool(row[0])


async def _enqueue_one(store: PostgresStore, name: str) -> int | None:
    [job_id] = await store.enqueue([new_job(store.now(), name)], now=store.now())
    return job_id


async def test_a_call_cancelled_inside_a_transaction_leaves_no_open_transaction(
    pg1: PostgresStore, schema: str
) -> None:
    await _enqueue_one(pg1, "warm")  # the connection is kept

    async def slow(conn: Conn) -> Any:
        async with conn.transaction():
            await conn.query(b"SELECT txid_current()")  # a transaction that wrote
            return await conn.query(b"SELECT pg_sleep(5)")

    call = asyncio.create_task(pg1._db.run(pg1, "slow", slow, retry=False))
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    job_id = await asyncio.wait_for(_enqueue_one(pg1, "after"), 10)
    assert await _visible_elsewhere(schema, job_id)  # committed, not in a left-open block


async def test_a_failed_call_leaves_the_kept_connection_usable(
    pg1: PostgresStore, schema: str
) -> None:
    await _enqueue_one(pg1, "warm")
    with pytest.raises(JobNotFound):
        await pg1.cancel(123_456_789, now=pg1.now())

    async def broken(conn: Conn) -> Any:
        async with conn.transaction():
            await conn.query(b"SELECT 1")
            return await conn.query(b"SELECT * FROM no_such_table")

    with pytest.raises(StoreError):
        await pg1._db.run(pg1, "broken", broken, retry=False)
    job_id = await asyncio.wait_for(_enqueue_one(pg1, "after"), 10)
    assert await _visible_elsewhere(schema, job_id)


async def test_many_concurrent_mixed_calls_on_a_pool_of_one_all_finish(
    pg1: PostgresStore, schema: str
) -> None:
    async def one(i: int) -> None:
        job_id = await _enqueue_one(pg1, f"j{i}")
        assert job_id is not None
        assert (await pg1.get(job_id)).name == f"j{i}"
        ids = await pg1.enqueue(
            [new_job(pg1.now(), f"m{i}"), new_job(pg1.now(), f"m{i}", unique_key=f"k{i}")],
            now=pg1.now(),
        )
        assert len(set(ids)) == 2

    calls = [asyncio.create_task(one(i)) for i in range(40)]
    await asyncio.sleep(0.01)
    calls[5].cancel()
    calls[17].cancel()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    assert [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))] == []
    job_id = await asyncio.wait_for(_enqueue_one(pg1, "after"), 10)
    assert await _visible_elsewhere(schema, job_id)
