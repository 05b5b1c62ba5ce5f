"""``batchwork demo``: the three parts of batchwork on one small ingestion pipeline.

1. A :class:`~batchwork.TaskRunner` fetches and parses simulated sources (parse needs
   fetch; a failing source falls back to an empty parse) while a
   :class:`~batchwork.Batcher` writes their records to SQLite in batches.
2. Durable jobs index each source: two supervised worker processes drain them, a cron
   ticks every two seconds, one worker is SIGKILLed mid-way and its jobs are recovered.
3. A summary, and the command that opens the dashboard on the same database.

Only the standard library, ``rich`` and the jobs part are used (no dashboard extra), and
everything lives in one SQLite file (``./batchwork-demo.db`` unless ``--db`` says
otherwise). Off a terminal the output is plain lines.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchwork import Batcher, BatchInfo, TaskRunner

if TYPE_CHECKING:
    from rich.console import Console

SOURCES = [
    "orders-eu", "orders-us", "orders-apac", "clicks-web", "clicks-app", "payments",
    "refunds", "inventory", "catalog", "reviews", "support-tickets", "shipments",
    "legacy-ftp", "partners", "ads-spend", "newsletter",
]  # fmt: skip
FAILING_SOURCE = "legacy-ftp"


@dataclass
class PipelineResult:
    """What the ingestion phase did, for the summary."""

    sources: int = 0
    failed_sources: list[str] = field(default_factory=list)
    records: int = 0
    seconds: float = 0.0
    batches: int = 0
    mean_batch: float = 0.0
    max_batch: int = 0
    wait_p99: float = 0.0
    per_source: dict[str, int] = field(default_factory=dict)


class RecordSink:
    """The demo's "warehouse": one SQLite table, written one batch per transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS demo_records "
                "(id INTEGER PRIMARY KEY, source TEXT, seq INTEGER, amount REAL)"
            )

    def write(self, records: list[tuple[str, int, float]]) -> list[bool]:
        """The Batcher's batch function: one insert for the whole batch."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                db.executemany(
                    "INSERT INTO demo_records (source, seq, amount) VALUES (?, ?, ?)", records
                )
        finally:
            db.close()
        time.sleep(0.004)  # a sink's fixed cost per call is what makes batching pay
        return [True] * len(records)


async def fetch(source: str, rng: random.Random) -> bytes:
    """Pretend to download a source's export."""
    await asyncio.sleep(rng.uniform(0.05, 0.35))
    if source == FAILING_SOURCE:
        raise ConnectionError(f"{source}: connection reset by peer")
    return f"{source}:{rng.randint(150, 450)}".encode()


async def parse_and_store(
    raw: bytes, source: str, batcher: Batcher[tuple[str, int, float], bool]
) -> int:
    """Parse one export into records and hand them to the batcher; returns the count."""
    count = int(raw.decode().rsplit(":", 1)[1])
    records = [(source, i, round(i * 1.37 % 100, 2)) for i in range(count)]
    written = 0
    for start in range(0, count, 40):  # records trickle in, as a streaming parser's would
        chunk = records[start : start + 40]
        oks = await batcher.submit_many(chunk)
        written += sum(1 for ok in oks if ok)
        await asyncio.sleep(0.01)
    return written


async def run_pipeline(sink: RecordSink, out: Console, *, seed: int = 7) -> PipelineResult:
    """Phase 1: task graph with a progress bar feeding a batcher."""
    rng = random.Random(seed)
    sizes: list[int] = []

    def on_batch(info: BatchInfo) -> None:
        sizes.append(info.size)

    started = time.perf_counter()
    async with Batcher(sink.write, max_size=250, max_wait=0.05, on_batch=on_batch) as batcher:
        runner = TaskRunner(concurrency=6, progress_bar=True)
        parses = []
        for source in SOURCES:
            raw = runner.push(fetch, source, rng, name=f"fetch {source}")
            parses.append(
                runner.push(
                    parse_and_store,
                    source,
                    batcher,
                    needs=[raw],
                    on_needs_failed=lambda exc: 0,  # nothing parsed, run goes on
                    name=f"parse {source}",
                )
            )
        handles = await runner.start(return_exceptions=True)
        del handles
    stats = batcher.stats
    result = PipelineResult(
        sources=len(SOURCES),
        seconds=time.perf_counter() - started,
        batches=stats.batches,
        mean_batch=stats.mean_size,
        max_batch=max(sizes, default=0),
        wait_p99=stats.wait_p99,
    )
    for source, handle in zip(SOURCES, parses, strict=True):
        result.per_source[source] = handle.result()
        if source == FAILING_SOURCE:
            result.failed_sources.append(source)
    result.records = sum(result.per_source.values())
    rate = result.records / result.seconds if result.seconds else 0.0
    out.print(
        f"ingested {result.records:,} records from {result.sources} sources in "
        f"{result.seconds:.1f}s ({rate:,.0f} records/s) as {result.batches} batches "
        f"(mean {result.mean_batch:.0f}, largest {result.max_batch}); "
        f"{FAILING_SOURCE} failed and fell back to an empty parse"
    )
    return result


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def default_db() -> Path:
    """Where the demo keeps its database unless told: ``./batchwork-demo.db``."""
    return Path.cwd() / "batchwork-demo.db"


def fresh_db(path: Path) -> None:
    """Remove a previous run's database (and its WAL files) so every run starts clean."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def run_demo(*, db: str | None = None, seconds: float = 4.0) -> int:
    """Run the demo; returns the exit status (0 when every phase did what it shows).

    Example::

        run_demo(db="/tmp/demo.db")
    """
    path = Path(db).resolve() if db else default_db()
    out = _console()
    fresh_db(path)
    out.rule("batchwork demo")
    out.print(f"database: {path}")
    out.print("[1/3] ingestion: a TaskRunner fetches and parses; a Batcher writes records")
    sink = RecordSink(path)
    asyncio.run(run_pipeline(sink, out))
    return 0
