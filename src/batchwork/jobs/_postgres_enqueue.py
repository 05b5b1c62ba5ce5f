"""Enqueue on PostgreSQL: COPY for runs of plain jobs, checked inserts for the rest, on
the store's own connection or inside the caller's transaction (async or blocking)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any, Protocol

import psycopg
from psycopg import pq

from batchwork.errors import StoreError

from ._model import JobStatus, JobType, NewJob
from ._postgres_conn import Conn
from ._postgres_rows import copy_text, insert_row, is_plain, plain_row
from ._postgres_sql import Sql


class _Cursor(Protocol):
    async def fetchone(self) -> Any: ...


class _Copy(Protocol):
    async def write(self, data: str) -> None: ...


class Executor(Protocol):
    """What an insert needs from a connection: statements and COPY."""

    async def execute(self, query: bytes, params: Any = None) -> _Cursor: ...

    def copy(self, query: bytes) -> Any: ...


class AsyncExecutor:
    """An ``AsyncConnection`` as an :class:`Executor` (the store's own connections run
    statements on their kept cursor, see :class:`Conn`)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, query: bytes, params: Any = None) -> _Cursor:
        if isinstance(self.conn, Conn):
            return await self.conn.query(query, params)
        return await self.conn.execute(query, params)

    def copy(self, query: bytes) -> Any:
        return self.conn.cursor().copy(query)


class BlockingExecutor:
    """A blocking ``psycopg.Connection`` (a web request's transaction) as an
    :class:`Executor`: each call blocks the event loop for one round trip, which is what
    the caller, itself blocked in ``processor.sync.enqueue``, asked for."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    async def execute(self, query: bytes, params: Any = None) -> _Cursor:
        return _Ready(self.conn.execute(query, params))

    def copy(self, query: bytes) -> Any:
        return _BlockingCopy(self.conn, query)


class _Ready:
    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.cursor = cursor

    async def fetchone(self) -> Any:
        return self.cursor.fetchone()


class _BlockingCopy:
    def __init__(self, conn: psycopg.Connection[Any], query: bytes) -> None:
        self.conn, self.query = conn, query
        self.context: Any = None
        self.copy: Any = None

    async def __aenter__(self) -> _BlockingCopy:
        self.context = self.conn.cursor().copy(self.query)
        self.copy = self.context.__enter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.context.__exit__(*exc)

    async def write(self, data: str) -> None:
        self.copy.write(data)


def one_statement(jobs: Sequence[NewJob]) -> bool:
    """Whether :func:`insert_all` inserts ``jobs`` in one statement (no transaction needed)."""
    return len(jobs) == 1 and is_plain(jobs[0])


async def insert_all(
    db: Executor, sql: Sql, jobs: Sequence[NewJob], now: datetime
) -> list[int | None]:
    """Insert ``jobs`` on ``db`` (in a transaction unless :func:`one_statement`)."""
    if one_statement(jobs):
        return [await _scalar(db, sql.insert_job, plain_row(jobs[0], now))]
    # Ids drawn up front, in order, so a mix of plain and checked jobs keeps the order.
    first, drawn, _ = await _one(db, sql.next_ids(), (len(jobs),))
    ids: Sequence[int] = range(first, first + len(jobs)) if drawn is None else drawn
    out: list[int | None] = []
    for plain, run in groupby(zip(ids, jobs, strict=True), key=lambda p: is_plain(p[1])):
        group = list(run)
        if plain:
            async with db.copy(sql.copy_jobs()) as copy:
                await copy.write(copy_text(group, now))
            out.extend(job_id for job_id, _ in group)
        else:
            for job_id, job in group:
                out.append(await _insert_checked(db, sql, job_id, job, now))
    return out


async def _insert_checked(
    db: Executor, sql: Sql, job_id: int, job: NewJob, now: datetime
) -> int | None:
    """Insert a cron tick, an ended record, a keyed or an exclusive job."""
    if job.type is JobType.CRON_TASK:
        tick = await _row(db, sql.claim_tick(), (job.name, job.scheduled_for, job_id))
        if tick is None:
            return None
    if job.status.ended:
        await db.execute(sql.insert_ended(), insert_row(job_id, job, now, ended_at=now))
        return job_id
    for _ in range(5):
        if job.unique_key is not None:
            active = await _row(db, sql.active_by_key(), (job.unique_key,))
            if active is not None:
                return int(active[0])
        if job.exclusive:
            await db.execute(Sql.lock, (f"batchwork:{sql.schema}:{job.name}",))
            active = await _row(db, sql.active_by_name(), (job.name,))
            if active is not None:
                row = insert_row(
                    job_id, job, now, status=JobStatus.SKIPPED, conflict_id=active[0], ended_at=now
                )
                await db.execute(sql.insert_ended(), row)
                return job_id
        if await _row(db, sql.insert_active(), insert_row(job_id, job, now)) is not None:
            return job_id
        # Another transaction took the unique key and committed: look it up again.
    raise StoreError(f"enqueue of {job.name!r}: unique key {job.unique_key!r} kept changing")


async def enqueue_on(
    conn: Any, sql: Sql, jobs: Sequence[NewJob], now: datetime
) -> list[int | None]:
    """Insert ``jobs`` in the caller's connection: they exist once the caller commits.

    A connection in a transaction gets a savepoint; an autocommit connection outside one
    gets a transaction of its own; a non-autocommit idle one starts the caller's
    transaction, which the caller commits.
    """
    db: Executor
    if isinstance(conn, psycopg.AsyncConnection):
        db = AsyncExecutor(conn)
    elif isinstance(conn, psycopg.Connection):
        db = BlockingExecutor(conn)
    else:
        raise TypeError(
            "connection must be a psycopg.AsyncConnection or psycopg.Connection, "
            f"got {type(conn).__name__}"
        )
    try:
        if conn.info.transaction_status == pq.TransactionStatus.IDLE and not conn.autocommit:
            return await insert_all(db, sql, jobs, now)
        if isinstance(conn, psycopg.AsyncConnection):
            async with conn.transaction():
                return await insert_all(db, sql, jobs, now)
        with conn.transaction():
            return await insert_all(db, sql, jobs, now)
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL enqueue failed: {exc}") from exc


async def _row(db: Executor, query: bytes, params: Any = None) -> Any:
    return await (await db.execute(query, params)).fetchone()


async def _one(db: Executor, query: bytes, params: Any = None) -> Any:
    row = await _row(db, query, params)
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return row


async def _scalar(db: Executor, query: bytes, params: Any = None) -> Any:
    return (await _one(db, query, params))[0]
