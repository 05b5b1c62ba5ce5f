"""The SQLite store: the embedded default, safe for several worker processes on one host."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from batchwork.errors import JobNotFound, StoreError

from . import _sqlite_batch as batch
from . import _sqlite_ops as ops
from . import _sqlite_queries as queries
from ._model import (
    CancelResult,
    Claimed,
    CronSpec,
    CronState,
    Heartbeat,
    Job,
    JobStatus,
    NewJob,
    Outcome,
    Recovery,
    TimelinePoint,
    WorkerInfo,
)
from ._sqlite_schema import (
    BUSY_TIMEOUT,
    SYNCHRONOUS_MODES,
    connect,
    connect_inline,
    migrate,
    parse_url,
    to_us,
)
from ._sqlite_thread import NOT_RUN, ConnectionThread, InlineWriter

T = TypeVar("T")

POLL_INTERVAL = 0.005
PURGE_CHUNK = 5_000
INLINE_MAX_JOBS = 16  # larger enqueues go to the writer thread: they would hold the loop


@dataclass(frozen=True, slots=True)
class SQLiteStoreStats:
    """Counters of one open :class:`SQLiteStore` (since :meth:`SQLiteStore.open`).

    ``writer_calls``: calls served by the writer connection (writes, claims and the
    wake-up polls); ``transactions``: write transactions committed or tried (fewer than
    the writes when group commit joined calls; ``largest_group`` is the most calls one
    transaction held); ``failed_transactions`` rolled back; ``reader_calls``: queries
    served by the reader connection; ``inline_transactions``: transactions of one or
    more enqueues committed on the event loop's thread (see :class:`SQLiteStore`), not
    counted in the others.

    Example::

        stats = store.stats
        print(stats.largest_group, "calls in the largest commit")
    """

    writer_calls: int = 0
    transactions: int = 0
    failed_transactions: int = 0
    largest_group: int = 0
    reader_calls: int = 0
    inline_transactions: int = 0


class SQLiteStore:
    """Jobs, workers and crons in one SQLite file (WAL mode).

    ``url`` is ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; the
    query options ``?synchronous=FULL`` and ``?busy_timeout=2.5`` (seconds) override the
    arguments of the same names. Creating the store does no I/O; :meth:`open` connects,
    switches the file to WAL and migrates the schema.

    Durability (``synchronous``):

    * ``"NORMAL"`` (default): a committed job survives the crash or ``kill -9`` of any
      process; after a power loss or an operating-system crash, the last commits before
      it may be lost (the file is never corrupted).
    * ``"FULL"``: every commit is synced to disk before it returns, so it survives power
      loss too, at several times the cost per transaction (group commit amortizes it).

    Threads: SQLite calls never run on the event loop. One writer thread owns the only
    connection that writes (in short ``BEGIN IMMEDIATE`` transactions, with write calls
    that arrive together committed together); a reader thread serves the queries, so a
    dashboard's big list never delays a claim. Both wait up to ``busy_timeout`` (10 s by
    default) for another process's lock before a :class:`~batchwork.errors.StoreError`.
    WAL needs every process on one host with the file on a local disk (not NFS/SMB).

    The exception: with ``synchronous=NORMAL``, an enqueue of a few jobs commits on the
    event loop's thread (with the other enqueues of the same turn of the loop), through a
    third connection, when SQLite's write lock is free at that instant (a commit is then
    an append to the WAL, ~40 µs, less than the ~150 µs a round trip to the writer thread
    costs); otherwise, or on any error, it goes to the writer thread as above. It never
    waits for a lock (see :class:`~batchwork.jobs._sqlite_thread.InlineWriter`).

    Wake-ups: :meth:`wait_for_work` polls ``PRAGMA data_version`` on the writer's own
    connection, whose value moves only when *another* connection commits; a write made
    through this object wakes waiters at once.

    Example::

        store = SQLiteStore("sqlite:///jobs.db")
        await store.open()
        job = await store.get(job_id)
        await store.close()
    """

    def __init__(
        self, url: str, *, synchronous: str = "NORMAL", busy_timeout: float = BUSY_TIMEOUT
    ) -> None:
        path, options = parse_url(url)
        mode = options.get("synchronous", synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be NORMAL or FULL, got {mode!r}")
        timeout = float(options.get("busy_timeout", busy_timeout))
        if not timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {timeout!r}")
        self.url = url
        self.path = path
        self.synchronous = mode
        self.busy_timeout = timeout
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        self._inline: InlineWriter | None = None
        # Wake-ups: ``_generation`` counts our own commits that may bring work;
        # ``_seen`` is (generation, data_version) when the last claim or wait looked.
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._seen: tuple[int, int] | None = None
        self._claimed_version: int | None = None  # data_version at the last short claim

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r}, synchronous={self.synchronous!r})"

    @property
    def stats(self) -> SQLiteStoreStats:
        """Counters since the last :meth:`open` (all zero while closed)."""
        writer, reader = self._writer, self._reader
        if writer is None or reader is None:
            return SQLiteStoreStats()
        return SQLiteStoreStats(
            writer_calls=writer.calls,
            transactions=writer.transactions,
            failed_transactions=writer.failed_transactions,
            largest_group=writer.largest_group,
            reader_calls=reader.calls,
            inline_transactions=0 if self._inline is None else self._inline.commits,
        )

    def now(self) -> datetime:
        """The local clock as an aware UTC datetime (all processes share one host)."""
        return datetime.now(UTC)

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (one writer and one reader connection) and migrate the schema.

        Safe when several processes open a fresh file at once. Opening an open store
        does nothing.
        """
        if self._writer is not None:
            return
        mode = self.synchronous
        writer = ConnectionThread(
            "batchwork-sqlite-writer",
            partial(connect, self.path, synchronous=mode, busy_timeout=self.busy_timeout),
            on_commit=self._local_change,
        )
        writer.start()
        self._writer = writer
        try:
            now_us = to_us(self.now())
            await writer.call(lambda conn: migrate(conn, now_us=now_us))
            reader = ConnectionThread(
                "batchwork-sqlite-reader",
                partial(
                    connect,
                    self.path,
                    synchronous=mode,
                    busy_timeout=self.busy_timeout,
                    read_only=True,
                ),
                on_commit=None,
            )
            reader.start()
            self._reader = reader
            await reader.call(ops.data_version)
            if mode != "FULL":  # with FULL, a commit syncs to disk: never on the loop
                path = self.path
                conn = await writer.call(lambda _: connect_inline(path, synchronous=mode))
                self._inline = InlineWriter(
                    conn, on_commit=self._local_change, checkpoint=partial(writer.post, _checkpoint)
                )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish queued calls, close every connection and join their threads."""
        inline, self._inline = self._inline, None
        if inline is not None:
            await asyncio.to_thread(inline.close)
        writer = self._writer
        if writer is not None:
            # Lets SQLite refresh stale planner statistics, sampling (bounded cost).
            with contextlib.suppress(StoreError):
                await writer.call(_optimize)
        threads = [t for t in (self._writer, self._reader) if t is not None]
        self._writer = self._reader = None
        self._seen = self._claimed_version = None
        for thread in threads:
            await asyncio.to_thread(thread.stop)

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _threads(self) -> tuple[ConnectionThread, ConnectionThread]:
        if self._writer is None or self._reader is None:
            raise StoreError(f"the SQLite store {self.url!r} is not open (call open() first)")
        return self._writer, self._reader

    async def _write(self, fn: Callable[[Any], T], *, notify: bool = False) -> T:
        return await self._threads()[0].call(fn, write=True, notify=notify)

    async def _read(self, fn: Callable[[Any], T]) -> T:
        return await self._threads()[1].call(fn)

    # -- producing ---------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[int | None]:
        """Insert jobs in one transaction; see :meth:`batchwork.jobs._store.Store.enqueue`.

        ``connection`` is refused: SQLite has no caller-owned transactions to join.
        """
        if connection is not None:
            raise ValueError("connection= needs the PostgreSQL store; SQLite has no such mode")
        if not jobs:
            return []
        now_us = to_us(now)
        inline = self._inline
        if inline is not None and len(jobs) <= INLINE_MAX_JOBS:
            ids = await inline.write(lambda conn: ops.enqueue(conn, jobs, now_us))
            if ids is not NOT_RUN:
                return ids
        return await self._write(lambda conn: ops.enqueue(conn, jobs, now_us), notify=True)

    async def wait_for_work(self, at_most: float) -> None:
        """Return when another process committed, or this store wrote jobs, since the
        last claim or wait, or after ``at_most`` seconds.

        Another process's commit is seen by polling ``PRAGMA data_version`` every 5 ms;
        a write through this object wakes the waiter at once.
        """
        writer = self._threads()[0]
        try:
            await self._wait_for_work(writer, at_most)
        except StoreError:
            if self._writer is writer:
                raise
            # closed while waiting: nothing more will come through this store

    async def _wait_for_work(self, writer: ConnectionThread, at_most: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(at_most, 0.0)
        if self._seen is None:
            self._seen = (self._generation, await writer.call(ops.data_version))
        generation, version = self._seen
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with self._lock:
            self._waiters.add(entry)
        try:
            while self._generation == generation:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait([waiter], timeout=min(POLL_INTERVAL, remaining))
                now_version = await writer.call(ops.data_version)
                if now_version != version:
                    version = now_version
                    break
        finally:
            with self._lock:
                self._waiters.discard(entry)
        self._seen = (self._generation, version)

    def _local_change(self) -> None:
        # On the writer thread, after a commit that may have brought work.
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_wake, waiter)

    # -- working -----------------------------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        """Insert (or replace) a worker row; its ``heartbeat_at`` starts the lease."""
        await self._write(lambda conn: ops.register_worker(conn, worker))

    async def unregister_worker(self, worker_id: str) -> None:
        """Delete a worker row (graceful shutdown)."""
        await self._write(lambda conn: ops.unregister_worker(conn, worker_id))

    async def claim(
        self, worker_id: str, *, tags: Sequence[str] | None, limit: int, now: datetime
    ) -> list[Claimed]:
        """Take up to ``limit`` due jobs, highest priority, then oldest, first."""
        now_us = to_us(now)
        generation = self._generation

        def work(conn: Any) -> tuple[str, str]:
            lease, count, rows = batch.claim(conn, worker_id, tags, limit, now_us)
            if count < limit:
                # A short claim: the worker may wait next. Read under the write lock, so
                # any later commit by another connection moves it. (After a full claim
                # the worker claims again first; a stale mark only costs one extra look.)
                version = ops.data_version(conn)
                previous, self._claimed_version = self._claimed_version, version
                if previous is not None and previous != version:
                    # Something was committed since the last claim, maybe a job enqueued
                    # after the caller took ``now``: not due for this claim, due for the
                    # next. Mark the last claim's version, so that the next wait returns
                    # within a poll and the worker claims again with a fresh ``now``.
                    version = previous
                self._seen = (generation, version)
            return lease, rows

        lease, rows = await self._write(work)
        return batch.claimed_from_json(lease, rows)

    async def claim_job(self, worker_id: str, job_id: int, *, now: datetime) -> Claimed | None:
        """Take this one job if it is pending or paused, due or not (inline runs)."""
        now_us = to_us(now)
        return await self._write(lambda conn: ops.claim_job(conn, worker_id, job_id, now_us))

    async def complete(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        """Write run outcomes whose lease still matches; returns the ids written."""
        if not outcomes:
            return set()
        encoded = batch.outcomes_json(worker_id, outcomes)
        written = await self._write(
            lambda conn: batch.complete(conn, worker_id, encoded), notify=True
        )
        return set(written)

    async def release(self, worker_id: str, leases: Sequence[tuple[int, str]]) -> None:
        """Undo claims whose handler never started."""
        if not leases:
            return
        now_us = to_us(self.now())
        await self._write(lambda conn: ops.release(conn, worker_id, leases, now_us), notify=True)

    async def heartbeat(
        self, worker_id: str, *, now: datetime, running: Sequence[int]
    ) -> Heartbeat:
        """Renew the lease; ``alive=False`` when the worker was declared dead."""
        now_us = to_us(now)
        return await self._write(lambda conn: ops.heartbeat(conn, worker_id, now_us, running))

    async def recover(self, *, now: datetime) -> Recovery:
        """Crash recovery (see :meth:`batchwork.jobs._store.Store.recover`)."""
        now_us = to_us(now)
        return await self._write(lambda conn: ops.recover(conn, now_us), notify=True)

    async def claim_exit_hooks(
        self, worker_id: str, *, names: Sequence[str], limit: int
    ) -> list[Job]:
        """Take up to ``limit`` due on_exit hooks of these job names."""
        return await self._write(lambda conn: ops.claim_exit_hooks(conn, worker_id, names, limit))

    async def finish_exit_hooks(self, worker_id: str, job_ids: Sequence[int]) -> None:
        """Mark exit hooks taken by this worker as done."""
        if job_ids:
            await self._write(lambda conn: ops.finish_exit_hooks(conn, worker_id, job_ids))

    # -- crons -------------------------------------------------------------------------
    async def reconcile_crons(self, specs: Sequence[CronSpec], *, now: datetime) -> None:
        """Make the stored crons match ``specs`` in one transaction."""
        now_us = to_us(now)
        await self._write(lambda conn: queries.reconcile_crons(conn, specs, now_us))

    async def cron_states(self) -> list[CronState]:
        """Every stored cron, by name."""
        return await self._read(queries.cron_states)

    async def fire_cron_ticks(
        self, name: str, ticks: Sequence[NewJob], *, watermark: datetime, now: datetime
    ) -> list[int | None]:
        """Insert tick records (a tick already there is ``None``) and raise the watermark."""
        now_us, mark_us = to_us(now), to_us(watermark)
        return await self._write(
            lambda conn: queries.fire_cron_ticks(conn, name, ticks, mark_us, now_us),
            notify=True,
        )

    # -- querying and control ----------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        """One job; :class:`~batchwork.errors.JobNotFound` for an unknown id."""
        job = await self._read(lambda conn: queries.get(conn, job_id))
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first (by id), filtered by status, name and tag."""
        return await self._read(
            lambda conn: queries.list_jobs(
                conn, status=status, name=name, tag=tag, limit=limit, offset=offset
            )
        )

    async def cancel(self, job_id: int, *, now: datetime) -> CancelResult:
        """Cancel a pending/paused job now, or ask a running one's worker to stop it."""
        now_us = to_us(now)
        result = await self._write(lambda conn: ops.cancel(conn, job_id, now_us))
        if result is None:
            raise JobNotFound(job_id)
        return result

    async def retry(self, job_id: int, *, now: datetime) -> bool:
        """Put an ended job back to pending due ``now``; ``False`` if it has not ended.

        The error is kept; the result, hook state, cancel request and crash count are
        cleared (a manual retry starts the crash-loop guard afresh).
        """
        now_us = to_us(now)
        result = await self._write(lambda conn: ops.retry(conn, job_id, now_us), notify=True)
        if result is None:
            raise JobNotFound(job_id)
        return result

    async def counts(self) -> dict[tuple[str, JobStatus], int]:
        """Number of jobs per ``(name, status)``."""
        return await self._read(queries.counts)

    async def timeline(self, *, since: datetime, bucket: float) -> list[TimelinePoint]:
        """Finished and failed (errored, timed_out, crashed) jobs per ``bucket`` seconds
        since ``since``, oldest first; buckets where nothing ended are left out."""
        if bucket <= 0:
            raise ValueError(f"bucket must be > 0 seconds, got {bucket!r}")
        since_us, bucket_us = to_us(since), max(1, round(bucket * 1_000_000))
        return await self._read(lambda conn: queries.timeline(conn, since_us, bucket_us))

    async def workers(self) -> list[WorkerInfo]:
        """Registered workers with the ids of the jobs each is running."""
        return await self._read(queries.workers)

    async def purge(self, *, ended_before: datetime) -> int:
        """Delete jobs that ended before this instant, in short transactions."""
        before_us = to_us(ended_before)
        total = 0
        while True:
            deleted = await self._write(lambda conn: ops.purge(conn, before_us, PURGE_CHUNK))
            total += deleted
            if deleted < PURGE_CHUNK:
                return total


def _optimize(conn: Any) -> None:
    conn.execute("PRAGMA analysis_limit = 400")
    conn.execute("PRAGMA optimize")


def _checkpoint(conn: Any) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
