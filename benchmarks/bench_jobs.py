"""Durable jobs on SQLite (and PostgreSQL when available) against raw floors and Huey.

Protocol (the same for batchwork and the peer), median of ``RUNS`` fresh stores:

* ``enqueue``: 10,000 no-op jobs, one ``await processor.enqueue`` call each, in sequence;
* ``enqueue_concurrent`` (extra): 10,000 one-job calls again, 100 in flight at a time (many
  producers; the store commits calls that arrive together in one transaction);
* ``enqueue_many``: 10,000 jobs in one call;
* ``drain``: one worker *process* started on the 20,000 enqueued jobs; from the moment the
  worker says it is ready to the last ``ended_at`` the store recorded (the parent polls
  only every 50 ms, so as not to take CPU from the worker);
* ``pickup``: with an idle worker in another process, the delay from just before
  ``enqueue`` to the handler's start (``started_at``), 200 jobs one after another.

Floors, with Python's ``sqlite3`` on the same kind of file (WAL, synchronous=NORMAL):
one-row insert transactions, claim transactions of 256 rows (``UPDATE … RETURNING``) and
"done" transactions of 256 rows; and batchwork's store alone (claim 256 / complete 256 in
a loop, no worker), which bounds what any worker on it can drain. Peer: Huey's
``SqliteHuey`` with its consumer (threads).

Run: ``python -m benchmarks jobs`` (prints JSON). Set ``BATCHWORK_TEST_POSTGRES_DSN`` to
also drain on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

N = 10_000
RUNS = 3
CONCURRENCY = 256
PICKUPS = 200
PRODUCERS = 100  # concurrent one-job enqueue calls (e.g. web requests) in the extra figure
BATCH = 256
ROOT = Path(__file__).resolve().parents[1]


# -- batchwork ------------------------------------------------------------------------
def make_processor(url: str) -> Any:
    from batchwork.jobs import Job, JobProcessor, Signal

    processor = JobProcessor(url, heartbeat_interval=1.0, lease_timeout=10.0)

    @processor.job()
    async def noop(job: Job, signal: Signal) -> None:
        return None

    return processor


def worker_main(url: str, concurrency: int, ready_file: str) -> None:
    """The worker process: announce readiness (wall time), then work until SIGTERM."""
    processor = make_processor(url)

    async def run() -> None:
        worker = processor.worker(concurrency=concurrency)
        await worker.start()
        announce(ready_file)
        await worker.run()

    asyncio.run(_with_sigterm(run()))


def announce(ready_file: str) -> None:
    Path(ready_file).write_text(repr(time.time()))


async def _with_sigterm(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_finished(processor: Any, count: int) -> None:
    """Poll until ``count`` jobs have finished (the worker is another process). Slowly:
    counting is a scan, and polling fast would take CPU from the worker it measures."""
    while (await processor.stats()).by_status.get("finished", 0) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def drain_rate(processor: Any, count: int, ready_at: float) -> float:
    """Jobs/s from the worker's start to the last ``ended_at`` the store recorded."""
    await wait_finished(processor, count)
    jobs = await processor.list(status="finished", limit=count)
    last: datetime = max(job.ended_at for job in jobs)
    return count / (last.timestamp() - ready_at)


def start_process(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_jobs", *args], cwd=ROOT, env=env
    )


def wait_ready(ready: Path, proc: subprocess.Popen[bytes]) -> float:
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        time.sleep(0.001)
    return float(ready.read_text())


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def batchwork_run(url: str, tmp: Path) -> dict[str, float]:
    processor = make_processor(url)
    started = time.perf_counter()
    for i in range(N):
        await processor.enqueue("noop", {"i": i})
    enqueue = N / (time.perf_counter() - started)
    started = time.perf_counter()
    for first in range(0, N, PRODUCERS):
        await asyncio.gather(
            *(processor.enqueue("noop", {"i": i}) for i in range(first, first + PRODUCERS))
        )
    concurrent = N / (time.perf_counter() - started)
    ready = tmp / "ready"
    proc = start_process(["worker", url, str(CONCURRENCY), str(ready)])
    try:
        ready_at = await asyncio.to_thread(wait_ready, ready, proc)
        drain = await drain_rate(processor, 2 * N, ready_at)
        started = time.perf_counter()
        await processor.enqueue_many("noop", [{"i": i} for i in range(N)])
        many = N / (time.perf_counter() - started)
        pickup = await pickup_latencies(processor)
    finally:
        await asyncio.to_thread(stop, proc)
        await processor.close()
    return {
        "enqueue": enqueue,
        "enqueue_concurrent": concurrent,
        "enqueue_many": many,
        "drain": drain,
        **pickup,
    }


async def pickup_latencies(processor: Any) -> dict[str, float]:
    await wait_finished(processor, 3 * N)  # the worker is idle again
    samples = []
    for _ in range(PICKUPS):
        before = datetime.now(UTC)
        job_id = await processor.enqueue("noop")
        await processor.result(job_id, timeout=10)
        job = await processor.get(job_id)
        samples.append((job.started_at - before).total_seconds() * 1000)
    quantiles = statistics.quantiles(samples, n=100)
    return {"pickup_p50_ms": quantiles[49], "pickup_p99_ms": quantiles[98]}


async def batchwork_drain_only(url: str, tmp: Path) -> float:
    processor = make_processor(url)
    await processor.enqueue_many("noop", [{"i": i} for i in range(N)])
    ready = tmp / "ready"
    proc = start_process(["worker", url, str(CONCURRENCY), str(ready)])
    try:
        ready_at = await asyncio.to_thread(wait_ready, ready, proc)
        return await drain_rate(processor, N, ready_at)
    finally:
        await asyncio.to_thread(stop, proc)
        await processor.close()


async def store_pipeline(url: str) -> float:
    """The store alone, no worker: claim 256, complete 256, in a loop (jobs/s)."""
    from batchwork.jobs._model import JobStatus, Outcome, WorkerInfo

    processor = make_processor(url)
    await processor.enqueue_many("noop", [{"i": i} for i in range(N)])
    store = await processor._ready_store()
    now = store.now()
    await store.register_worker(WorkerInfo("bench", "host", 0, None, BATCH, 30.0, now, now))
    started = time.perf_counter()
    while claimed := await store.claim("bench", tags=None, limit=BATCH, now=store.now()):
        ended = store.now()
        outcomes = [
            Outcome(c.job.id, c.lease, JobStatus.FINISHED, ended, 0.0, "null") for c in claimed
        ]
        await store.complete("bench", outcomes)
    rate = N / (time.perf_counter() - started)
    await processor.close()
    return rate


# -- floors: raw sqlite3 ---------------------------------------------------------------
FLOOR_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, payload TEXT,
    priority INTEGER NOT NULL DEFAULT 0, scheduled_for INTEGER NOT NULL, worker_id TEXT
);
CREATE INDEX jobs_due ON jobs (status, priority DESC, scheduled_for, id);
"""


def floors(path: Path) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(FLOOR_SCHEMA)
    started = time.perf_counter()
    for i in range(N):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO jobs (name, status, payload, scheduled_for) VALUES (?, 'pending', ?, ?)",
            ("noop", json.dumps({"i": i}), i),
        )
        conn.execute("COMMIT")
    insert = N / (time.perf_counter() - started)
    claimed: list[list[int]] = []
    started = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "UPDATE jobs SET status = 'running', worker_id = 'w' WHERE id IN (SELECT id FROM jobs"
            " WHERE status = 'pending' ORDER BY priority DESC, scheduled_for, id LIMIT ?)"
            " RETURNING id, payload",
            (BATCH,),
        ).fetchall()
        conn.execute("COMMIT")
        if not rows:
            break
        claimed.append([row[0] for row in rows])
    claim = N / (time.perf_counter() - started)
    started = time.perf_counter()
    for ids in claimed:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE jobs SET status = 'finished' WHERE id = ?", [(i,) for i in ids])
        conn.execute("COMMIT")
    done = N / (time.perf_counter() - started)
    conn.close()
    return {"insert_one_per_tx": insert, "claim_batch_256": claim, "done_batch_256": done}


# -- peer: Huey ------------------------------------------------------------------------
def make_huey(path: str) -> tuple[Any, Callable[..., Any]]:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=path)

    def noop(i: int) -> None:
        return None

    return huey, huey.task()(noop)


def huey_worker_main(path: str, ready_file: str) -> None:
    import logging

    from huey.consumer import Consumer

    logging.disable(logging.CRITICAL)
    huey, _ = make_huey(path)
    consumer = Consumer(
        huey,
        workers=8,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        backoff=1.0,
        max_delay=0.001,
        check_worker_health=False,
    )
    announce(ready_file)
    consumer.run()


def huey_run(tmp: Path) -> dict[str, float]:
    path = str(tmp / "huey.db")
    huey, noop = make_huey(path)
    started = time.perf_counter()
    for i in range(N):
        noop(i)
    enqueue = N / (time.perf_counter() - started)
    ready = tmp / "huey-ready"
    proc = start_process(["huey-worker", path, str(ready)])
    try:
        ready_at = wait_ready(ready, proc)
        while huey.pending_count() > 0:
            time.sleep(0.005)
        drain = N / (time.time() - ready_at)
    finally:
        stop(proc)
    return {"enqueue": enqueue, "drain": drain}


# -- driver ----------------------------------------------------------------------------
def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 1) for key in runs[0]}


def fresh(fn: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        return fn(Path(tmp))


def _drain_only_sync(url: str, tmp: Path) -> float:
    return asyncio.run(batchwork_drain_only(url, tmp))


def _sqlite_run(tmp: Path) -> dict[str, float]:
    url = f"sqlite:///{tmp / 'jobs.db'}"
    figures = asyncio.run(batchwork_run(url, tmp))
    figures["store_only_claim_complete"] = asyncio.run(
        store_pipeline(f"sqlite:///{tmp / 'pipeline.db'}")
    )
    return figures


def postgres_drain() -> dict[str, float] | None:
    dsn = os.environ.get("BATCHWORK_TEST_POSTGRES_DSN")
    if not dsn or not (ROOT / "src/batchwork/jobs/_postgres.py").exists():
        return None
    import psycopg

    rates = []
    for run in range(RUNS):
        schema = f"bench_jobs_{os.getpid()}_{run}"
        url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
        try:
            rates.append(fresh(functools.partial(_drain_only_sync, url)))
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"drain": round(statistics.median(rates), 1)}


def main() -> None:
    ours = median_of([fresh(_sqlite_run) for _ in range(RUNS)])
    floor = median_of([fresh(lambda tmp: floors(tmp / "floor.db")) for _ in range(RUNS)])
    huey = median_of([fresh(huey_run) for _ in range(RUNS)])
    report: dict[str, Any] = {
        "benchmark": "jobs",
        "jobs": N,
        "runs": RUNS,
        "worker_concurrency": CONCURRENCY,
        "batchwork_sqlite": ours,
        "floor_sqlite3": floor,
        "huey_sqlite": huey,
        "ratios": {
            "enqueue_vs_floor_insert": round(ours["enqueue"] / floor["insert_one_per_tx"], 2),
            "enqueue_vs_huey": round(ours["enqueue"] / huey["enqueue"], 2),
            "drain_vs_huey": round(ours["drain"] / huey["drain"], 2),
            "drain_vs_store_only": round(ours["drain"] / ours["store_only_claim_complete"], 2),
            "drain_vs_floor_claim_plus_done": round(
                ours["drain"] / (1 / (1 / floor["claim_batch_256"] + 1 / floor["done_batch_256"])),
                2,
            ),
        },
        "goals": {"enqueue": 10_000, "enqueue_many": 100_000, "drain": 25_000},
    }
    pg = postgres_drain()
    if pg is not None:
        report["batchwork_postgres"] = pg
        report["goals"]["postgres_drain"] = 15_000
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["huey-worker"]:
        huey_worker_main(sys.argv[2], sys.argv[3])
    else:
        main()
