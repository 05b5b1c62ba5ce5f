"""A small app the CLI and dashboard tests load as ``tests.cli.app_basic:processor``.

The store is the SQLite file named by ``BATCHWORK_TEST_DB`` (each test has its own).
Jobs are registered in the dict style so the module type-checks without decorators.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from batchwork.jobs import CronDef, Job, JobDef, JobProcessor, Signal


async def add(job: Job, signal: Signal) -> int:
    result: int = job.payload["a"] + job.payload["b"]
    return result


async def fail(job: Job, signal: Signal) -> None:
    try:
        int(job.payload or "not a number")
    except ValueError as exc:
        raise RuntimeError("could not parse the report") from exc


async def slow(job: Job, signal: Signal) -> dict[str, Any]:
    """Record which process ran it, then work until cancelled or done."""
    log = os.environ.get("BATCHWORK_TEST_LOG")
    if log:
        await asyncio.to_thread(_append, Path(log), f"{job.id} {os.getpid()}\n")
    for _ in range(int(job.payload.get("ticks", 10))):
        if signal.cancelled:
            return {"partial": True}
        await asyncio.sleep(0.1)
    return {"done": True}


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line)


async def nightly(signal: Signal) -> None:
    return None


def make_processor(url: str) -> JobProcessor:
    """The test app's processor on the store at ``url``."""
    return JobProcessor(
        url,
        jobs={"add": JobDef(add), "fail": JobDef(fail), "slow": JobDef(slow, resumable=True)},
        crons={"nightly": CronDef("0 3 * * *", nightly)},
        heartbeat_interval=0.2,
        lease_timeout=2.0,
        shutdown_grace=2.0,
    )


processor = make_processor(f"sqlite:///{os.environ.get('BATCHWORK_TEST_DB', 'batchwork-test.db')}")
not_a_processor = 42
