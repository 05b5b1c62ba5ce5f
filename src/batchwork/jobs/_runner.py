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
from ._signal import Signal

# After a hard cancel, how long an async handler may take to unwind before it is abandoned
# (a handler that swallows CancelledError would otherwise hold the worker for ever).
_UNWIND_WAIT = 1.0

Definition = JobDef | CronDef


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


async def call_maybe_async(fn: Callable[[], Any], *, executor: Executor | None = None) -> Any:
    """Await ``fn()`` if it is async, else run it in ``executor`` (a thread) and await
    whatever awaitable it returns."""
    if is_async_callable(fn):
        return await fn()
    loop = asyncio.get_running_loop()
    # Threads do not inherit context variables by themselves; handlers may rely on them.
    result = await loop.run_in_executor(executor, contextvars.copy_context().run, fn)
    if inspect.isawaitable(result):
        result = await result
    return result


async def execute(
    call: Callable[[], Any],
    *,
    signal: Signal,
    max_runtime: float | None,
    grace: float,
    executor: Executor | None = None,
) -> RunReport:
    """Run one handler call under its signal and limits, and report how it ended.

    The call runs until it returns, the signal is set, or ``max_runtime`` passes (which
    sets the signal, reason ``"max_runtime"``). Once the signal is set the call has
    ``grace`` seconds to return; then an async handler is cancelled and a thread is
    abandoned (threads cannot be killed), and the report says ``STOPPED``.
    """
    task = asyncio.ensure_future(call_maybe_async(call, executor=executor))
    try:
        await _wait_done_or_signal(task, signal, max_runtime)
        if not task.done():
            signal.set("max_runtime")  # no-op when another reason came first
        reason = signal.reason
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_UNWIND_WAIT)
        _silence(task)
        return RunReport(RunEnd.STOPPED, reason=reason, max_runtime=max_runtime)
    return _report_from(task, reason, max_runtime)


async def _wait_done_or_signal(
    task: asyncio.Future[Any], signal: Signal, max_runtime: float | None
) -> None:
    if signal.cancelled:
        return
    waiter = asyncio.ensure_future(signal.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=max_runtime, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()


def _report_from(task: asyncio.Future[Any], reason: Any, max_runtime: float | None) -> RunReport:
    if task.cancelled():
        return RunReport(RunEnd.STOPPED, reason=reason, max_runtime=max_runtime)
    error = task.exception()
    if error is not None:
        return RunReport(RunEnd.RAISED, reason=reason, error=error, max_runtime=max_runtime)
    return RunReport(RunEnd.RETURNED, reason=reason, value=task.result(), max_runtime=max_runtime)


def _silence(task: asyncio.Future[Any]) -> None:
    # An abandoned task may still end later with an exception nobody reads; mark it read.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


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
