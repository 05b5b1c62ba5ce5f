"""Running one handler call: the signal, ``max_runtime``, the grace, threads for ``def``.

The runner reports what happened (:class:`RunReport`); :func:`._policy.decide` turns that
into a status. It is shared by the worker and by ``processor.run`` (inline runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from ._defs import CronDef, JobDef
from ._model import Job, JobStatus, JobType, Outcome, load_json
from ._policy import RunEnd, RunReport
from ._signal import Signal, SignalReason

# After a hard cancel, how long an async handler may take to unwind before it is abandoned
# (a handler that swallows CancelledError would otherwise hold the worker for ever).
_UNWIND_WAIT = 1.0

Definition = JobDef | CronDef

_RETURNED_NOTHING = RunReport(RunEnd.RETURNED)


def handler_call(job: Job, definition: Definition, signal: Signal) -> Callable[[], Any]:
    """The zero-argument call of a handler: ``(job, signal)`` for jobs, ``(signal)`` for
    cron ticks."""
    if isinstance(definition, CronDef):
        return functools.partial(definition.handler, signal)
    return functools.partial(definition.handler, job, signal)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine without running any of its code."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def call_maybe_async(
    fn: Callable[[], Any], *, executor: Executor | None = None, is_async: bool | None = None
) -> Any:
    """Await ``fn()`` if it is async (``is_async``: when known beforehand), else run it in
    ``executor`` (a thread) and await whatever awaitable it returns."""
    if is_async_callable(fn) if is_async is None else is_async:
        return await fn()
    loop = asyncio.get_running_loop()
    # Threads do not inherit context variables by themselves; handlers may rely on them.
    result = await loop.run_in_executor(executor, contextvars.copy_context().run, fn)
    if inspect.isawaitable(result):
        result = await result
    return result


class Execution:
    """One handler call under its signal, ``max_runtime`` and the grace.

    :meth:`run` runs the handler in the calling task. :meth:`stop` sets the signal and
    arms the grace timer; when it fires, the calling task is cancelled (an async handler
    gets ``CancelledError``; a thread cannot be killed, so it is abandoned and its late
    value discarded) and the report says ``STOPPED``. A handler that swallows the
    cancellation is given up on after a short wait: ``on_abandon`` gets the report while
    the task runs on, its end ignored. No task or timer is created unless needed.
    """

    __slots__ = (
        "_abandon_timer",
        "_call",
        "_executor",
        "_grace",
        "_grace_timer",
        "_hard_stopped",
        "_is_async",
        "_loop",
        "_on_abandon",
        "_runtime_timer",
        "_task",
        "max_runtime",
        "reported",
        "signal",
    )

    def __init__(
        self,
        call: Callable[[], Any],
        *,
        signal: Signal,
        max_runtime: float | None,
        grace: float,
        executor: Executor | None = None,
        on_abandon: Callable[[RunReport], None] | None = None,
        is_async: bool | None = None,
    ) -> None:
        self._call = call
        self._is_async = is_async
        self.signal = signal
        self.max_runtime = max_runtime
        self._grace = grace
        self._executor = executor
        self._on_abandon = on_abandon
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._runtime_timer: asyncio.TimerHandle | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._abandon_timer: asyncio.TimerHandle | None = None
        self._hard_stopped = False
        self.reported = False

    def stop(self, reason: SignalReason) -> None:
        """Set the signal (the first reason wins) and start the grace, once."""
        self.signal.set(reason)
        if self._loop is not None and self._grace_timer is None and not self.reported:
            self._grace_timer = self._loop.call_later(self._grace, self._hard_stop)

    async def run(self) -> RunReport:
        """Run the handler in the current task and report how it ended."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self.max_runtime is not None:
            self._runtime_timer = self._loop.call_later(self.max_runtime, self.stop, "max_runtime")
        if self.signal.cancelled:  # set before the run started (e.g. at shutdown)
            self._grace_timer = self._loop.call_later(self._grace, self._hard_stop)
        try:
            if self._is_async:  # the common case, without one more coroutine per run
                value = await self._call()
            else:
                value = await call_maybe_async(
                    self._call, executor=self._executor, is_async=self._is_async
                )
        except asyncio.CancelledError:
            if not self._hard_stopped:
                raise
            return self._report(RunEnd.STOPPED)
        except Exception as exc:
            return self._report(RunEnd.RAISED, error=exc)
        finally:
            self._cancel_timers()
            if self._hard_stopped:
                self._uncancel()
        if self._hard_stopped:  # it swallowed the cancellation and returned: still stopped
            return self._report(RunEnd.STOPPED)
        if value is None and self.signal.reason is None and self.max_runtime is None:
            self.reported = True
            return _RETURNED_NOTHING  # the common case, without building a report
        return self._report(RunEnd.RETURNED, value=value)

    def _report(self, end: RunEnd, *, value: Any = None, error: Any = None) -> RunReport:
        self.reported = True
        return RunReport(
            end, reason=self.signal.reason, value=value, error=error, max_runtime=self.max_runtime
        )

    def _hard_stop(self) -> None:
        if self.reported or self._task is None or self._loop is None:
            return
        self._hard_stopped = True
        self._task.cancel()
        if self._on_abandon is not None:
            self._abandon_timer = self._loop.call_later(_UNWIND_WAIT, self._abandon)

    def _abandon(self) -> None:
        if self.reported or self._on_abandon is None:
            return
        self.reported = True
        self._on_abandon(
            RunReport(RunEnd.STOPPED, reason=self.signal.reason, max_runtime=self.max_runtime)
        )

    def _uncancel(self) -> None:
        if self._task is not None and self._task.cancelling():
            self._task.uncancel()

    def _cancel_timers(self) -> None:
        if self._runtime_timer is not None:
            self._runtime_timer.cancel()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._abandon_timer is not None:
            self._abandon_timer.cancel()


async def run_exit_hook(
    hook: Callable[[Job], Awaitable[None] | None],
    job: Job,
    logger: logging.Logger,
    *,
    executor: Executor | None = None,
) -> None:
    """Call ``on_exit(job)``; an error is logged with the job id and goes no further."""
    try:
        await call_maybe_async(functools.partial(hook, job), executor=executor)
    except Exception:
        logger.exception("on_exit hook of job %s (%s) failed", job.id, job.name)


def ended_record(job: Job, outcome: Outcome) -> Job:
    """The record as the store holds it after ``outcome`` was written (no read needed)."""
    ended = outcome.status not in (JobStatus.PENDING, JobStatus.PAUSED)
    return replace(
        job,
        status=outcome.status,
        result=load_json(outcome.result_json),
        error=outcome.error if outcome.error is not None else job.error,
        worker_id=None,
        ended_at=outcome.ended_at if ended else None,
        updated_at=outcome.ended_at,
        duration=outcome.duration,
        scheduled_for=outcome.retry_at or job.scheduled_for,
    )


def definition_for(
    job: Job, jobs: dict[str, JobDef], crons: dict[str, CronDef]
) -> Definition | None:
    """The handler definition for a record: crons for cron ticks, jobs otherwise."""
    if job.type == JobType.CRON_TASK:
        return crons.get(job.name)
    return jobs.get(job.name)
