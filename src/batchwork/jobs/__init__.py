"""Durable background jobs and crons on SQLite (embedded default) or PostgreSQL.

Example::

    from batchwork.jobs import Job, JobProcessor, Signal

    processor = JobProcessor("sqlite:///batchwork.db")

    @processor.job(retries=3)
    async def send_mail(job: Job, signal: Signal) -> None: ...

    await send_mail.enqueue({"to": "a@example.org"})
    await processor.run_worker(concurrency=8)
"""

from __future__ import annotations

from ._defs import CronDef as CronDef
from ._defs import JobDef as JobDef
from ._model import Job as Job
from ._model import JobStatus as JobStatus
from ._processor import JobProcessor as JobProcessor
from ._signal import Signal as Signal
from ._worker import Worker as Worker

__all__ = ["CronDef", "Job", "JobDef", "JobProcessor", "JobStatus", "Signal", "Worker"]
