"""A small app the CLI tests load as ``tests.cli.app_basic:processor``.

The store is the SQLite file named by ``BATCHWORK_TEST_DB`` (each test has its own).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from batchwork.jobs import Job, JobProcessor, Signal

processor = JobProcessor(
    f"sqlite:///{os.environ.get('BATCHWORK_TEST_DB', 'batchwork-test.db')}",
    heartbeat_interval=0.2,
    lease_timeout=2.0,
    shutdown_grace=2.0,
)
not_a_processor = 42


@processor.job()
async def add(job: Job, signal: Signal) -> int:
    result: int = job.payload["a"] + job.payload["b"]
    return result


@processor.job()
async def fail(job: Job, signal: Signal) -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("could not parse the report") from exc


@processor.job(resumable=True)
async def slow(job: Job, signal: Signal) -> dict[str, Any]:
    """Record which process ran it, then work until cancelled or done."""
    log = os.environ.get("BATCHWORK_TEST_LOG")
    if log:
        with Path(log).open("a") as f:
            f.write(f"{job.id} {os.getpid()}\n")
    for _ in range(int(job.payload.get("ticks", 10))):
        if signal.cancelled:
            return {"partial": True}
        await asyncio.sleep(0.1)
    return {"done": True}


@processor.cron("0 3 * * *")
async def nightly(signal: Signal) -> None:
    return None
