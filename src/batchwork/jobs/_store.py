"""The one boundary between the job runtime and a database.

Both stores (``_sqlite.py`` and ``_postgres.py``) implement :class:`Store`; the store-contract
test suite runs the same tests against each. A store translates these calls to SQL and
nothing more: it makes no decision the domain (``_model.py``) or the runtime should make.

Rules every implementation keeps:

* Every method that writes is one short transaction; a method given many rows writes them
  in one transaction.
* Times: methods take ``now`` from the caller (an injectable clock in tests); ``now()``
  is the store's own clock (PostgreSQL: the database clock, so hosts with skewed clocks
  agree on leases and cron ticks).
* Fencing: ``complete``, ``heartbeat`` and ``release`` only touch rows whose ``worker_id``
  and ``lease`` still match; a write from a worker that lost its lease changes nothing.
* Driver exceptions leave a store only as :class:`batchwork.errors.StoreError` with the
  driver's exception as ``__cause__``.
* Transitions follow :data:`batchwork.jobs._model.ALLOWED_TRANSITIONS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

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


class Store(Protocol):
    """What the job runtime needs from a database (see the module docstring for rules)."""

    url: str

    def now(self) -> datetime:
        """The store's clock as an aware UTC datetime (no I/O)."""
        ...

    async def open(self) -> None:
        """Connect, and create or migrate the schema (safe when processes race to do it)."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks; the store can be opened again."""
        ...

    # -- producing -------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[int | None]:
        """Insert jobs in one transaction; one id per job, in order.

        ``unique_key`` hit: the active job's id. Exclusive conflict: the id of the new
        ``skipped`` row. A ``CRON_TASK`` tick that already exists: ``None``.
        ``connection``: the caller's own open transaction (PostgreSQL only), so the jobs
        exist only if it commits.
        """
        ...

    async def wait_for_work(self, at_most: float) -> None:
        """Return soon after another connection or process changed the jobs, or after
        ``at_most`` seconds, whichever comes first (SQLite: ``PRAGMA data_version``
        polling; PostgreSQL: LISTEN/NOTIFY with a polling fallback)."""
        ...

    # -- working ---------------------------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        """Insert (or replace) a worker row; its ``heartbeat_at`` starts the lease."""
        ...

    async def unregister_worker(self, worker_id: str) -> None:
        """Delete a worker row on graceful shutdown."""
        ...

    async def claim(
        self,
        worker_id: str,
        *,
        tags: Sequence[str] | None,
        limit: int,
        now: datetime,
    ) -> list[Claimed]:
        """Take up to ``limit`` due jobs (pending or paused, ``scheduled_for <= now``) in
        one transaction, highest ``priority`` first, then oldest ``scheduled_for``, then id.

        ``tags=None`` takes every job; otherwise untagged jobs and those whose tag is listed.
        Each taken job becomes ``running`` with ``worker_id``, a fresh lease, ``attempts + 1``
        and ``started_at`` set if it was not (a resumed job keeps its first start). A claim
        is a start: the worker claims only what it will start at once.
        """
        ...

    async def claim_job(self, worker_id: str, job_id: int, *, now: datetime) -> Claimed | None:
        """Take this one job, due or not, exactly as :meth:`claim` takes a job (running,
        ``worker_id``, fresh lease, ``attempts + 1``, first ``started_at`` kept), in one
        transaction; ``None`` when it is not pending or paused. ``processor.run`` (inline
        runs) uses it; tags and ``scheduled_for`` are not checked."""
        ...

    async def complete(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
        """Write the outcomes of runs in one transaction; returns the ids written.

        An outcome whose lease no longer matches (the job was recovered or cancelled while
        this worker lost its lease) is not written and its id is missing from the result.
        Ended statuses set ``ended_at`` and ``duration``, clear the lease and mark the
        ``on_exit`` hook due (or taken by this worker with ``run_exit_hook``). ``PAUSED``
        and ``PENDING`` (retry) clear ``worker_id`` and the lease.
        """
        ...

    async def release(self, worker_id: str, leases: Sequence[tuple[int, str]]) -> None:
        """Put claimed jobs whose handler never started back to their state before the
        claim (``attempts - 1``, ``pending`` or ``paused``)."""
        ...

    async def heartbeat(
        self, worker_id: str, *, now: datetime, running: Sequence[int]
    ) -> Heartbeat:
        """Renew the worker's lease. ``alive=False`` when the row is gone (another worker
        declared it dead): the caller must stop its jobs and write nothing for them.
        ``cancel_ids``: those of ``running`` whose cancellation was requested."""
        ...

    async def recover(self, *, now: datetime) -> Recovery:
        """Crash recovery, by any live worker: delete workers whose ``heartbeat_at`` is more
        than their own ``lease_timeout`` before ``now``; their running jobs become pending
        again when ``resumable`` and ``crashes < max_crashes`` (``crashes + 1``, worker and
        lease cleared), else ``crashed`` with an error naming the worker and the on_exit
        hook due. Exit hooks taken by a dead worker become due again."""
        ...

    async def claim_exit_hooks(
        self, worker_id: str, *, names: Sequence[str], limit: int
    ) -> list[Job]:
        """Take up to ``limit`` ended jobs of these names whose on_exit hook is due."""
        ...

    async def finish_exit_hooks(self, worker_id: str, job_ids: Sequence[int]) -> None:
        """Mark exit hooks taken by this worker as done."""
        ...

    # -- crons -----------------------------------------------------------------------
    async def reconcile_crons(self, specs: Sequence[CronSpec], *, now: datetime) -> None:
        """Make the stored crons match ``specs`` in one transaction: a new cron is stored
        with ``watermark=now``; a changed expression or time zone is updated with
        ``watermark=now`` and its pending ticks deleted; a cron absent from ``specs`` is
        deleted with its pending ticks (running ones are kept). Concurrent calls from many
        workers leave one row per cron."""
        ...

    async def cron_states(self) -> list[CronState]:
        """Every stored cron."""
        ...

    async def fire_cron_ticks(
        self, name: str, ticks: Sequence[NewJob], *, watermark: datetime, now: datetime
    ) -> list[int | None]:
        """Insert tick records (``CRON_TASK``, unique by name and tick time, so a tick fired
        by another worker is ``None`` here) and raise the cron's watermark to ``watermark``
        (never lower it), in one transaction."""
        ...

    # -- querying and control --------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        """One job; :class:`batchwork.errors.JobNotFound` for an unknown id."""
        ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first (by id), filtered."""
        ...

    async def cancel(self, job_id: int, *, now: datetime) -> CancelResult:
        """Cancel a job: pending/paused end ``cancelled`` now (hook due); running ones get
        ``cancel_requested`` for their worker's next heartbeat. JobNotFound if unknown."""
        ...

    async def retry(self, job_id: int, *, now: datetime) -> bool:
        """Put an ended job back to ``pending`` due ``now`` (error kept, hook state and
        cancel request cleared); ``False`` if it has not ended. JobNotFound if unknown."""
        ...

    async def counts(self) -> dict[tuple[str, JobStatus], int]:
        """Number of jobs per ``(name, status)``."""
        ...

    async def timeline(self, *, since: datetime, bucket: float) -> list[TimelinePoint]:
        """Jobs ended since ``since`` in buckets of ``bucket`` seconds, oldest first;
        ``mean_pickup`` is the mean delay from ``scheduled_for`` to the run's start."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Registered workers with the ids of the jobs each is running."""
        ...

    async def purge(self, *, ended_before: datetime) -> int:
        """Delete jobs that ended before this instant; returns how many."""
        ...


def store_from_url(url: str) -> Store:
    """The store for a URL: ``sqlite:///path`` or ``postgresql://…`` / ``postgres://…``.

    Creating a store does no I/O (it connects on :meth:`Store.open`). A SQLite URL may carry
    ``?synchronous=FULL``; a PostgreSQL URL ``?schema=name`` (batchwork's tables in their own
    schema) and ``durable_completions=false`` (completions committed asynchronously).

    Example::

        store = store_from_url("sqlite:///batchwork.db")
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from ._sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"store URL {url!r} is not supported: use sqlite:///path or postgresql://host/db"
    )
