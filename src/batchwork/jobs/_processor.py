"""``JobProcessor``: registration, producing, querying and control of durable jobs."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import weakref
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from batchwork.errors import JobFailed

from ._cron_scheduler import CronInfo, CronScheduler
from ._defs import CronDef, CronHandler, Duration, ExitHook, JobDef, JobHandler, seconds
from ._handles import JobStats, RegisteredCron, RegisteredJob
from ._model import (
    CancelResult,
    Job,
    JobStatus,
    NewJob,
    TimelinePoint,
    WorkerInfo,
    dump_json,
)
from ._runner import Execution
from ._store import Store, store_from_url
from ._worker import Worker

if TYPE_CHECKING:
    from ._sync_api import SyncJobProcessor

_RESULT_POLL_MAX = 0.25


class JobProcessor:
    """Durable jobs and crons on one store; the object an app and its workers share.

    Creating it and registering handlers need no event loop and do no I/O: the store opens
    on first use (one connection set per event loop). See ``docs/jobs.md``.

    Example::

        processor = JobProcessor("sqlite:///jobs.db")

        @processor.job(resumable=True, retries=3, max_runtime=600)
        async def import_file(job: Job, signal: Signal) -> dict: ...

        job_id = await processor.enqueue("import_file", {"path": "a.csv"})
        await processor.run_worker(concurrency=8)
    """

    def __init__(
        self,
        store: str | Store = "sqlite:///batchwork.db",
        *,
        jobs: Mapping[str, JobDef] | None = None,
        crons: Mapping[str, CronDef] | None = None,
        worker_tags: Sequence[str] | None = None,
        logger: logging.Logger | None = None,
        heartbeat_interval: Duration = 5.0,
        lease_timeout: Duration = 30.0,
        shutdown_grace: Duration = 30.0,
        retention: Duration = timedelta(days=90),
        timezone: str = "UTC",
        clock: Any = None,
    ) -> None:
        if worker_tags is not None and not builtins.list(worker_tags):
            raise ValueError("worker_tags=[] would take no job: pass None to take every job")
        self.heartbeat_interval = _positive(heartbeat_interval, "heartbeat_interval")
        self.lease_timeout = _positive(lease_timeout, "lease_timeout")
        if self.lease_timeout <= self.heartbeat_interval:
            raise ValueError(
                f"lease_timeout ({self.lease_timeout:g} s) must be longer than "
                f"heartbeat_interval ({self.heartbeat_interval:g} s)"
            )
        self.shutdown_grace = _positive(shutdown_grace, "shutdown_grace", allow_zero=True)
        self.retention = _positive(retention, "retention")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {timezone!r} is not a known IANA time zone") from exc
        self.timezone = timezone
        self.worker_tags: tuple[str, ...] | None = (
            tuple(worker_tags) if worker_tags is not None else None
        )
        self.logger = logger or logging.getLogger("batchwork.jobs")
        self.clock = clock
        self._store_arg = store
        self.url = store if isinstance(store, str) else store.url
        if isinstance(store, str):
            store_from_url(store)  # refuse an unsupported URL now; opens nothing
        self.jobs: dict[str, JobDef] = {}
        self.cron_defs: dict[str, CronDef] = {}
        for name, job_def in (jobs or {}).items():
            self._add_job(name, job_def)
        for name, cron_def in (crons or {}).items():
            self._add_cron(name, cron_def)
        self._stores: dict[asyncio.AbstractEventLoop, tuple[Store, asyncio.Future[None]]] = {}
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        self._waiters: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
        self._inline_runs: dict[int, Execution] = {}
        self._sync: SyncJobProcessor | None = None

    # -- registration --------------------------------------------------------------
    @overload
    def job(self, name: JobHandler, /) -> RegisteredJob: ...

    @overload
    def job(
        self,
        name: str | None = None,
        *,
        resumable: bool = False,
        tag: str | None = None,
        retries: int = 0,
        backoff: Duration = 1.0,
        max_runtime: Duration | None = None,
        exclusive: bool = False,
        max_crashes: int = 3,
        on_exit: ExitHook | None = None,
    ) -> Callable[[JobHandler], RegisteredJob]: ...

    def job(
        self,
        name: str | JobHandler | None = None,
        *,
        resumable: bool = False,
        tag: str | None = None,
        retries: int = 0,
        backoff: Duration = 1.0,
        max_runtime: Duration | None = None,
        exclusive: bool = False,
        max_crashes: int = 3,
        on_exit: ExitHook | None = None,
    ) -> RegisteredJob | Callable[[JobHandler], RegisteredJob]:
        """Register ``handler(job, signal)`` (async or plain ``def``) as a job.

        ``name`` defaults to the function's name. Returns a :class:`RegisteredJob`.

        Example::

            @processor.job(tag="gpu", retries=3, backoff=2.0)
            def render(job: Job, signal: Signal) -> str: ...
        """

        def register(handler: JobHandler) -> RegisteredJob:
            job_name = name if isinstance(name, str) else handler.__name__
            job_def = JobDef(
                handler,
                on_exit=on_exit,
                resumable=resumable,
                tag=tag,
                retries=retries,
                backoff=backoff,
                max_runtime=max_runtime,
                exclusive=exclusive,
                max_crashes=max_crashes,
                name=job_name,
            )
            self._add_job(job_name, job_def)
            return RegisteredJob(self, job_name, handler)

        if name is not None and not isinstance(name, str):
            return register(name)
        return register

    def cron(
        self,
        cron: str,
        *,
        name: str | None = None,
        resumable: bool = False,
        tag: str | None = None,
        checkin_margin: Duration | None = None,
        max_runtime: Duration | None = None,
        exclusive: bool = True,
        timezone: str | None = None,
        on_exit: ExitHook | None = None,
    ) -> Callable[[CronHandler], RegisteredCron]:
        """Register ``handler(signal)`` to run once per tick of ``cron`` across workers.

        ``InvalidCron`` for a bad expression, at once. Returns a :class:`RegisteredCron`.

        Example::

            @processor.cron("*/5 * * * *", checkin_margin=120, max_runtime=600)
            async def refresh(signal: Signal) -> None: ...
        """

        def register(handler: CronHandler) -> RegisteredCron:
            cron_name = name or handler.__name__
            cron_def = CronDef(
                cron,
                handler,
                on_exit=on_exit,
                resumable=resumable,
                checkin_margin=checkin_margin,
                max_runtime=max_runtime,
                tag=tag,
                exclusive=exclusive,
                timezone=timezone,
                name=cron_name,
            )
            self._add_cron(cron_name, cron_def)
            return RegisteredCron(self, cron_name, handler)

        return register

    # -- producing -----------------------------------------------------------------
    async def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        tag: str | None = None,
        connection: Any = None,
    ) -> int:
        """Store one job, due at ``run_at`` (default: now); returns its id.

        ``PayloadError`` (nothing stored) when the payload is not strict JSON. With
        ``unique_key``, an active job with the same key is not duplicated: its id is
        returned. An ``exclusive`` job with an active instance is stored ``skipped``.
        ``connection``: enqueue inside your own PostgreSQL transaction.

        Example::

            job_id = await processor.enqueue("send", {"to": "a@b.c"}, run_at=timedelta(minutes=5))
        """
        store = await self._ready_store()
        now = self._now(store)
        new = self._new_job(name, payload, run_at, priority, unique_key, tag, now)
        ids = await store.enqueue([new], now=now, connection=connection)
        self._wake_workers()
        return _job_id(ids[0])

    async def enqueue_many(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        tag: str | None = None,
        connection: Any = None,
    ) -> builtins.list[int]:
        """Store many jobs of one name in one transaction; their ids, in order.

        Every payload is checked before anything is stored.

        Example::

            ids = await processor.enqueue_many("resize", [{"id": i} for i in range(1000)])
        """
        store = await self._ready_store()
        now = self._now(store)
        news = [self._new_job(name, p, run_at, priority, None, tag, now) for p in payloads]
        if not news:
            return []
        ids = await store.enqueue(news, now=now, connection=connection)
        self._wake_workers()
        return [_job_id(i) for i in ids]

    async def run(self, name: str, payload: Any = None) -> Job:
        """Run a registered job in this process now, recorded like any other job.

        Retries happen inline; ``on_exit`` is called before this returns the ended record.
        ``LookupError`` for a name no handler is registered for here.

        Example::

            job = await processor.run("import_file", {"path": "a.csv"})
            assert job.status == "finished"
        """
        from ._inline import run_inline

        return await run_inline(self, name, payload)

    # -- querying and control ------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        """One job record; ``JobNotFound`` for an unknown id."""
        return await (await self._ready_store()).get(job_id)

    async def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """Jobs, newest first, filtered by status, name and tag.

        Example::

            failed = await processor.list(status="errored", limit=20)
        """
        store = await self._ready_store()
        wanted = JobStatus(status) if status is not None else None
        return await store.list_jobs(status=wanted, name=name, tag=tag, limit=limit, offset=offset)

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job: pending or paused ones end ``cancelled`` at once; a running one
        has its signal set (at once in this process, within a heartbeat elsewhere).
        ``False`` when the job had already ended.

        Example::

            await processor.cancel(job_id)
        """
        store = await self._ready_store()
        outcome = await store.cancel(job_id, now=self._now(store))
        if outcome is CancelResult.ALREADY_ENDED:
            return False
        if outcome is CancelResult.REQUESTED:
            for worker in builtins.list(self._workers):
                worker.cancel_local(job_id)
            execution = self._inline_runs.get(job_id)
            if execution is not None:
                execution.stop("cancelled")
        else:
            self._job_changed()
        return True

    async def retry(self, job_id: int) -> bool:
        """Put an ended job back to ``pending``, due now; ``False`` if it has not ended."""
        store = await self._ready_store()
        changed = await store.retry(job_id, now=self._now(store))
        if changed:
            self._wake_workers()
        return changed

    async def result(self, job_id: int, timeout: Duration | None = None) -> Any:  # noqa: ASYNC109
        """Wait for a job to end and return its result.

        ``JobFailed`` when it ended without one (errored, cancelled, …), ``TimeoutError``
        when it has not ended within ``timeout`` seconds (``None``: wait for ever).

        Example::

            value = await processor.result(job_id, timeout=30)
        """
        limit = seconds(timeout, "timeout", allow_zero=True)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        wait = 0.005
        while True:
            job = await self.get(job_id)
            if JobStatus(job.status).ended:
                if job.status == JobStatus.FINISHED:
                    return job.result
                raise JobFailed(job)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"job {job_id} has not ended after {limit:g} s (status {job.status})"
                )
            await self._wait_changed(wait if left is None else min(wait, left))
            wait = min(wait * 2, _RESULT_POLL_MAX)

    async def stats(self) -> JobStats:
        """Counts of jobs per status and per name.

        Example::

            (await processor.stats()).by_status["pending"]
        """
        counts = await (await self._ready_store()).counts()
        by_status: dict[str, int] = {}
        by_name: dict[str, dict[str, int]] = {}
        for (name, status), count in counts.items():
            by_status[str(status)] = by_status.get(str(status), 0) + count
            by_name.setdefault(name, {})[str(status)] = count
        return JobStats(sum(by_status.values()), by_status, by_name)

    async def timeline(
        self, *, since: datetime | None = None, bucket: Duration = 60.0
    ) -> builtins.list[TimelinePoint]:
        """Jobs ended per time bucket since ``since`` (default: the last hour)."""
        store = await self._ready_store()
        start = since if since is not None else self._now(store) - timedelta(hours=1)
        width = seconds(bucket, "bucket")
        assert width is not None
        return await store.timeline(since=start, bucket=width)

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Live workers (host, pid, tags, last heartbeat, running job ids)."""
        return await (await self._ready_store()).workers()

    async def crons(self) -> builtins.list[CronInfo]:
        """Each registered cron's schedule and health: next and last tick, last status and
        duration, late / missed / overran flags.

        Example::

            for cron in await processor.crons():
                print(cron.name, cron.next_tick, cron.last_status, cron.late)
        """
        store = await self._ready_store()
        return await self._cron_scheduler(store, None).infos(self._now(store))

    async def purge(self, older_than: Duration | None = None) -> int:
        """Delete jobs that ended more than ``older_than`` (default: ``retention``) ago."""
        store = await self._ready_store()
        age = seconds(older_than, "older_than", allow_zero=True)
        age = self.retention if age is None else age
        return await store.purge(ended_before=self._now(store) - timedelta(seconds=age))

    # -- working -------------------------------------------------------------------
    def worker(
        self,
        *,
        concurrency: int = 8,
        tags: Sequence[str] | None = None,
        burst: bool = False,
        poll_interval: float = 1.0,
    ) -> Worker:
        """A :class:`Worker` for this processor (not started)."""
        return Worker(
            self, concurrency=concurrency, tags=tags, burst=burst, poll_interval=poll_interval
        )

    async def run_worker(
        self,
        *,
        concurrency: int = 8,
        tags: Sequence[str] | None = None,
        burst: bool = False,
        poll_interval: float = 1.0,
    ) -> None:
        """Run a worker until SIGTERM/SIGINT or until the calling task is cancelled, then
        shut down gracefully and :meth:`close` this loop's store connections (a later call
        opens them again). ``burst=True``: return once nothing is due or running.

        Example::

            asyncio.run(processor.run_worker(concurrency=16, tags=["gpu"]))
        """
        worker = Worker(
            self,
            concurrency=concurrency,
            tags=tags,
            burst=burst,
            poll_interval=poll_interval,
            handle_signals=True,
        )
        try:
            await worker.run()
        finally:
            # A connection pool left open when the loop ends can hang asyncio.run: a pool
            # task busy connecting swallows the cancellation of the loop's shutdown. Not
            # while another worker or an inline run still uses the store, though.
            if not self._workers and not self._inline_runs:
                await self.close()

    @property
    def sync(self) -> SyncJobProcessor:
        """Blocking twins of the producing and query calls, for code without a loop.

        Example::

            job_id = processor.sync.enqueue("send", {"to": "a@b.c"})
        """
        if self._sync is None:
            from ._sync_api import SyncJobProcessor

            self._sync = SyncJobProcessor(self)
        return self._sync

    async def close(self) -> None:
        """Close this event loop's store connections (a later call opens them again)."""
        entry = self._stores.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].close()

    # -- internals shared with the worker ------------------------------------------
    async def _ready_store(self) -> Store:
        loop = asyncio.get_running_loop()
        entry = self._stores.get(loop)
        if entry is None:
            for old in [old for old in self._stores if old.is_closed()]:
                del self._stores[old]
            store = self._make_store()
            entry = (store, asyncio.ensure_future(store.open()))
            self._stores[loop] = entry
        try:
            await asyncio.shield(entry[1])
        except Exception:
            if self._stores.get(loop) is entry:
                del self._stores[loop]
            raise
        return entry[0]

    def _make_store(self) -> Store:
        arg = self._store_arg
        return store_from_url(arg) if isinstance(arg, str) else arg

    def _now(self, store: Store) -> datetime:
        now: datetime = self.clock.now() if self.clock is not None else store.now()
        return now

    def _new_job(
        self,
        name: str,
        payload: Any,
        run_at: datetime | timedelta | None,
        priority: int,
        unique_key: str | None,
        tag: str | None,
        now: datetime,
    ) -> NewJob:
        definition = self.jobs.get(name)
        return NewJob(
            name=name,
            payload_json=dump_json(payload),
            scheduled_for=_due_at(run_at, now),
            priority=priority,
            tag=tag if tag is not None else (definition.tag if definition else None),
            unique_key=unique_key,
            exclusive=definition.exclusive if definition else False,
            resumable=definition.resumable if definition else False,
            max_crashes=definition.max_crashes if definition else 3,
        )

    def _attach(self, worker: Worker) -> None:
        self._workers.add(worker)

    def _detach(self, worker: Worker) -> None:
        self._workers.discard(worker)

    def _wake_workers(self) -> None:
        for worker in builtins.list(self._workers):
            worker.notify()

    def _job_changed(self) -> None:
        """Wake the ``result()`` calls waiting in this process, whatever their loop."""
        if not self._waiters:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for event, loop in builtins.list(self._waiters.items()):
            if loop is current:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def _wait_changed(self, at_most: float) -> None:
        event = asyncio.Event()
        self._waiters[event] = asyncio.get_running_loop()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), at_most)
        finally:
            del self._waiters[event]

    def _hook_names(self) -> builtins.list[str]:
        names = [name for name, job in self.jobs.items() if job.on_exit is not None]
        return names + [name for name, cron in self.cron_defs.items() if cron.on_exit]

    def _cron_scheduler_for(self, worker: Worker) -> CronScheduler | None:
        if not self.cron_defs:
            return None
        return self._cron_scheduler(worker._ready(), worker.tags)

    def _cron_scheduler(self, store: Store, tags: Sequence[str] | None) -> CronScheduler:
        return CronScheduler(
            store,
            self.cron_defs,
            default_timezone=self.timezone,
            tags=tags,
            logger=self.logger,
        )

    def _add_job(self, name: str, job_def: JobDef) -> None:
        if name in self.jobs:
            raise ValueError(f"a job named {name!r} is already registered")
        self.jobs[name] = job_def

    def _add_cron(self, name: str, cron_def: CronDef) -> None:
        if name in self.cron_defs:
            raise ValueError(f"a cron named {name!r} is already registered")
        self.cron_defs[name] = cron_def

    def _set_exit_hook(self, name: str, hook: ExitHook, *, cron: bool) -> None:
        from dataclasses import replace

        if cron:
            self.cron_defs[name] = replace(self.cron_defs[name], on_exit=hook)
        else:
            self.jobs[name] = replace(self.jobs[name], on_exit=hook)


def _positive(value: Duration, option: str, *, allow_zero: bool = False) -> float:
    result = seconds(value, option, allow_zero=allow_zero)
    assert result is not None
    return result


def _due_at(run_at: datetime | timedelta | None, now: datetime) -> datetime:
    if run_at is None:
        return now
    if isinstance(run_at, timedelta):
        return now + run_at
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ValueError(f"run_at must be timezone-aware, got naive {run_at!r}")
    return run_at.astimezone(UTC)


def _job_id(value: int | None) -> int:
    assert value is not None, "a store returned no id for a job enqueue"
    return value
