"""``processor.run``: one job run in the calling process, recorded like any other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._model import Claimed, Job, JobStatus, Outcome, WorkerInfo
from ._policy import decide
from ._runner import Execution, ended_record, handler_call, run_exit_hook
from ._signal import Signal

if TYPE_CHECKING:
    from ._defs import JobDef
    from ._processor import JobProcessor
    from ._store import Store


async def run_inline(processor: JobProcessor, name: str, payload: Any) -> Job:
    """Store the job, take it under a short-lived inline worker, run it (retries
    included), write the outcome, call ``on_exit``, and return the ended record."""
    definition = processor.jobs.get(name)
    if definition is None:
        raise LookupError(f"processor.run({name!r}): no handler is registered for this job")
    store = await processor._ready_store()
    now = processor._now(store)
    new = processor._new_job(name, payload, None, 0, None, None, now)
    worker_id = f"inline:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    await store.register_worker(_inline_worker(worker_id, processor, now))
    beat = asyncio.ensure_future(_heartbeat(processor, store, worker_id))
    try:
        [job_id] = await store.enqueue([new], now=now)
        assert job_id is not None
        return await _run_attempts(processor, store, worker_id, job_id, definition)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(Exception):
            await asyncio.shield(store.unregister_worker(worker_id))


async def _run_attempts(
    processor: JobProcessor, store: Store, worker_id: str, job_id: int, definition: JobDef
) -> Job:
    while True:
        claimed = await store.claim_job(worker_id, job_id, now=processor._now(store))
        if claimed is None:  # skipped as exclusive, or another worker has it
            return await store.get(job_id)
        outcome = await _run_one(processor, store, worker_id, claimed, definition)
        if outcome.status != JobStatus.PENDING:
            break
        assert outcome.retry_at is not None
        delay = (outcome.retry_at - processor._now(store)).total_seconds()
        await asyncio.sleep(max(0.0, delay))
    if outcome.run_exit_hook and definition.on_exit is not None:
        await run_exit_hook(
            definition.on_exit, ended_record(claimed.job, outcome), processor.logger
        )
        await store.finish_exit_hooks(worker_id, [job_id])
    return await store.get(job_id)


async def _run_one(
    processor: JobProcessor,
    store: Store,
    worker_id: str,
    claimed: Claimed,
    definition: JobDef,
) -> Outcome:
    job = claimed.job
    signal = Signal()
    execution = Execution(
        handler_call(job, definition, signal),
        signal=signal,
        max_runtime=_seconds(definition.max_runtime),
        grace=processor.shutdown_grace,
    )
    processor._inline_runs[job.id] = execution
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        report = await execution.run()
    except asyncio.CancelledError:
        duration = loop.time() - started
        await asyncio.shield(_interrupted(processor, store, worker_id, claimed, duration))
        raise
    finally:
        processor._inline_runs.pop(job.id, None)
    now = processor._now(store)
    decision = decide(
        report,
        resumable=definition.resumable,
        attempts=job.attempts,
        retries=definition.retries,
        backoff=_seconds(definition.backoff) or 0.0,
        now=now,
    )
    status = JobStatus(decision.status)
    outcome = Outcome(
        job_id=job.id,
        lease=claimed.lease,
        status=status,
        ended_at=now,
        duration=loop.time() - started,
        result_json=decision.result_json,
        error=decision.error,
        retry_at=decision.retry_at,
        run_exit_hook=definition.on_exit is not None and status.ended,
    )
    await store.complete(worker_id, [outcome])
    processor._job_changed()
    return outcome


async def _interrupted(
    processor: JobProcessor, store: Store, worker_id: str, claimed: Claimed, duration: float
) -> None:
    # The caller gave up on the run: end the record rather than leave it running under a
    # worker row that is about to disappear.
    outcome = Outcome(
        job_id=claimed.job.id,
        lease=claimed.lease,
        status=JobStatus.ERRORED,
        ended_at=processor._now(store),
        duration=duration,
        error="interrupted: the caller of processor.run() was cancelled",
    )
    await store.complete(worker_id, [outcome])


async def _heartbeat(processor: JobProcessor, store: Store, worker_id: str) -> None:
    while True:
        await asyncio.sleep(processor.heartbeat_interval)
        try:
            running = list(processor._inline_runs)
            beat = await store.heartbeat(worker_id, now=processor._now(store), running=running)
        except Exception:
            processor.logger.exception("inline worker %s: heartbeat failed", worker_id)
            continue
        for job_id in beat.cancel_ids:
            execution = processor._inline_runs.get(job_id)
            if execution is not None:
                execution.stop("cancelled")


def _inline_worker(worker_id: str, processor: JobProcessor, now: datetime) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        tags=(),
        concurrency=0,
        lease_timeout=processor.lease_timeout,
        started_at=now,
        heartbeat_at=now,
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
