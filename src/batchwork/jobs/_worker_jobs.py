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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchwork._batcher import Batcher

from ._model import Claimed, JobStatus, Outcome
from ._policy import Decision, RunEnd, RunReport, decide, unknown_job_error
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
    lost its lease re-registers under a new id.
    """

    processor: JobProcessor
    concurrency: int
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
            if not active.ended:  # else it was abandoned and already ended
                await self._end(active, report)
        except Exception:
            self.logger.exception("job %s: the worker failed to end it", active.claimed.job.id)

    def _abandoned(self, active: _Active, report: RunReport) -> None:
        self.logger.error(
            "job %s (%s) ignored cancellation: its task is abandoned",
            active.claimed.job.id,
            active.claimed.job.name,
        )
        finisher = asyncio.ensure_future(self._end(active, report))
        self._finishers.add(finisher)
        finisher.add_done_callback(self._finishers.discard)

    async def _end(self, active: _Active, report: RunReport) -> None:
        active.ended = True
        self.busy -= 1
        self.on_slot_freed()
        loop = asyncio.get_running_loop()
        try:
            await self._finish(active, report, loop.time() - active.started)
        finally:
            self.active.pop(active.claimed.job.id, None)
            self.processor._job_changed()
            if not self.active:
                self.on_slot_freed()  # a burst worker may now see that all is done
                if self._idle is not None:
                    self._idle.set()

    async def _finish(self, active: _Active, report: RunReport, duration: float) -> None:
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
            self.lost += 1
            return
        hook = getattr(definition, "on_exit", None)
        outcome = _outcome(active.claimed, decision, now, duration, hook is not None)
        if await self._write(outcome) and hook is not None and outcome.run_exit_hook:
            await run_exit_hook(
                hook, ended_record(job, outcome), self.logger, executor=self._hook_executor
            )
            assert self._hooks_done is not None
            await self._hooks_done.submit(job.id)

    async def _write(self, outcome: Outcome) -> bool:
        assert self._completions is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.processor.lease_timeout
        while True:
            try:
                written = await self._completions.submit(outcome)
            except Exception:
                if loop.time() >= deadline:
                    self.logger.exception("outcome of job %s could not be written", outcome.job_id)
                    return False
                await asyncio.sleep(_WRITE_RETRY_WAIT)
                continue
            if written:
                self.ended[outcome.status] += 1
            else:
                self.lost += 1  # fenced: the job was recovered or cancelled meanwhile
            return written

    async def _write_outcomes(self, outcomes: list[Outcome]) -> dict[int, bool]:
        written = await self.store().complete(self.worker_id(), outcomes)
        return {outcome.job_id: outcome.job_id in written for outcome in outcomes}

    async def _finish_hooks(self, job_ids: list[int]) -> dict[int, None]:
        await self.store().finish_exit_hooks(self.worker_id(), job_ids)
        return dict.fromkeys(job_ids)

    async def run_hook(self, hook: Any, job: Any) -> None:
        """Run an exit hook on this worker's hook threads (for recovered jobs too)."""
        await run_exit_hook(hook, job, self.logger, executor=self._hook_executor)


def _outcome(
    claimed: Claimed, decision: Decision, now: datetime, duration: float, has_hook: bool
) -> Outcome:
    status = JobStatus(decision.status)
    return Outcome(
        job_id=claimed.job.id,
        lease=claimed.lease,
        status=status,
        ended_at=now,
        duration=duration,
        result_json=decision.result_json,
        error=decision.error,
        retry_at=decision.retry_at,
        run_exit_hook=has_hook and status.ended,
    )


def _outcome_id(outcome: Outcome) -> int:
    return outcome.job_id


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
