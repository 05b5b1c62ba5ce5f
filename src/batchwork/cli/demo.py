"""The demo's job app, importable as ``batchwork.cli.demo:processor``.

``batchwork demo`` runs its workers on it, and the dashboard opens it afterwards::

    batchwork dashboard batchwork.cli.demo:processor

The database is ``$BATCHWORK_DEMO_DB`` (default ``./batchwork-demo.db``). Leases are
short so the demo shows crash recovery in seconds rather than the default 30 s.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

from batchwork.jobs import CronDef, Job, JobDef, JobProcessor, Signal

DB_ENV = "BATCHWORK_DEMO_DB"


def demo_db() -> Path:
    """The demo database: ``$BATCHWORK_DEMO_DB`` or ``./batchwork-demo.db``."""
    return Path(os.environ.get(DB_ENV) or "batchwork-demo.db").resolve()


async def index_source(job: Job, signal: Signal) -> dict[str, Any]:
    """Index one shard of a source's records: resumable, so a crash re-runs it."""
    steps = int(job.payload.get("steps", 6))
    for _ in range(steps):
        if signal.cancelled:
            return {"partial": True}
        await asyncio.sleep(0.12)
    return {"source": job.payload["source"], "shard": job.payload["shard"], "indexed": steps * 50}


async def send_report(job: Job, signal: Signal) -> dict[str, Any]:
    """Mail a summary; the ``flaky`` recipient always fails, to show an error traceback."""
    await asyncio.sleep(0.05)
    if job.payload.get("to") == "flaky@example.org":
        try:
            raise ConnectionRefusedError("smtp.example.org:25 refused the connection")
        except ConnectionRefusedError as exc:
            raise RuntimeError(f"could not mail the report to {job.payload['to']}") from exc
    return {"sent_to": job.payload["to"]}


def _count_records() -> int:
    db = sqlite3.connect(demo_db(), timeout=30)
    try:
        (count,) = db.execute("SELECT count(*) FROM demo_records").fetchone()
        return int(count)
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


async def refresh_stats(signal: Signal) -> int:
    """The demo's cron, every 2 seconds: recount the warehouse."""
    return await asyncio.to_thread(_count_records)


def make_processor(path: Path) -> JobProcessor:
    """The demo's processor on the database at ``path``."""
    return JobProcessor(
        f"sqlite:///{path}",
        jobs={
            "index_source": JobDef(index_source, resumable=True),
            "send_report": JobDef(send_report, retries=1, backoff=0.2),
        },
        crons={"refresh_stats": CronDef("*/2 * * * * *", refresh_stats, checkin_margin=5)},
        heartbeat_interval=0.25,
        lease_timeout=1.5,
        shutdown_grace=3.0,
    )


processor = make_processor(demo_db())
