"""The jobs one worker runs: start each claimed job, stop it, write its end, run its hook.

Outcomes are group-committed with the library's own :class:`batchwork.Batcher`: every
outcome ready while a ``complete`` transaction is in flight goes out in the next one, so a
busy worker writes hundreds of ends per transaction and an idle one writes each at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchwork._batcher import Batcher

from ._model import Claimed, Outcome
from ._policy import RunEnd, RunReport, decide, unknown_job_error
from ._runner import (
    Definition,
    Execution,
    definition_for,
    ended_record,
    handler_call,
    is_async_callable,
    run_exit_hook,
)
from ._signal import Signal, SignalReason

if TYPE_CHECKING:
    from ._processor import JobProcessor
    from ._store import Store

_WRITE_RETRY_WAIT = 0.5
_MAX_BATCH = 1000


@dataclass(slots=True, eq=False)
class _Active:
    claimed: Claimed
    definition: Definition | None
    execution: Execution | None
    started: float
    task: asyncio.Task[None] | None = None
    lost: bool = False
    ended: bool = False


@dataclass(slots=True)
class RunningJobs:
    """Runs claimed jobs for one worker (see the module docstring).

    ``worker_id``, ``store`` and ``now`` are read through callables because a worker that
    lost its lease re-registers under a new id. ``backlog``: how many ended jobs may await
    their outcome's write (or exit hook) before :meth:`room` says claim nothing: they keep
    their leases, and a crash of this worker would run them again.
    """

    processor: JobProcessor
    concurrency: int
    backlog: int
    worker_id: Callable[[], str]
    store: Callable[[], Store]
    now: Callable[[], datetime]
    on_slot_freed: Callable[[], None]
    logger: logging.Logger
    active: dict[int, _Active] = field(default_factory=dict)
    busy: int = 0
    lost: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    _executor: ThreadPoolExecutor | None = None
    _hook_executor: ThreadPoolExecutor | None = None
    _completions: Batcher[Outcome, bool] | None = None
    _hooks_done: Batcher[int, None] | None = None
    _finishers: set[asyncio.Task[None]] = field(default_factory=set)
    _idle: asyncio.Event | None = None
    _is_async: dict[Any, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="batchwork-job")
        self._hook_executor = ThreadPoolExecutor(2, thread_name_prefix="batchwork-exit")
        self._completions = Batcher(
            self._write_outcomes,
            max_size=_MAX_BATCH,
            max_wait=0,
            id_of=_outcome_id,
            name="batchwork-job-outcomes",
        )
        self._hooks_done = Batcher(
            self._finish_hooks, max_size=_MAX_BATCH, max_wait=0, id_of=int, name="exit-hooks"
        )

    # -- control -------------------------------------------------------------------
    def room(self) -> int:
        """How many jobs to claim now: the free slots, none while too many outcomes are
        unwritten; ``on_slot_freed`` is called when this may have grown from 0."""
        if len(self.active) - self.busy > self.backlog:
            return 0
        return self.concurrency - self.busy

    def start(self, claimed: Claimed) -> None:
        """Start one claimed job now (a claim is a start)."""
        job = claimed.job
        definition = definition_for(job, self.processor.jobs, self.processor.cron_defs)
        loop = asyncio.get_running_loop()
        active = _Active(claimed, definition, None, loop.time())
        if definition is not None:
            signal = Signal()
            active.execution = Execution(
                handler_call(job, definition, signal),
                signal=signal,
                max_runtime=_seconds(definition.max_runtime),
                grace=self.processor.shutdown_grace,
                executor=self._executor,
                on_abandon=functools.partial(self._abandoned, active),
                is_async=self._handler_is_async(definition.handler),
            )
        self.active[job.id] = active
        self.busy += 1
        active.task = loop.create_task(self._run(active))

    def _handler_is_async(self, handler: Any) -> bool:
        try:
            known = self._is_async.get(handler)
        except TypeError:  # an unhashable callable object: no caching
            return is_async_callable(handler)
        if known is None:
            known = self._is_async[handler] = is_async_callable(handler)
        return known

    def stop(self, job_id: int, reason: SignalReason) -> None:
        """Signal one running job (no-op for a job this worker does not run)."""
        active = self.active.get(job_id)
        if active is not None and active.execution is not None:
            active.execution.stop(reason)

    def stop_all(self, reason: SignalReason, *, lost: bool = False) -> None:
        """Signal every running job; ``lost``: their outcomes must not be written."""
        for active in list(self.active.values()):
            active.lost = active.lost or lost
            if active.execution is not None:
                active.execution.stop(reason)

    async def wait_all(self) -> None:
        """Wait until every started job has ended (written, hook run)."""
        if self._idle is None:
            self._idle = asyncio.Event()
        while self.active:
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        """Flush pending writes, then release the threads (stuck handler threads are
        left to finish on their own: a thread cannot be killed)."""
        for batcher in (self._completions, self._hooks_done):
            if batcher is not None:
                await batcher.close()
        for executor in (self._executor, self._hook_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    # -- one job -------------------------------------------------------------------
    async def _run(self, active: _Active) -> None:
        try:
            if active.execution is None:
                known = [*self.processor.jobs, *self.processor.cron_defs]
                name = active.claimed.job.name
                report = RunReport(RunEnd.NO_HANDLER, value=unknown_job_error(name, known))
            else:
                report = await active.execution.run()
        except Exception:
            self.logger.exception("job %s: the worker failed to end it", active.claimed.job.id)
            return
        if not active.ended:  # else it was abandoned and already ended
            self._end(active, report)

    def _abandoned(self, active: _Active, report: RunReport) -> None:
        self.logger.error(
            "job %s (%s) ignored cancellation: its task is abandoned",
            active.claimed.job.id,
            active.claimed.job.name,
        )
        self._end(active, report)

    def _end(self, active: _Active, report: RunReport) -> None:
        """Free the slot and hand the outcome to the group writer; the job stays active
        (its lease renewed) until the write is answered (see :meth:`_written`)."""
        active.ended = True
        self.busy -= 1
        if len(self.active) - self.busy <= self.backlog:
            self.on_slot_freed()
        try:
            outcome = self._outcome(active, report)
            if outcome is None:
                self.lost += 1
                self._done(active)
                return
            assert self._completions is not None
            self._completions.put(outcome, callback=self._written)
        except Exception:
            self.logger.exception("job %s: the worker failed to end it", active.claimed.job.id)
            self._done(active)

    def _outcome(self, active: _Active, report: RunReport) -> Outcome | None:
        """What to write for a run (``None``: nothing, the lease was lost)."""
        job = active.claimed.job
        definition = active.definition
        now = self.now()
        decision = decide(
            report,
            # The handler's own definition wins: a producer that did not register the job
            # recorded it with default options.
            resumable=getattr(definition, "resumable", job.resumable),
            attempts=job.attempts,
            retries=getattr(definition, "retries", 0),
            backoff=_seconds(getattr(definition, "backoff", 1.0)) or 0.0,
            now=now,
        )
        if active.lost or not decision.write:
            return None
        duration = asyncio.get_running_loop().time() - active.started
        status = decision.status
        # Without a definition here, another worker may know a hook: leave it due.
        has_hook = definition is None or getattr(definition, "on_exit", None) is not None
        return Outcome(
            job_id=job.id,
            lease=active.claimed.lease,
            status=status,
            ended_at=now,
            duration=duration,
            result_json=decision.result_json,
            error=decision.error,
            retry_at=decision.retry_at,
            run_exit_hook=definition is not None and has_hook and status.ended,
            has_exit_hook=has_hook,
        )

    def _written(self, outcome: Outcome, result: bool | BaseException) -> None:
        """The group writer's answer for one outcome (a callback: no task waits on it)."""
        active = self.active.get(outcome.job_id)
        if active is None or active.claimed.lease != outcome.lease:
            # Recovered meanwhile and taken again by this worker: the entry is the new
            # run's, and this run's outcome was fenced.
            self._count(outcome, result is True)
            return
        if isinstance(result, asyncio.CancelledError):  # the loop is going away
            self._done(active)
            return
        if isinstance(result, BaseException):
            # Rare (the store failed): retry, up to a lease timeout, in a task.
            self._spawn(self._write_again(active, outcome, result))
            return
        self._count(outcome, result)
        if result and outcome.run_exit_hook:
            self._spawn(self._exit_hook(active, outcome))
        else:
            self._done(active)

    def _count(self, outcome: Outcome, written: bool) -> None:
        if written:
            self.ended[outcome.status] += 1
        else:
            self.lost += 1  # fenced: the job was recovered or cancelled meanwhile

    async def _write_again(self, active: _Active, outcome: Outcome, error: BaseException) -> None:
        try:
            written = await self._write(outcome, error)
            if written and outcome.run_exit_hook:
                await self._run_exit_hook(active, outcome)
        finally:
            self._done(active)

    async def _write(self, outcome: Outcome, error: BaseException) -> bool:
        assert self._completions is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.processor.lease_timeout
        while True:
            if loop.time() >= deadline:
                self.logger.error(
                    "outcome of job %s could not be written", outcome.job_id, exc_info=error
                )
                return False
            await asyncio.sleep(_WRITE_RETRY_WAIT)
            try:
                written = await self._completions.submit(outcome)
            except Exception as exc:
                error = exc
                continue
            self._count(outcome, written)
            return written

    async def _exit_hook(self, active: _Active, outcome: Outcome) -> None:
        try:
            await self._run_exit_hook(active, outcome)
        finally:
            self._done(active)

    async def _run_exit_hook(self, active: _Active, outcome: Outcome) -> None:
        hook = getattr(active.definition, "on_exit", None)
        assert hook is not None
        job = active.claimed.job
        await run_exit_hook(
            hook, ended_record(job, outcome), self.logger, executor=self._hook_executor
        )
        assert self._hooks_done is not None
        await self._hooks_done.submit(job.id)

    def _done(self, active: _Active) -> None:
        # Breaks the cycle active -> execution -> abandon callback -> active, so a job's
        # objects are freed now rather than by the cyclic GC, whose passes over hundreds
        # of thousands of them cost a busy worker a good part of its time.
        active.execution = None
        job_id = active.claimed.job.id
        if self.active.get(job_id) is active:  # not a later run of the same job
            del self.active[job_id]
        self.processor._job_changed()
        if not self.active:
            self.on_slot_freed()  # a burst worker may now see that all is done
            if self._idle is not None:
                self._idle.set()
        elif self.busy < self.concurrency and len(self.active) - self.busy == self.backlog:
            self.on_slot_freed()  # the backlog of unwritten outcomes no longer stops claims

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._finishers.add(task)
        task.add_done_callback(self._finishers.discard)

    async def _write_outcomes(self, outcomes: list[Outcome]) -> dict[int, bool]:
        written = await self.store().complete(self.worker_id(), outcomes)
        return {outcome.job_id: outcome.job_id in written for outcome in outcomes}

    async def _finish_hooks(self, job_ids: list[int]) -> dict[int, None]:
        await self.store().finish_exit_hooks(self.worker_id(), job_ids)
        return dict.fromkeys(job_ids)

    async def run_hook(self, hook: Any, job: Any) -> None:
        """Run an exit hook on this worker's hook threads (for recovered jobs too)."""
        await run_exit_hook(hook, job, self.logger, executor=self._hook_executor)


def _outcome_id(outcome: Outcome) -> int:
    return outcome.job_id


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
