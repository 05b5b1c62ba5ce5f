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
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchwork import Batcher, BatchInfo, TaskRunner
from batchwork.jobs._supervisor import ChildEvent, Supervisor

from ._app import UsageError
from .demo import DB_ENV, make_processor

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from batchwork.jobs import JobProcessor

CRON = "refresh_stats"
JOB_NAMES = ("index_source", "send_report")
DEADLINE = 60.0

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
        fetches, parses = [], []
        for source in SOURCES:
            raw = runner.push(fetch, source, rng, name=f"fetch {source}")
            fetches.append(raw)
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
        # A failed fetch is part of the story (its fallback stands in): keep going.
        await runner.start(return_exceptions=True)
    stats = batcher.stats
    result = PipelineResult(
        sources=len(SOURCES),
        seconds=time.perf_counter() - started,
        batches=stats.batches,
        mean_batch=stats.mean_size,
        max_batch=max(sizes, default=0),
        wait_p99=stats.wait_p99,
    )
    for source, raw, parsed in zip(SOURCES, fetches, parses, strict=True):
        result.per_source[source] = parsed.result()
        if raw.status == "failed":
            result.failed_sources.append(source)
    result.records = sum(result.per_source.values())
    rate = result.records / result.seconds if result.seconds else 0.0
    out.print(
        f"ingested {result.records:,} records from {result.sources} sources in "
        f"{result.seconds:.1f}s ({rate:,.0f} records/s) as {result.batches} batches "
        f"(mean {result.mean_batch:.0f}, largest {result.max_batch}); "
        f"{', '.join(result.failed_sources) or 'no source'} failed and fell back to an empty parse"
    )
    return result


@dataclass
class JobsResult:
    """What the durable-jobs phase did, for the summary."""

    enqueued: int = 0
    seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)
    cron_ticks: int = 0
    killed_pid: int | None = None
    killed_jobs: list[int] = field(default_factory=list)
    recovery: float | None = None
    resumed_finished: int = 0
    restarted_pid: int | None = None
    mean_pickup: float | None = None
    ok: bool = False


@dataclass
class _Watch:
    """The phase's state between two looks at the store."""

    started: float
    killed_worker: str | None = None
    killed_at: float = 0.0
    last_report: float = 0.0
    waves: int = 0


def _index_payloads(
    sources: list[str], shards: range, rng: random.Random
) -> list[dict[str, object]]:
    return [{"source": s, "shard": k, "steps": rng.randint(4, 9)} for s in sources for k in shards]


async def run_jobs(
    processor: JobProcessor, path: Path, out: Console, *, seconds: float, log: Path
) -> JobsResult:
    """Phase 2: enqueue, drain with 2 supervised workers, kill one, watch the recovery."""
    rng = random.Random(11)
    result = JobsResult()
    events: list[ChildEvent] = []
    argv = [sys.executable, "-m", "batchwork", "worker", "batchwork.cli.demo:processor"]
    with log.open("ab") as log_file:
        supervisor = Supervisor(
            [*argv, "--concurrency", "4"],
            2,
            env={**os.environ, DB_ENV: str(path)},
            restart_base=0.2,
            stop_timeout=15,
            on_event=events.append,
            output=log_file,
        )
        thread = threading.Thread(target=supervisor.run, name="demo-supervisor", daemon=True)
        thread.start()
        try:
            if await _workers_up(processor, out, count=2):
                await _enqueue_batch(processor, out, result, rng)
                await _watch(processor, supervisor, out, result, rng, seconds=seconds)
        finally:
            supervisor.stop()
            await asyncio.to_thread(thread.join, 30)
    restarts = [e for e in events if e.kind == "started"][2:]
    result.restarted_pid = restarts[0].pid if restarts else None
    await _tally(processor, result)
    return result


async def _workers_up(processor: JobProcessor, out: Console, *, count: int) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < 30:
        workers = await processor.workers()
        if len(workers) >= count:
            pids = ", ".join(str(w.pid) for w in workers)
            took = time.monotonic() - started
            out.print(f"{count} supervised worker processes up in {took:.1f}s (pids {pids})")
            return True
        await asyncio.sleep(0.1)
    out.print("[red]the worker processes did not start: see the worker logs[/red]")
    return False


async def _enqueue_batch(
    processor: JobProcessor, out: Console, result: JobsResult, rng: random.Random
) -> None:
    ids = await processor.enqueue_many("index_source", _index_payloads(SOURCES, range(2), rng))
    for to in ("ops@example.org", "flaky@example.org", "data-team@example.org"):
        ids.append(await processor.enqueue("send_report", {"to": to}))
    result.enqueued = len(ids)
    out.print(
        f"enqueued {len(ids)} durable jobs (index_source x{len(ids) - 3}, send_report x3); "
        "more arrive while they run"
    )


async def _watch(
    processor: JobProcessor,
    supervisor: Supervisor,
    out: Console,
    result: JobsResult,
    rng: random.Random,
    *,
    seconds: float,
) -> None:
    watch = _Watch(started=time.monotonic())
    while True:
        await asyncio.sleep(0.1)
        now = time.monotonic() - watch.started
        if now > DEADLINE:
            out.print(f"[red]gave up after {DEADLINE:.0f}s[/red]")
            return
        if now < seconds and now >= watch.waves * 0.5:
            watch.waves += 1
            more = _index_payloads(
                [rng.choice(SOURCES)], range(10 + watch.waves, 11 + watch.waves), rng
            )
            result.enqueued += len(await processor.enqueue_many("index_source", more))
        stats = await processor.stats()
        counts = _job_counts(stats.by_name)
        if watch.killed_worker is None:
            await _maybe_kill(processor, supervisor, out, result, watch, counts)
        elif result.recovery is None:
            await _check_recovered(processor, out, result, watch)
        if now - watch.last_report >= 2.0:
            watch.last_report = now
            ticks = sum(stats.by_name.get(CRON, {}).values())
            out.print(
                f"  t={now:4.1f}s  jobs: {counts.get('finished', 0)} finished, "
                f"{counts.get('running', 0)} running, {counts.get('pending', 0)} pending; "
                f"cron ticks: {ticks}"
            )
        active = sum(counts.get(s, 0) for s in ("pending", "running", "paused"))
        ticks = stats.by_name.get(CRON, {}).get("finished", 0)
        if now >= seconds and result.recovery is not None and not active and ticks >= 3:
            result.seconds = now
            result.ok = True
            return


def _job_counts(by_name: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in JOB_NAMES:
        for status, n in by_name.get(name, {}).items():
            counts[status] = counts.get(status, 0) + n
    return counts


async def _maybe_kill(
    processor: JobProcessor,
    supervisor: Supervisor,
    out: Console,
    result: JobsResult,
    watch: _Watch,
    counts: Mapping[str, int],
) -> None:
    if counts.get("finished", 0) < 8:
        return
    alive = set(supervisor.pids)
    busy = [w for w in await processor.workers() if w.running and w.pid in alive]
    if not busy:
        return
    victim = max(busy, key=lambda w: len(w.running))
    os.kill(victim.pid, signal.SIGKILL)
    watch.killed_worker, watch.killed_at = victim.id, time.monotonic()
    result.killed_pid, result.killed_jobs = victim.pid, list(victim.running)
    out.print(
        f"[bold red]SIGKILL[/bold red] worker pid {victim.pid} while it runs jobs "
        f"{', '.join(map(str, victim.running))}; the supervisor restarts it, and another "
        "worker recovers its jobs once its lease expires"
    )


async def _check_recovered(
    processor: JobProcessor, out: Console, result: JobsResult, watch: _Watch
) -> None:
    jobs = [await processor.get(job_id) for job_id in result.killed_jobs]
    if any(j.status == "running" and j.worker_id == watch.killed_worker for j in jobs):
        return
    result.recovery = time.monotonic() - watch.killed_at
    out.print(
        f"recovered {len(jobs)} job(s) of the killed worker {result.recovery:.1f}s after the "
        f"kill (lease {processor.lease_timeout:g}s): resumable jobs run again, same ids"
    )


async def _tally(processor: JobProcessor, result: JobsResult) -> None:
    stats = await processor.stats()
    result.by_status = _job_counts(stats.by_name)
    result.cron_ticks = stats.by_name.get(CRON, {}).get("finished", 0)
    jobs = [await processor.get(job_id) for job_id in result.killed_jobs]
    result.resumed_finished = sum(1 for j in jobs if j.status == "finished" and j.attempts > 1)
    points = await processor.timeline(since=None, bucket=3600.0)
    weighted = [(p.mean_pickup, p.finished + p.failed) for p in points if p.mean_pickup is not None]
    total = sum(w for _, w in weighted)
    result.mean_pickup = sum(v * w for v, w in weighted) / total if total else None


def summary_table(pipeline: PipelineResult, jobs: JobsResult, total: float) -> Table:
    """The closing table: what each part did, in numbers."""
    from rich import box
    from rich.table import Table

    table = Table(title="batchwork demo: summary", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("part")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rate = pipeline.records / pipeline.seconds if pipeline.seconds else 0.0
    table.add_row("TaskRunner", "sources fetched + parsed", f"{pipeline.sources}")
    table.add_row("", "failed, fell back", ", ".join(pipeline.failed_sources) or "none")
    table.add_row("Batcher", "records written", f"{pipeline.records:,}")
    table.add_row("", "items/s", f"{rate:,.0f}")
    table.add_row(
        "",
        "batches (mean / largest size)",
        f"{pipeline.batches} ({pipeline.mean_batch:.0f} / {pipeline.max_batch})",
    )
    table.add_row("", "p99 wait before a flush", f"{pipeline.wait_p99 * 1000:.0f} ms")
    table.add_row("jobs", "enqueued", f"{jobs.enqueued}")
    for status, count in sorted(jobs.by_status.items(), key=lambda kv: -kv[1]):
        table.add_row("", f"  {status}", f"{count}")
    drained = jobs.by_status.get("finished", 0) + jobs.by_status.get("errored", 0)
    per_second = f"{drained / jobs.seconds:.1f}" if jobs.seconds else "-"
    table.add_row("", "jobs/s (2 processes x 4 slots)", per_second)
    pickup = f"{jobs.mean_pickup * 1000:.0f} ms" if jobs.mean_pickup is not None else "-"
    table.add_row("", "mean wait, due to start (queueing)", pickup)
    table.add_row("cron", f"{CRON} (every 2 s) runs", f"{jobs.cron_ticks}")
    table.add_row("crash", "worker SIGKILLed (pid)", f"{jobs.killed_pid or '-'}")
    table.add_row(
        "",
        "its jobs recovered after",
        f"{jobs.recovery:.1f} s" if jobs.recovery is not None else "not seen",
    )
    table.add_row(
        "",
        "recovered jobs finished on a rerun",
        f"{jobs.resumed_finished} of {len(jobs.killed_jobs)}",
    )
    table.add_row("", "restarted as pid", f"{jobs.restarted_pid or '-'}")
    table.add_row("total", "demo time", f"{total:.1f} s")
    return table


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def default_db() -> Path:
    """Where the demo keeps its database unless told: ``./batchwork-demo.db``."""
    return Path.cwd() / "batchwork-demo.db"


def fresh_db(path: Path) -> None:
    """Remove a previous run's database (and its WAL files) so every run starts clean.

    A file that is not a demo database is left alone (``UsageError``): ``--db`` must
    never delete someone's real store.
    """
    if path.exists() and not _is_demo_db(path):
        raise UsageError(f"{path} exists and is not a batchwork demo database; choose another --db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _is_demo_db(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'demo_records'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return found is not None


def dashboard_command(path: Path) -> str:
    """The command that opens the dashboard on the demo's database."""
    command = "batchwork dashboard batchwork.cli.demo:processor"
    if path == default_db():
        return command
    return f"{DB_ENV}={path} {command}"


def run_demo(*, db: str | None = None, seconds: float = 4.0) -> int:
    """Run the demo; returns the exit status (0 when every phase did what it shows).

    Example::

        run_demo(db="/tmp/demo.db")
    """
    path = Path(db).resolve() if db else default_db()
    out = _console()
    fresh_db(path)
    started = time.monotonic()
    out.rule("batchwork demo")
    out.print(f"database: {path}")
    out.print(
        "[bold][1/3][/bold] ingestion: a TaskRunner fetches and parses; a Batcher writes records"
    )
    pipeline = asyncio.run(run_pipeline(RecordSink(path), out))
    out.print("[bold][2/3][/bold] durable jobs: 2 worker processes, a cron every 2 s, one crash")
    log = path.with_suffix(".log")
    jobs = asyncio.run(_jobs_phase(path, out, seconds=seconds, log=log))
    out.print("[bold][3/3][/bold] summary")
    out.print(summary_table(pipeline, jobs, time.monotonic() - started))
    out.print(f"worker logs: {log}")
    out.print("open the dashboard on the same database (needs batchwork[dashboard]):", markup=False)
    out.print(f"  {dashboard_command(path)}", soft_wrap=True)
    if not jobs.ok:
        out.print("[red]the jobs phase did not complete: see the worker logs[/red]")
        return 1
    return 0


async def _jobs_phase(path: Path, out: Console, *, seconds: float, log: Path) -> JobsResult:
    processor = make_processor(path)
    try:
        return await run_jobs(processor, path, out, seconds=seconds, log=log)
    finally:
        await processor.close()
