"""A JobProcessor for worker subprocesses in the process tests.

Configured by environment variables: ``BW_TEST_STORE`` (store URL), ``BW_TEST_OUT`` (a file
the handlers append lines to), ``BW_TEST_HEARTBEAT``, ``BW_TEST_LEASE``, ``BW_TEST_GRACE``.
Run a worker with ``python -m tests.jobs.apps.worker_app [CONCURRENCY]``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from batchwork.jobs import Job, JobProcessor, Signal

processor = JobProcessor(
    os.environ.get("BW_TEST_STORE", "sqlite:///worker_app.db"),
    heartbeat_interval=float(os.environ.get("BW_TEST_HEARTBEAT", "0.5")),
    lease_timeout=float(os.environ.get("BW_TEST_LEASE", "2.0")),
    shutdown_grace=float(os.environ.get("BW_TEST_GRACE", "1.0")),
)


def _append(line: str) -> None:
    # One short O_APPEND write per line: lines from concurrent processes never interleave.
    with open(os.environ["BW_TEST_OUT"], "a", encoding="utf-8") as out:
        out.write(line + "\n")


@processor.job()
async def record(job: Job, signal: Signal) -> None:
    """Append the job id: the exactly-once test counts the lines."""
    _append(str(job.id))


@processor.job(resumable=True, max_crashes=1)
async def resumable_wait(job: Job, signal: Signal) -> str:
    """Run until signalled (a resumable job that a crash or shutdown interrupts)."""
    _append(f"start {job.id} {job.attempts}")
    return f"stopped: {await signal.wait()}"


@processor.job()
async def stubborn(job: Job, signal: Signal) -> None:
    """Ignore the signal: only a hard stop or a crash ends it."""
    _append(f"start {job.id}")
    await asyncio.sleep(3600)


@stubborn.on_exit
def stubborn_exit(job: Job) -> None:
    _append(f"exit {job.id} {job.status}")


@processor.job()
async def polite(job: Job, signal: Signal) -> str:
    """Return as soon as the signal is set, saying why."""
    _append(f"start {job.id}")
    return f"stopped: {await signal.wait()}"


if __name__ == "__main__":
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    asyncio.run(processor.run_worker(concurrency=concurrency))
