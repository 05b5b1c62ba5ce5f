"""The worker: claims due jobs in batches, runs them, writes their outcomes in batches.

One asyncio task claims (one short transaction for up to ``free slots`` jobs; none while
too many ended jobs await their outcome's write) and starts one task per job; a group
writer commits every outcome that is ready in one ``complete`` transaction; a heartbeat
task renews the lease and picks up remote cancellations; a maintenance task recovers
crashed workers' jobs and runs due ``on_exit`` hooks. At shutdown the background loops
are stopped by a flag as well as a cancel (a store call may swallow the cancel).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal as signals
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._cron_scheduler import CronScheduler
from ._model import Job, WorkerInfo
from ._runner import definition_for
from ._worker_jobs import RunningJobs

if TYPE_CHECKING:
    from ._processor import JobProcessor
    from ._store import Store

_EXIT_HOOK_BATCH = 100
# At shutdown, a background loop still running this long after its cancel is cancelled again.
_RECANCEL_AFTER = 1.0
# Claims pause while more than this many ended jobs per slot await their outcome's write:
# claims can outrun the writes, and each such job keeps its lease (and would run again if
# this worker crashed).
_BACKLOG_PER_SLOT = 4
# Wake a little after a cron tick rather than a hair before it.
_TICK_SLACK = 0.002


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What one worker did so far: ``ended`` counts runs per written status.

    Example::

        worker.stats.ended["finished"], worker.stats.running
    """

    id: str
    concurrency: int
    running: int
    claimed: int
    ended: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0


class Worker:
    """Runs a processor's jobs (and cron ticks) until stopped; ``run_worker`` builds one.

    ``concurrency`` jobs run at once; ``tags`` (default: the processor's ``worker_tags``)
    pick which jobs it takes. ``burst=True`` makes :meth:`run` return once nothing is due
    and nothing runs. For tests, :meth:`run_once` and :meth:`drain` step the worker at an
    explicit ``now`` with no waiting.

    Example::

        worker = Worker(processor, concurrency=4)
        await worker.run()                      # until SIGTERM/SIGINT or cancelled

        async with Worker(processor) as worker:  # stepping, e.g. with a manual clock
            await worker.drain()
    """

    def __init__(
        self,
        processor: JobProcessor,
        *,
        concurrency: int = 8,
        tags: Sequence[str] | None = None,
        burst: bool = False,
        poll_interval: float = 1.0,
        handle_signals: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if tags is not None and not list(tags):
            raise ValueError("tags=[] would take no job: pass None to take every job")
        self._processor = processor
        self.concurrency = concurrency
        self.tags: tuple[str, ...] | None = (
            tuple(tags) if tags is not None else processor.worker_tags
        )
        self._burst = burst
        self._poll_interval = poll_interval
        self._handle_signals = handle_signals
        self._logger = processor.logger
        self.id = _new_worker_id()
        self._store: Store | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._stopping = False
        self._halted = False
        self._started = False
        self._closed = False
        self._registered = False
        self._last_beat = 0.0
        self._pinned_now: datetime | None = None
        self._claimed = 0
        self._jobs = RunningJobs(
            processor,
            concurrency,
            backlog=_BACKLOG_PER_SLOT * concurrency,
            worker_id=lambda: self.id,
            store=self._ready,
            now=self._now,
            on_slot_freed=self._on_slot_freed,
            logger=self._logger,
        )
        self._cron: CronScheduler | None = None
        self._cron_wake_at: datetime | None = None

    # -- public --------------------------------------------------------------------
    @property
    def stats(self) -> WorkerStats:
        """A frozen snapshot of this worker's counters."""
        return WorkerStats(
            id=self.id,
            concurrency=self.concurrency,
            running=len(self._jobs.active),
            claimed=self._claimed,
            ended=dict(self._jobs.ended),
            lost=self._jobs.lost,
        )

    def stop(self) -> None:
        """Ask for a graceful shutdown (what SIGTERM does); :meth:`run` then returns."""
        self._stopping = True
        self._notify()
        if self._slot_freed is not None:
            self._slot_freed.set()

    async def run(self) -> None:
        """Work until :meth:`stop`, SIGTERM/SIGINT (with ``handle_signals``), cancellation
        of the calling task, or — in burst mode — until nothing is due; then shut down
        gracefully (see ``docs/jobs.md``)."""
        cancelled = False
        await self.start()
        removers = self._install_signal_handlers() if self._handle_signals else []
        interval = self._processor.heartbeat_interval
        background = [
            asyncio.ensure_future(self._repeat(self._heartbeat_step, interval)),
            asyncio.ensure_future(self._repeat(self._maintenance_step, 0.0)),
        ]
        if self._cron is not None:
            background.append(asyncio.ensure_future(self._repeat(self._cron_step, 0.0)))
        try:
            await self._claim_loop()
        except asyncio.CancelledError:
            cancelled = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        try:
            await self._shutdown()
        finally:
            for remove in removers:
                remove()
            await self._halt(background)
            await self.close()
        if cancelled:
            raise asyncio.CancelledError

    async def run_once(self, *, now: datetime | None = None) -> int:
        """One stepping pass at ``now`` (default: the processor's clock): heartbeat,
        crash recovery, due exit hooks, due cron ticks, then claim what is due and run it
        to its end. Returns how many jobs it ran.

        Example::

            clock.advance(60)
            assert await worker.run_once() == 1
        """
        await self.start()
        self._pinned_now = now
        try:
            now = self._now()
            await self._heartbeat()
            await self._recover(now)
            await self._cron_pass(now)
            count = await self._claim(self.concurrency, now)
            await self._jobs.wait_all()
            return count
        finally:
            self._pinned_now = None

    async def drain(self, *, now: datetime | None = None) -> int:
        """:meth:`run_once` until a pass runs nothing; returns how many jobs ran."""
        total = 0
        while count := await self.run_once(now=now):
            total += count
        return total

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()
        await self.close()

    async def start(self) -> None:
        """Open the store, register this worker and reconcile crons (once; a closed
        worker cannot start again: make a new one)."""
        if self._closed:
            raise RuntimeError(f"worker {self.id} is closed: create a new Worker")
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._store = await self._processor._ready_store()
        await self._register()
        self._processor._attach(self)
        self._cron = self._processor._cron_scheduler_for(self)
        if self._cron is not None:
            await self._cron.reconcile(self._now())

    async def close(self) -> None:
        """Unregister and release threads; jobs must have ended (see :meth:`run`)."""
        if self._closed:
            return
        self._closed = True
        self._processor._detach(self)
        await self._jobs.close()
        if self._registered and self._store is not None and not self._jobs.active:
            with contextlib.suppress(Exception):
                await self._store.unregister_worker(self.id)
        self._registered = False

    def cancel_local(self, job_id: int) -> None:
        """Set the signal of a job this worker runs (``processor.cancel`` calls it)."""
        if self._loop is None:
            return
        try:
            running_here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            running_here = False
        if running_here:
            self._jobs.stop(job_id, "cancelled")
        else:
            self._loop.call_soon_threadsafe(self._jobs.stop, job_id, "cancelled")

    def notify(self) -> None:
        """Wake the claim loop (new work was enqueued in this process); thread-safe."""
        if self._loop is None:
            return
        try:
            same = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same = False
        if same:
            self._notify()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify)

    # -- claiming ------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        task = asyncio.current_task()
        while not self._stopping:
            if task is not None and task.cancelling():
                # A store call swallowed the cancellation (psycopg_pool's wait_for on
                # Python 3.11): it still counts.
                raise asyncio.CancelledError
            free = self._jobs.room()
            if free <= 0:
                await self._wait_for_slot()
                continue
            if not self._registered:  # lease lost: the heartbeat registers again
                await self._idle_wait()
                continue
            assert self._wake is not None
            self._wake.clear()
            count = await self._claim_safely(free)
            if count == free:
                continue  # more may be due: claim again as soon as slots free up
            if self._burst and count == 0 and not self._jobs.active:
                return
            await self._idle_wait()

    async def _wait_for_slot(self) -> None:
        assert self._slot_freed is not None
        self._slot_freed.clear()
        if self._jobs.room() <= 0 and not self._stopping:
            await self._slot_freed.wait()
        # Let the other jobs that end in this same loop pass free their slots too, so
        # that one claim takes many jobs instead of one.
        await asyncio.sleep(0)

    async def _claim_safely(self, free: int) -> int:
        try:
            return await self._claim(free, self._now())
        except Exception:
            self._logger.exception("worker %s: claiming jobs failed", self.id)
            await asyncio.sleep(self._poll_interval)
            return 0

    async def _claim(self, limit: int, now: datetime) -> int:
        store = self._ready()
        claimed = await store.claim(self.id, tags=self.tags, limit=limit, now=now)
        if self._stopping and claimed:
            await store.release(self.id, [(c.job.id, c.lease) for c in claimed])
            return 0
        for item in claimed:
            self._jobs.start(item)
        self._claimed += len(claimed)
        return len(claimed)

    async def _idle_wait(self) -> None:
        """Until new work may be due: an enqueue in this process, a commit by another
        process (``wait_for_work``), a burst worker's job ending, or the poll interval."""
        assert self._wake is not None
        assert self._slot_freed is not None
        if self._burst:
            self._slot_freed.clear()
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._ready().wait_for_work(self._poll_interval)),
        }
        if self._burst:
            waiters.add(asyncio.ensure_future(self._slot_freed.wait()))
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self._poll_interval, return_when="FIRST_COMPLETED"
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        for waiter in done:
            if not waiter.cancelled() and waiter.exception() is not None:
                self._logger.warning("worker %s: waiting for work failed: %r", self.id, waiter)

    # -- heartbeat, recovery, exit hooks ------------------------------------------
    async def _repeat(self, step: Callable[[], Awaitable[float]], delay: float) -> None:
        """A background loop: after ``delay``, ``step`` (which returns the next delay) until
        :meth:`_halt`. The flag is checked after each step because a store call can swallow
        the cancellation (psycopg_pool's ``wait_for`` on Python 3.11, when a connection is
        handed over just as it lands) and the loop must not go on after it."""
        while not self._halted:
            await asyncio.sleep(delay)
            delay = await step()

    async def _halt(self, tasks: Sequence[asyncio.Future[None]]) -> None:
        """Stop the background loops: set the flag, then cancel each until it is done (a
        swallowed cancellation ends the loop at its next check, or at the next cancel)."""
        self._halted = True
        pending = {task for task in tasks if not task.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                self._logger.error(
                    "worker %s: a background loop failed", self.id, exc_info=task.exception()
                )

    async def _heartbeat_step(self) -> float:
        await self._heartbeat()
        return self._processor.heartbeat_interval

    async def _heartbeat(self) -> None:
        store = self._ready()
        loop = asyncio.get_running_loop()
        if not self._registered:
            await self._try_register()
            return
        try:
            beat = await store.heartbeat(self.id, now=self._now(), running=list(self._jobs.active))
        except Exception:
            self._logger.exception("worker %s: heartbeat failed", self.id)
            if loop.time() - self._last_beat >= self._processor.lease_timeout:
                self._lose_lease()
            return
        if not beat.alive:
            self._lose_lease()
            await self._try_register()
            return
        self._last_beat = loop.time()
        for job_id in beat.cancel_ids:
            self._jobs.stop(job_id, "cancelled")

    def _lose_lease(self) -> None:
        self._logger.error(
            "worker %s lost its lease: stopping its %d running jobs, writing nothing for them",
            self.id,
            len(self._jobs.active),
        )
        self._registered = False
        self._jobs.stop_all("lease_lost", lost=True)

    async def _try_register(self) -> None:
        # The old id's row (if any) must expire on its own so that another worker recovers
        # the jobs it still owns; a fresh id keeps the two apart.
        self.id = _new_worker_id()
        try:
            await self._register()
        except Exception:
            self._logger.exception("worker %s: registering failed", self.id)

    async def _register(self) -> None:
        now = self._now()
        info = WorkerInfo(
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            tags=self.tags,
            concurrency=self.concurrency,
            lease_timeout=self._processor.lease_timeout,
            started_at=now,
            heartbeat_at=now,
        )
        await self._ready().register_worker(info)
        self._registered = True
        self._last_beat = asyncio.get_running_loop().time()
        self._notify()

    async def _maintenance_step(self) -> float:
        try:
            await self._recover(self._now())
        except Exception:
            self._logger.exception("worker %s: recovery pass failed", self.id)
        return self._processor.heartbeat_interval

    async def _cron_step(self) -> float:
        # Sleeps until the next tick (or a heartbeat interval, to notice a changed store).
        try:
            wake_at = await self._cron_pass(self._now())
        except Exception:
            self._logger.exception("worker %s: cron pass failed", self.id)
            wake_at = None
        return self._cron_wait(wake_at)

    def _cron_wait(self, wake_at: datetime | None) -> float:
        limit = self._processor.heartbeat_interval
        if wake_at is None:
            return limit
        return min(limit, max(0.0, (wake_at - self._now()).total_seconds()) + _TICK_SLACK)

    async def _recover(self, now: datetime) -> None:
        if not self._registered:
            return
        recovery = await self._ready().recover(now=now)
        if recovery.resumed:
            self._notify()
        if recovery.crashed or recovery.dead_workers:
            self._logger.warning(
                "worker %s recovered dead workers %s: %d jobs crashed, %d resumed",
                self.id,
                list(recovery.dead_workers),
                len(recovery.crashed),
                len(recovery.resumed),
            )
            self._processor._job_changed()
        await self._exit_hook_pass()

    async def _exit_hook_pass(self) -> None:
        names = self._processor._hook_names()
        if not names:
            return
        store = self._ready()
        while jobs := await store.claim_exit_hooks(self.id, names=names, limit=_EXIT_HOOK_BATCH):
            for job in jobs:
                await self._hook_for(job)
            await store.finish_exit_hooks(self.id, [job.id for job in jobs])
            if len(jobs) < _EXIT_HOOK_BATCH:
                return

    async def _hook_for(self, job: Job) -> None:
        definition = definition_for(job, self._processor.jobs, self._processor.cron_defs)
        hook = getattr(definition, "on_exit", None)
        if hook is not None:
            await self._jobs.run_hook(hook, job)

    async def _cron_pass(self, now: datetime) -> datetime | None:
        if self._cron is None or not self._registered or self._stopping:
            return None
        due = self._cron_wake_at is None or self._cron_wake_at <= now
        self._cron_wake_at = await self._cron.run_due(now)
        if due:
            self._notify()  # ticks were probably inserted: claim them now
        return self._cron_wake_at

    # -- shutdown ------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stopping = True
        self._jobs.stop_all("shutdown")
        # Each job bounds its own wait by the grace, then stops its handler.
        await self._jobs.wait_all()

    def _install_signal_handlers(self) -> list[Callable[[], None]]:
        loop = asyncio.get_running_loop()
        removers: list[Callable[[], None]] = []
        for sig in (signals.SIGTERM, signals.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signals on this platform
            removers.append(functools.partial(_remove_handler, loop, sig))
        return removers

    # -- helpers -------------------------------------------------------------------
    def _now(self) -> datetime:
        if self._pinned_now is not None:
            return self._pinned_now
        return self._processor._now(self._ready())

    def _ready(self) -> Store:
        assert self._store is not None, "the worker is not started"
        return self._store

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _on_slot_freed(self) -> None:
        if self._slot_freed is not None:
            self._slot_freed.set()


def _remove_handler(loop: asyncio.AbstractEventLoop, sig: int) -> None:
    loop.remove_signal_handler(sig)


def _new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
