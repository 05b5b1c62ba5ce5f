"""Connections of the PostgreSQL store: the pool, the LISTEN connection, wake-ups, and
the edge where driver errors become :class:`~batchwork.errors.StoreError`."""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from batchwork.errors import StoreError

log = logging.getLogger("batchwork.postgres")

T = TypeVar("T")

# UTC sessions: records carry UTC datetimes without conversion. No bitmap scans: right
# after a bulk enqueue, before autovacuum has analysed the hot table, the planner's row
# estimates are far too low and a claim would fetch and sort every ready row instead of
# reading the first few from the ready index in order; none of the store's other queries
# needs a bitmap scan. Random reads priced as on an SSD or a cached table: at the default
# (4), a completion of 100 jobs scans a hot table of 20,000 rows rather than make 100
# primary-key lookups (1 ms instead of 0.1).
_SESSION_OPTIONS = "-c TimeZone=UTC -c enable_bitmapscan=off -c random_page_cost=1.1"


def session_params(conninfo: str) -> dict[str, str]:
    """Connection parameters added to the URL's (``_SESSION_OPTIONS``, and an
    ``application_name`` unless one is given)."""
    given = conninfo_to_dict(conninfo)
    options = " ".join(filter(None, [str(given.get("options") or ""), _SESSION_OPTIONS]))
    params = {"options": options}
    if not given.get("application_name"):
        params["application_name"] = "batchwork"
    return params


class Conn(psycopg.AsyncConnection[Any]):
    """A connection of the store's pool.

    :meth:`query` runs every statement on one cursor kept for the connection's life: a
    cursor caches the adapters it has looked up, and a fresh one per statement (what
    ``execute`` makes) cost a one-row statement about 15 µs of CPU.
    """

    _cursor: psycopg.AsyncCursor[Any] | None = None

    async def query(self, sql: bytes, params: Any = None) -> psycopg.AsyncCursor[Any]:
        """Run ``sql``; read its rows from the cursor returned before the next query."""
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = self.cursor()
        return await cursor.execute(sql, params)


async def _refuse_dead(conn: Conn) -> None:
    # A connection the server ended while it sat idle in the pool (pg_terminate_backend, a
    # restart) has the termination message waiting on its socket. Refusing it here makes
    # the pool hand out a fresh one instead of failing a statement that cannot be retried.
    if conn.broken or conn.closed:
        raise psycopg.OperationalError("connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        # Closed here, the pool drops it and connects anew (a connection that merely
        # fails the check would be put back as it is).
        await conn.close()
        raise psycopg.OperationalError("the server closed this idle connection")


class Connections:
    """The pool and the LISTEN connection of one store, and its wake-up count.

    ``generation`` counts changes seen (notifications, and writes through this store);
    ``seen`` is its value at the last claim or wait, so a change in between is not missed.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        where: str,
        channel: str,
        pool_size: int,
        connect_timeout: float,
        poll_interval: float,
    ) -> None:
        self.where = where
        self.channel = channel
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self._conninfo = conninfo
        self._session = session_params(conninfo)
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        # The connection of the last call, kept out of the pool for the next one: a pool
        # checkout and return cost a one-job enqueue about 25 µs of CPU (a tenth).
        self._idle: Conn | None = None
        self._queued = 0  # calls waiting for a connection from the pool
        self._listener: asyncio.Task[None] | None = None
        self._listen_ready: asyncio.Event | None = None
        self._name = "batchwork"
        self._changed: asyncio.Event | None = None
        self.listening = False
        self.generation = 0
        self.seen = 0
        self._down = False

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self, setup: Callable[[Conn], Awaitable[None]], name: str) -> None:
        """Fill the pool, run ``setup`` on one connection, then start listening."""
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            connection_class=Conn,
            kwargs={"autocommit": True, **self._session},
            check=_refuse_dead,
            timeout=self.connect_timeout,
            name=name,
            reconnect_failed=self._reconnect_failed,
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
            async with pool.connection() as conn:
                await setup(conn)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(
                    f"cannot open the PostgreSQL store at {self.where}: {exc}"
                ) from exc
            raise
        self._pool = pool
        self._name = name
        self._changed = asyncio.Event()

    async def listen(self) -> None:
        """Start the LISTEN connection unless it runs: on the first claim or wait, so a
        process that only enqueues (a web app) holds no LISTEN connection and reads no
        notifications. Returns once it listens (or after ``connect_timeout``: polling)."""
        if self._listener is not None or self._pool is None:
            return
        self._listen_ready = ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(), name=f"{self._name}-listen")
        with suppress(TimeoutError):
            async with asyncio.timeout(self.connect_timeout):
                await ready.wait()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with suppress(asyncio.CancelledError):
                await listener
        pool, self._pool = self._pool, None
        idle, self._idle = self._idle, None
        if pool is not None:
            if idle is not None:
                await pool.putconn(idle)
            await pool.close()
        self.listening = False
        self.wake()  # waiters return: nothing more comes through this store

    def _reconnect_failed(self, pool: AsyncConnectionPool[Conn]) -> None:
        log.error("PostgreSQL at %s: the pool gave up reconnecting for now", self.where)

    # -- calls -----------------------------------------------------------------------
    def pool(self, store: object) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StoreError(f"{store!r} is not open: await store.open() first")
        return self._pool

    async def run(
        self, store: object, what: str, fn: Callable[[Conn], Awaitable[T]], *, retry: bool
    ) -> T:
        """Run ``fn`` on a pooled connection, mapping driver errors to StoreError.

        With ``retry``, a call that failed because its connection died is run again on a
        fresh connection (twice at most): only for calls whose repetition is harmless.
        """
        pool = self.pool(store)
        tries = 3 if retry else 1
        for attempt in range(tries):
            try:
                conn = await self._take(pool)
                try:
                    result = await fn(conn)
                except psycopg.OperationalError as exc:
                    if not (conn.broken or conn.closed):
                        raise StoreError(f"PostgreSQL {what} failed: {exc}") from exc
                    raise
                finally:
                    await self._give(pool, conn)
            except PoolTimeout as exc:
                self._gone(exc)
                raise StoreError(
                    f"PostgreSQL at {self.where} unavailable: no connection for {what} "
                    f"within {self.connect_timeout:g} s ({exc})"
                ) from exc
            except psycopg.OperationalError as exc:
                self._gone(exc)
                if attempt + 1 < tries:
                    await asyncio.sleep(0.05 * 4**attempt)
                    continue
                raise StoreError(f"PostgreSQL {what} failed, connection lost: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL {what} failed: {exc}") from exc
            if self._down:
                self._down = False
                log.warning("PostgreSQL at %s is reachable again", self.where)
            return result
        raise AssertionError("unreachable")

    async def _take(self, pool: AsyncConnectionPool[Conn]) -> Conn:
        """The kept connection when it is still alive (checked as the pool checks), else
        one from the pool."""
        conn, self._idle = self._idle, None
        if conn is not None:
            try:
                await _refuse_dead(conn)
            except psycopg.OperationalError:
                await pool.putconn(conn)  # the pool drops it and connects anew
            else:
                return conn
        self._queued += 1
        try:
            return await pool.getconn()
        finally:
            self._queued -= 1

    async def _give(self, pool: AsyncConnectionPool[Conn], conn: Conn) -> None:
        """Keep ``conn`` for the next call, unless a call waits for the pool or ``conn``
        needs the pool's care (broken, or left in a transaction)."""
        if (
            self._idle is None
            and not self._queued
            and self._pool is pool
            and not (conn.broken or conn.closed)
            and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        ):
            self._idle = conn
        else:
            await pool.putconn(conn)

    def _gone(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "PostgreSQL at %s unreachable (%s); reconnecting, and store calls raise "
                "StoreError until it is back",
                self.where,
                str(exc).strip(),
            )

    # -- wake-ups --------------------------------------------------------------------
    def wake(self) -> None:
        """Count a change and wake every waiter."""
        self.generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait(self, at_most: float) -> None:
        """Until a change not yet seen, or ``at_most`` seconds (``poll_interval`` at most
        while the LISTEN connection is down)."""
        await self.listen()
        event = self._changed
        if event is not None and self.seen == self.generation:
            timeout = at_most if self.listening else min(at_most, self.poll_interval)
            with suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0)):
                    await event.wait()
        self.seen = self.generation

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    options=self._session["options"],
                    application_name=self._session.get("application_name"),
                    connect_timeout=max(1, round(self.connect_timeout)),
                )
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"'.encode())
                    if self._down or delay > 0.1:
                        log.warning("PostgreSQL at %s: LISTEN re-established", self.where)
                    self.listening = True
                    delay = 0.1
                    assert self._listen_ready is not None
                    self._listen_ready.set()
                    if not first:
                        self.wake()  # notifications sent while we were away are lost
                    first = False
                    async for _ in conn.notifies():
                        self.wake()
            except psycopg.Error as exc:
                if self.listening:
                    log.warning(
                        "PostgreSQL at %s: LISTEN connection lost (%s); polling every "
                        "%g s until it is back",
                        self.where,
                        str(exc).strip(),
                        self.poll_interval,
                    )
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
