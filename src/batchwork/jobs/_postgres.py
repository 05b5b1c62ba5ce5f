"""The PostgreSQL store: many workers on many hosts share one database.

Imported only for ``postgresql://`` and ``postgres://`` URLs (see ``store_from_url``), so
psycopg is needed only by those who use it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

try:
    # imported first here, so that a missing driver gives the message below
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg_pool: pip install 'batchwork[postgres]'"
    ) from exc

from batchwork.errors import JobNotFound, StoreError

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
from ._postgres_conn import Conn, Connections
from ._postgres_enqueue import AsyncExecutor, enqueue_on, insert_all, one_statement
from ._postgres_rows import (
    check_new_job,
    check_outcome,
    cron_from_row,
    job_from_row,
    jobs_from_rows,
    outcome_params,
    split_url,
    url_flag,
    utc,
    worker_from_row,
)
from ._postgres_sql import Sql, channel_for, check_schema

log = logging.getLogger("batchwork.postgres")

PURGE_CHUNK = 10_000
_REQUEUED = (JobStatus.PENDING, JobStatus.PAUSED)


def _migrations() -> list[tuple[int, str]]:
    """The schema migrations shipped with the package, as ``(version, sql)`` in order."""
    folder = resources.files("batchwork.jobs").joinpath("sql", "postgres")
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


class PostgresStore:
    """The job store on PostgreSQL (psycopg 3, an ``AsyncConnectionPool``).

    ``url`` is a libpq URL; ``?schema=name`` (or ``schema=``) keeps batchwork's tables in
    their own schema, created and migrated on :meth:`open` (versioned, ordered migrations
    under an advisory lock, so processes that open a fresh database at once are safe).
    Creating the store does no I/O.

    Design, and the trade-offs it makes:

    * **Hot table.** ``jobs`` holds only pending, running and paused jobs; the transaction
      that ends a job moves it to ``job_history``. Claims scan a partial index on a table
      that stays as small as the backlog, however many millions of ended jobs are kept;
      ``get``, ``list_jobs``, ``counts``, ``timeline`` and ``purge`` read both tables.
    * **Claims** are one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)``
      statement. Claims and heartbeats commit with ``synchronous_commit = off``: if the
      *database server* crashes, the last few claims may be lost, which only puts those
      jobs back in the queue (the worker's later completion no longer matches the lease
      and is refused, so the job runs again: at-least-once, as for any crash).
    * **Completions** are written in one statement per batch and are durable by default.
      ``durable_completions=False`` (or ``?durable_completions=false`` in the URL) commits
      them asynchronously too: faster, but a database crash can then forget that a job
      ended, so it runs again and so does its ``on_exit``.
      Enqueues are always durable.
    * **Clock.** :meth:`now` is the *database* clock without a round trip: the offset
      between the database's ``clock_timestamp()`` and the local monotonic clock is
      measured at :meth:`open` and again at every :meth:`heartbeat`. Leases and cron ticks
      computed from it agree across hosts whose own clocks disagree.
    * **Wake-ups.** Work that becomes claimable sends a ``NOTIFY`` from the transaction
      that makes it so: one per enqueue call (a COPY of 10,000 jobs sends one; an enqueue
      in the caller's transaction notifies when the caller commits), and from the
      statements that retry, release, pause or resume jobs. Ending a job notifies nobody. A
      dedicated ``LISTEN`` connection, opened by the first claim or wait (a process that
      only enqueues never opens one), wakes :meth:`wait_for_work`; polling stays as the
      fallback (while LISTEN is down, waits are capped at ``poll_interval``).
    * **Connections.** The connection of the last call is kept for the next one rather
      than returned to the pool (unless a call waits for one), and statements reuse one
      cursor per connection: a one-job enqueue is one round trip and little else.
    * **Connection loss.** The pool replaces connections the server dropped (checked
      without a round trip when a connection is taken, the kept one included) and
      reconnects with backoff; the LISTEN connection re-establishes itself. While the
      database is away, operations raise :class:`~batchwork.errors.StoreError` (never a
      psycopg error) after ``connect_timeout`` seconds, and the store logs once when it
      goes and once when it comes back (logger ``batchwork.postgres``). Calls whose
      repetition is harmless (reads, heartbeats, completions, releases, cron writes) are
      retried on a fresh connection first. A claim whose reply was lost may have
      committed: its lease is remembered and those jobs are put back before the worker's
      next claim or heartbeat, so no job stays ``running`` for a worker that never got
      it. A completion repeated after a lost reply is recognised by its lease and
      reported as written.
    * **Planner.** Sessions run with ``enable_bitmapscan = off`` so that claims read the
      ready index in order even before autovacuum has analysed a freshly filled table,
      and with ``random_page_cost = 1.1`` so that completions look their jobs up by
      primary key rather than scan a small hot table.

    Example::

        store = PostgresStore("postgresql://app@db/app?schema=jobs")
        await store.open()
        [job_id] = await store.enqueue([new_job], now=store.now())
        await store.close()
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "batchwork",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        poll_interval: float = 1.0,
        durable_completions: bool = True,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        conninfo, options, self._where = split_url(url)
        self.url = url
        self.schema = check_schema(options.get("schema") or schema)
        self.channel = channel_for(self.schema)
        self._durable = url_flag(options, "durable_completions", durable_completions)
        self._sql = Sql(self.schema)
        self._db = Connections(
            conninfo,
            where=self._where,
            channel=self.channel,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            poll_interval=poll_interval,
        )
        self._clock = (time.time(), time.monotonic())
        # Leases of claims whose reply was lost: they may have committed, so their jobs are
        # put back before this worker's next claim or heartbeat (see ``_settle_claims``).
        self._uncertain: dict[str, set[str]] = {}
        # Leases of completions whose reply was lost (they may have been written).
        self._unconfirmed: set[str] = set()

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r}, schema={self.schema!r})"

    # -- lifetime --------------------------------------------------------------------
    def now(self) -> datetime:
        """The database clock, from the offset last measured (no I/O)."""
        db_epoch, measured_at = self._clock
        return datetime.fromtimestamp(db_epoch + (time.monotonic() - measured_at), UTC)

    async def open(self) -> None:
        """Connect, migrate the schema, measure the clock and start listening."""
        if not self._db.is_open:
            await self._db.open(self._setup, name=f"batchwork-{self.schema}")

    async def _setup(self, conn: Conn) -> None:
        await self._migrate(conn)
        await self._measure_clock(conn)

    async def close(self) -> None:
        """Stop listening and close every connection; :meth:`open` may be called again."""
        await self._db.close()

    async def _migrate(self, conn: Conn) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        if (
            await _scalar(conn, self._sql.has_versions())
            and await _scalar(conn, self._sql.current_version()) == latest
        ):
            return
        async with conn.transaction():
            await conn.query(Sql.lock, (f"batchwork:migrate:{self.schema}",))
            await conn.query(self._sql.migration_prelude())
            current = await _scalar(conn, self._sql.current_version())
            if current > latest:
                raise StoreError(
                    f"schema {self.schema!r} is at version {current}, newer than this "
                    f"batchwork knows ({latest}): upgrade batchwork"
                )
            for version, text in migrations:
                if version > current:
                    await conn.query(self._sql.set_search_path())
                    await conn.query(text.encode())
                    await conn.query(self._sql.migration_done(), (version,))
                    log.info("migrated schema %s to version %d", self.schema, version)

    async def _measure_clock(self, conn: Conn) -> None:
        before = time.monotonic()
        db_epoch = await _scalar(conn, Sql.clock)
        self._clock = (db_epoch, (before + time.monotonic()) / 2)

    async def wait_for_work(self, at_most: float) -> None:
        """Return when jobs were added or became claimable again since the last claim or
        wait (NOTIFY from any process, or a write through this store), or after
        ``at_most`` seconds; while the LISTEN connection is down, after ``poll_interval``
        at most."""
        self._db.pool(self)
        await self._db.wait(at_most)

    # -- producing -------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[int | None]:
        """Insert jobs in one transaction (COPY for runs of plain jobs); ids in order.

        With ``connection`` (a ``psycopg.AsyncConnection``, or a blocking
        ``psycopg.Connection``), the jobs are written in the
        caller's transaction and exist only once the caller commits.

        Example::

            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await conn.execute("INSERT INTO orders ...")
                await store.enqueue([job], now=store.now(), connection=conn)
            # committed: the job and the order exist together
        """
        if not jobs:
            return []
        for job in jobs:
            check_new_job(job)
        if connection is not None:
            return await enqueue_on(connection, self._sql, jobs, now)

        async def go(conn: Conn) -> list[int | None]:
            db = AsyncExecutor(conn)
            if one_statement(jobs):
                return await insert_all(db, self._sql, jobs, now)
            async with conn.transaction():
                return await insert_all(db, self._sql, jobs, now)

        ids = await self._db.run(self, "enqueue", go, retry=False)
        self._db.wake()
        return ids

    # -- working ---------------------------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        """Insert or replace the worker's row; its ``heartbeat_at`` starts the lease."""
        params = (
            worker.id,
            worker.hostname,
            worker.pid,
            None if worker.tags is None else list(worker.tags),
            worker.concurrency,
            worker.lease_timeout,
            worker.started_at,
            worker.heartbeat_at,
        )

        async def go(conn: Conn) -> None:
            await conn.query(self._sql.register_worker(), params)

        await self._db.run(self, "register_worker", go, retry=True)

    async def unregister_worker(self, worker_id: str) -> None:
        """Delete the worker's row (graceful shutdown)."""

        async def go(conn: Conn) -> None:
            await self._settle_claims(conn, worker_id)
            await conn.query(self._sql.unregister_worker(), (worker_id,))

        await self._db.run(self, "unregister_worker", go, retry=True)

    async def _settle_claims(self, conn: Conn, worker_id: str) -> None:
        uncertain = self._uncertain.get(worker_id)
        if uncertain:
            leases = list(uncertain)
            params = {"worker": worker_id, "leases": leases, "now": self.now()}
            await conn.query(self._sql.release_uncertain(), params)
            uncertain.difference_update(leases)

    async def claim(
        self,
        worker_id: str,
        *,
        tags: Sequence[str] | None,
        limit: int,
        now: datetime,
    ) -> list[Claimed]:
        """Take up to ``limit`` due jobs in one statement (``FOR UPDATE SKIP LOCKED``)."""
        if limit < 1:
            return []
        sql = self._sql.claim(tagged=tags is not None)
        uncertain = self._uncertain.setdefault(worker_id, set())

        await self._db.listen()

        async def go(conn: Conn) -> tuple[str, list[Any]]:
            # this claim sees every change notified so far; a later one wakes the next wait
            self._db.seen = self._db.generation
            await self._settle_claims(conn, worker_id)
            lease = uuid.uuid4().hex
            params = {"now": now, "limit": limit, "worker": worker_id, "lease": lease}
            if tags is not None:
                params["tags"] = list(tags)
            try:
                rows = await (await conn.query(sql, params)).fetchall()
            except BaseException:
                uncertain.add(lease)
                raise
            return lease, rows

        lease, rows = await self._db.run(self, "claim", go, retry=True)
        jobs = sorted(jobs_from_rows(rows), key=lambda j: (-j.priority, j.scheduled_for, j.id))
        return [Claimed(job, lease) for job in jobs]

    async def claim_job(self, worker_id: str, job_id: int, *, now: datetime) -> Claimed | None:
        """Take this one pending or paused job, due or not (inline ``processor.run``)."""
        sql = self._sql.claim_job()
        uncertain = self._uncertain.setdefault(worker_id, set())

        async def go(conn: Conn) -> Claimed | None:
            await self._settle_claims(conn, worker_id)
            lease = uuid.uuid4().hex
            params = {"now": now, "id": job_id, "worker": worker_id, "lease": lease}
            try:
                row = await _row(conn, sql, params)
            except BaseException:
                uncertain.add(lease)
                raise
            return None if row is None else Claimed(job_from_row(row), lease)

        return await self._db.run(self, "claim_job", go, retry=True)

    async def complete(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        """Write outcomes in one statement; fenced by worker and lease; returns ids written.

        Repeating a call whose reply was lost is harmless: outcomes it already wrote are
        recognised by their lease and reported as written.
        """
        if not outcomes:
            return set()
        for outcome in outcomes:
            check_outcome(outcome)
        params = outcome_params(worker_id, outcomes)
        leases = {o.lease for o in outcomes}
        requeue = any(o.status in _REQUEUED for o in outcomes)
        end = not all(o.status in _REQUEUED for o in outcomes)
        # Only a repeated call pays for the check of what an earlier try already wrote.
        again = not leases.isdisjoint(self._unconfirmed)

        async def go(conn: Conn) -> set[int]:
            nonlocal again
            sql = self._sql.complete(durable=self._durable, requeue=requeue, end=end, again=again)
            again = True
            try:
                return {r[0] for r in await (await conn.query(sql, params)).fetchall()}
            except BaseException:
                self._unconfirmed.update(leases)
                raise

        written = await self._db.run(self, "complete", go, retry=True)
        self._unconfirmed.difference_update(leases)
        return written

    async def release(self, worker_id: str, leases: Sequence[tuple[int, str]]) -> None:
        """Put claimed, never started jobs back as they were before the claim."""
        if not leases:
            return
        params = {
            "worker": worker_id,
            "ids": [job_id for job_id, _ in leases],
            "leases": [lease for _, lease in leases],
            "now": self.now(),
        }

        async def go(conn: Conn) -> None:
            await conn.query(self._sql.release(), params)

        await self._db.run(self, "release", go, retry=True)

    async def heartbeat(
        self, worker_id: str, *, now: datetime, running: Sequence[int]
    ) -> Heartbeat:
        """Renew the lease, report requested cancellations and re-measure the clock."""
        params = {"worker": worker_id, "now": now, "running": list(running)}

        async def go(conn: Conn) -> tuple[Any, float]:
            await self._settle_claims(conn, worker_id)
            before = time.monotonic()
            row = await (await conn.query(self._sql.heartbeat(), params)).fetchone()
            return row, (before + time.monotonic()) / 2

        row, measured_at = await self._db.run(self, "heartbeat", go, retry=True)
        alive, cancel_ids, db_epoch, _ = row
        self._clock = (db_epoch, measured_at)
        return Heartbeat(alive=alive > 0, cancel_ids=tuple(cancel_ids))

    async def recover(self, *, now: datetime) -> Recovery:
        """Delete workers whose lease expired and recover their running jobs and hooks."""
        sql = self._sql

        async def go(conn: Conn) -> Recovery:
            async with conn.transaction():
                cur = await conn.query(sql.dead_workers(), {"now": now})
                dead = [r[0] for r in await cur.fetchall()]
                if not dead:
                    return Recovery()
                params = {"now": now, "dead": dead}
                resumed = await (await conn.query(sql.resume_crashed(), params)).fetchall()
                crashed = await (await conn.query(sql.end_crashed(), params)).fetchall()
                await conn.query(sql.free_exit_hooks(), params)
                if resumed:
                    await conn.query(sql.notify())
            for name in dead:
                self._uncertain.pop(name, None)
            return Recovery(
                crashed=tuple(jobs_from_rows(crashed)),
                resumed=tuple(sorted(r[0] for r in resumed)),
                dead_workers=tuple(sorted(dead)),
            )

        return await self._db.run(self, "recover", go, retry=True)

    async def claim_exit_hooks(
        self, worker_id: str, *, names: Sequence[str], limit: int
    ) -> list[Job]:
        """Take up to ``limit`` due ``on_exit`` hooks of these job names."""
        if not names or limit < 1:
            return []
        params = {"worker": worker_id, "names": list(names), "limit": limit}

        async def go(conn: Conn) -> list[Job]:
            rows = await (await conn.query(self._sql.claim_exit_hooks(), params)).fetchall()
            return jobs_from_rows(rows)

        return await self._db.run(self, "claim_exit_hooks", go, retry=False)

    async def finish_exit_hooks(self, worker_id: str, job_ids: Sequence[int]) -> None:
        """Mark hooks taken by this worker as done."""
        if not job_ids:
            return

        async def go(conn: Conn) -> None:
            await conn.query(self._sql.finish_exit_hooks(), (list(job_ids), worker_id))

        await self._db.run(self, "finish_exit_hooks", go, retry=True)

    # -- crons -----------------------------------------------------------------------
    async def reconcile_crons(self, specs: Sequence[CronSpec], *, now: datetime) -> None:
        """Make the stored crons match ``specs`` (serialised by an advisory lock)."""
        sql = self._sql

        async def go(conn: Conn) -> None:
            async with conn.transaction():
                await conn.query(Sql.lock, (f"batchwork:{self.schema}:crons",))
                rows = await (await conn.query(sql.cron_states())).fetchall()
                stored = {r[0]: (r[1], r[2]) for r in rows}
                wanted = {spec.name for spec in specs}
                dropped = [name for name in stored if name not in wanted]
                for spec in specs:
                    old = stored.get(spec.name)
                    if old is None:
                        await conn.query(
                            sql.insert_cron(),
                            (spec.name, spec.expression, spec.timezone, now, now, now),
                        )
                    elif old != (spec.expression, spec.timezone):
                        await conn.query(
                            sql.update_cron(),
                            (spec.expression, spec.timezone, now, now, spec.name),
                        )
                        dropped.append(spec.name)
                if dropped:
                    gone = [name for name in dropped if name not in wanted]
                    await conn.query(sql.delete_crons(), (gone,))
                    await conn.query(sql.drop_pending_ticks(), (dropped,))

        await self._db.run(self, "reconcile_crons", go, retry=True)

    async def cron_states(self) -> list[CronState]:
        """Every stored cron, by name."""

        async def go(conn: Conn) -> list[CronState]:
            rows = await (await conn.query(self._sql.cron_states())).fetchall()
            return [cron_from_row(r) for r in rows]

        return await self._db.run(self, "cron_states", go, retry=True)

    async def fire_cron_ticks(
        self, name: str, ticks: Sequence[NewJob], *, watermark: datetime, now: datetime
    ) -> list[int | None]:
        """Insert tick records (a tick already fired gives ``None``) and raise the
        watermark, in one transaction."""
        for tick in ticks:
            check_new_job(tick)

        async def go(conn: Conn) -> list[int | None]:
            async with conn.transaction():
                ids = await insert_all(AsyncExecutor(conn), self._sql, ticks, now) if ticks else []
                await conn.query(self._sql.raise_watermark(), (watermark, now, name))
            return ids

        ids = await self._db.run(self, "fire_cron_ticks", go, retry=True)
        self._db.wake()
        return ids

    # -- querying and control --------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        """One job, active or ended; :class:`JobNotFound` for an unknown id."""

        async def go(conn: Conn) -> Any:
            return await (await conn.query(self._sql.get(), {"id": job_id})).fetchone()

        row = await self._db.run(self, "get", go, retry=True)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first (by id), filtered, from both tables."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        where = []
        if status is not None:
            params["status"] = JobStatus(status).value
            where.append("status = %(status)s")
        if name is not None:
            params["name"] = name
            where.append("name = %(name)s")
        if tag is not None:
            params["tag"] = tag
            where.append("tag = %(tag)s")
        sql = self._sql.list_jobs("WHERE " + " AND ".join(where) if where else "")

        async def go(conn: Conn) -> list[Job]:
            return jobs_from_rows(await (await conn.query(sql, params)).fetchall())

        return await self._db.run(self, "list_jobs", go, retry=True)

    async def cancel(self, job_id: int, *, now: datetime) -> CancelResult:
        """Cancel a pending/paused job now, or flag a running one for its worker."""
        sql = self._sql

        async def go(conn: Conn) -> CancelResult:
            async with conn.transaction():
                row = await _row(conn, sql.lock_active(), (job_id,))
                if row is not None:
                    if row[0] == JobStatus.RUNNING:
                        await conn.query(sql.request_cancel(), {"id": job_id, "now": now})
                        return CancelResult.REQUESTED
                    await conn.query(sql.cancel_now(), {"id": job_id, "now": now})
                    return CancelResult.CANCELLED
                if await _row(conn, sql.ended_status(), (job_id,)) is not None:
                    return CancelResult.ALREADY_ENDED
                raise JobNotFound(job_id)

        return await self._db.run(self, "cancel", go, retry=False)

    async def retry(self, job_id: int, *, now: datetime) -> bool:
        """Put an ended job back to pending, due ``now``; ``False`` if it has not ended."""
        sql = self._sql

        async def go(conn: Conn) -> bool:
            async with conn.transaction():
                if await _row(conn, sql.retry(), {"id": job_id, "now": now}) is not None:
                    return True
                if await _row(conn, sql.exists_active(), (job_id,)) is not None:
                    return False
                raise JobNotFound(job_id)

        revived = await self._db.run(self, "retry", go, retry=False)
        if revived:
            self._db.wake()
        return revived

    async def counts(self) -> dict[tuple[str, JobStatus], int]:
        """Number of jobs per ``(name, status)``, active and ended."""

        async def go(conn: Conn) -> dict[tuple[str, JobStatus], int]:
            rows = await (await conn.query(self._sql.counts())).fetchall()
            return {(r[0], JobStatus(r[1])): r[2] for r in rows}

        return await self._db.run(self, "counts", go, retry=True)

    async def timeline(self, *, since: datetime, bucket: float) -> list[TimelinePoint]:
        """Ended jobs per bucket of ``bucket`` seconds since ``since``, oldest first."""
        if bucket <= 0:
            raise ValueError(f"bucket must be > 0 seconds, got {bucket!r}")
        params = {"since": since, "bucket": float(bucket)}

        async def go(conn: Conn) -> list[Any]:
            return await (await conn.query(self._sql.timeline(), params)).fetchall()

        rows = await self._db.run(self, "timeline", go, retry=True)
        start = utc(since)
        return [
            TimelinePoint(start + timedelta(seconds=b * bucket), finished, failed, pickup)
            for b, finished, failed, pickup in rows
        ]

    async def workers(self) -> list[WorkerInfo]:
        """Registered workers with the ids of the jobs each is running."""

        async def go(conn: Conn) -> list[WorkerInfo]:
            rows = await (await conn.query(self._sql.workers())).fetchall()
            return [worker_from_row(r) for r in rows]

        return await self._db.run(self, "workers", go, retry=True)

    async def purge(self, *, ended_before: datetime) -> int:
        """Delete jobs that ended before ``ended_before``; returns how many."""

        # Short transactions: a purge of millions of rows must not hold one long one.
        params = {"before": ended_before, "chunk": PURGE_CHUNK}

        async def go(conn: Conn) -> int:
            return int(await _scalar(conn, self._sql.purge(), params))

        total = 0
        while True:
            deleted = await self._db.run(self, "purge", go, retry=False)
            total += deleted
            if deleted < PURGE_CHUNK:
                return total


async def _row(conn: Conn, sql: bytes, params: Any = None) -> Any:
    return await (await conn.query(sql, params)).fetchone()


async def _scalar(conn: Conn, sql: bytes, params: Any = None) -> Any:
    row = await _row(conn, sql, params)
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return row[0]
