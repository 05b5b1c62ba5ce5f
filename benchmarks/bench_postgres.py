"""The PostgreSQL store against raw psycopg floors, measured in the same run.

Protocol (PostgreSQL on loopback, fsync on; each figure the median of ``RUNS`` rounds, a
fresh schema per round; floors and store interleaved so both see the same machine load):

* ``enqueue_one``: ``SINGLE`` jobs, one ``store.enqueue([job])`` call each, in sequence.
  Floor: one raw single-row ``INSERT`` per call (autocommit) into a minimal job table
  with a claim index; ``enqueue_one_same_table``: the same statement the store sends,
  raw, into a copy of the store's own ``jobs`` table (isolates the library's overhead).
* ``enqueue_many``: ``N`` jobs in one ``store.enqueue`` call. Floor: one raw ``COPY`` of
  ``N`` rows into that table.
* ``claim_complete``: drain ``N`` jobs at the store level: ``claim(limit=BATCH)`` then one
  ``complete`` of the whole batch (durable), in sequence, until empty. Floor: raw
  ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT BATCH) RETURNING`` and one
  ``UPDATE … WHERE id = ANY(…)`` per batch, both durable. (The end-to-end worker drain is
  the runtime's benchmark, ``bench_jobs.py``.)
* ``pickup``: an idle store in *another process* waits in ``wait_for_work`` (LISTEN/NOTIFY)
  and claims; this process enqueues ``PICKUPS`` jobs at ``RATE`` jobs/s, each carrying its
  ``time.time()`` just before ``enqueue``; pickup = claim return time - that time.
* ``procrastinate`` (peer): ``defer_async`` one call each and ``batch_defer_async`` of
  ``N``, on its own schema-less tables in a scratch schema.

Run: ``python -m benchmarks postgres`` (``BATCHWORK_TEST_POSTGRES_DSN`` names the server;
default the loopback test database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

DSN = os.environ.get("BATCHWORK_TEST_POSTGRES_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
N = 10_000
SINGLE = 1_000
CHUNK = 50  # one-call enqueues alternate floor/store in chunks this size
BATCH = 100
RUNS = 3
PICKUPS = 600
RATE = 300.0
ROOT = Path(__file__).resolve().parents[1]

RAW_TABLE = """
CREATE TABLE {s}.raw_jobs (
    id bigserial PRIMARY KEY, name text NOT NULL, type text NOT NULL, status text NOT NULL,
    payload json NOT NULL, result json, priority integer NOT NULL DEFAULT 0,
    worker_id text, lease text, attempts integer NOT NULL DEFAULT 0,
    scheduled_for timestamptz NOT NULL, created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL, ended_at timestamptz
);
CREATE INDEX ON {s}.raw_jobs (priority DESC, scheduled_for, id)
    WHERE status IN ('pending', 'paused');
"""
RAW_INSERT = (
    "INSERT INTO {s}.raw_jobs (name, type, status, payload, scheduled_for, created_at, "
    "updated_at) VALUES (%s, 'job', 'pending', %s, %s, %s, %s) RETURNING id"
)
RAW_CLAIM = (
    "UPDATE {s}.raw_jobs j SET status = 'running', worker_id = 'w', lease = 'l', "
    "attempts = attempts + 1, updated_at = now() WHERE id IN (SELECT id FROM {s}.raw_jobs "
    "WHERE status IN ('pending', 'paused') AND scheduled_for <= now() "
    "ORDER BY priority DESC, scheduled_for, id LIMIT %s FOR UPDATE SKIP LOCKED) "
    "RETURNING j.id, j.name, j.payload::text, j.attempts"
)
RAW_DONE = (
    "UPDATE {s}.raw_jobs SET status = 'finished', result = 'null', ended_at = now(), "
    "updated_at = now(), lease = NULL WHERE id = ANY(%s) AND lease = 'l'"
)


# -- helpers ------------------------------------------------------------------------------
def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def new_jobs(count: int, at: Any) -> list[Any]:
    from batchwork.jobs._model import NewJob

    return [NewJob("noop", f'{{"i":{i}}}', at) for i in range(count)]


async def drop(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


# -- floors and the store, interleaved -----------------------------------------------------
class Raw:
    """The floor: hand-written SQL on one autocommit psycopg connection."""

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        s = f'"{schema}"'
        self.schema = s
        self.insert = RAW_INSERT.format(s=s).encode()
        self.claim, self.done = RAW_CLAIM.format(s=s).encode(), RAW_DONE.format(s=s).encode()
        self.copy_sql = (
            f"COPY {s}.raw_jobs (name, type, status, payload, scheduled_for, created_at, "
            "updated_at) FROM STDIN"
        ).encode()

    async def create(self) -> None:
        await self.conn.execute(f"CREATE SCHEMA {self.schema}".encode())
        await self.conn.execute(RAW_TABLE.format(s=self.schema).encode())

    async def single(self, count: int, now: Any) -> None:
        for i in range(count):
            await self.conn.execute(self.insert, ("noop", f'{{"i":{i}}}', now, now, now))

    async def copy(self, count: int, now: Any) -> None:
        stamp = now.isoformat()
        text = "".join(
            f'noop\tjob\tpending\t{{"i":{i}}}\t{stamp}\t{stamp}\t{stamp}\n' for i in range(count)
        )
        async with self.conn.transaction(), self.conn.cursor().copy(self.copy_sql) as cp:
            await cp.write(text)

    async def drain(self) -> None:
        while rows := await (await self.conn.execute(self.claim, (BATCH,))).fetchall():
            await self.conn.execute(self.done, ([r[0] for r in rows],))


async def store_drain(store: Any) -> None:
    from batchwork.jobs._model import JobStatus, Outcome

    while claimed := await store.claim("w", tags=None, limit=BATCH, now=store.now()):
        at = store.now()
        outcomes = [
            Outcome(c.job.id, c.lease, JobStatus.FINISHED, at, 0.0, result_json="null")
            for c in claimed
        ]
        await store.complete("w", outcomes)


async def one_round(raw_schema: str, store_schema: str) -> tuple[dict[str, float], ...]:
    """Floor and store side by side; one-call enqueues alternate in chunks."""
    import psycopg

    from batchwork.jobs._model import WorkerInfo
    from batchwork.jobs._postgres import PostgresStore
    from batchwork.jobs._postgres_rows import plain_row

    floor: dict[str, float] = {}
    ours: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        raw = Raw(conn, raw_schema)
        await raw.create()
        store = PostgresStore(DSN, schema=store_schema)
        await store.open()
        try:
            now = store.now()
            jobs = new_jobs(SINGLE, now)
            # a second floor: the same INSERT into a copy of the store's own jobs table
            # (same columns and indexes), which isolates the library's own overhead
            twin = f'"{raw_schema}".twin_jobs'
            await conn.execute(
                f'CREATE TABLE {twin} (LIKE "{store_schema}".jobs INCLUDING ALL)'.encode()
            )
            twin_insert = store._sql.insert_job.replace(
                f'"{store_schema}".jobs'.encode(), twin.encode()
            )
            twin_params = plain_row(jobs[0], now)

            async def twin_single() -> None:
                for _ in range(CHUNK):
                    await conn.execute(twin_insert, twin_params)

            raw_time = twin_time = store_time = 0.0
            for chunk in range(0, SINGLE, CHUNK):
                raw_time += await timed(lambda: raw.single(CHUNK, now))
                twin_time += await timed(twin_single)
                part = jobs[chunk : chunk + CHUNK]
                store_time += await timed(lambda: _one_each(store, part, now))  # noqa: B023
            floor["enqueue_one"] = rate(SINGLE, raw_time)
            floor["enqueue_one_same_table"] = rate(SINGLE, twin_time)
            ours["enqueue_one"] = ours["enqueue_one_same_table"] = rate(SINGLE, store_time)
            many = new_jobs(N, now)
            floor["enqueue_many"] = rate(N, await timed(lambda: raw.copy(N, now)))
            ours["enqueue_many"] = rate(N, await timed(lambda: store.enqueue(many, now=now)))
            await store.register_worker(WorkerInfo("w", "h", 1, None, BATCH, 30.0, now, now))
            floor["claim_complete"] = rate(N + SINGLE, await timed(raw.drain))
            ours["claim_complete"] = rate(N + SINGLE, await timed(lambda: store_drain(store)))
        finally:
            await store.close()
    return floor, ours


async def _one_each(store: Any, jobs: list[Any], now: Any) -> None:
    for job in jobs:
        await store.enqueue([job], now=now)


# -- pickup latency -----------------------------------------------------------------------
PICKUP_WORKER = """
import asyncio, json, sys, time
from batchwork.jobs._model import JobStatus, Outcome, WorkerInfo
from batchwork.jobs._postgres import PostgresStore

async def main(dsn, schema, count):
    store = PostgresStore(dsn, schema=schema)
    await store.open()
    now = store.now()
    await store.register_worker(WorkerInfo("p", "h", 1, None, 10, 30.0, now, now))
    print("ready", flush=True)
    delays = []
    while len(delays) < count:
        await store.wait_for_work(1.0)
        claimed = await store.claim("p", tags=None, limit=10, now=store.now())
        got = time.time()
        delays += [got - c.job.payload["t"] for c in claimed]
        if claimed:
            at = store.now()
            await store.complete(
                "p", [Outcome(c.job.id, c.lease, JobStatus.FINISHED, at, 0.0) for c in claimed]
            )
    await store.close()
    print(json.dumps(delays), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def pickup(schema: str) -> dict[str, float]:
    from batchwork.jobs._model import NewJob
    from batchwork.jobs._postgres import PostgresStore

    store = PostgresStore(DSN, schema=schema)
    await store.open()  # creates the schema before the worker opens it
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PICKUP_WORKER,
        DSN,
        schema,
        str(PICKUPS),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        assert (await proc.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        for i in range(PICKUPS):
            await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
            at = store.now()
            job = NewJob("noop", json.dumps({"t": time.time()}), at)
            await store.enqueue([job], now=at)
        delays = sorted(json.loads(await proc.stdout.readline()))
    finally:
        await proc.wait()
        await store.close()
    ms = [d * 1000 for d in delays]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
        "max_ms": round(ms[-1], 2),
    }


# -- procrastinate (peer) -----------------------------------------------------------------
async def procrastinate_round(schema: str) -> dict[str, float]:
    import procrastinate
    import psycopg

    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    connector = procrastinate.PsycopgConnector(
        conninfo=DSN, kwargs={"options": f"-c search_path={schema}"}
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="noop")
    async def noop(i: int) -> None:
        return None

    out: dict[str, float] = {}
    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        async def single() -> None:
            for i in range(SINGLE):
                await noop.defer_async(i=i)

        out["enqueue_one"] = rate(SINGLE, await timed(single))
        many: list[Any] = [{"i": i} for i in range(N)]
        out["enqueue_many"] = rate(N, await timed(lambda: noop.batch_defer_async(*many)))
    return out


# -- main ---------------------------------------------------------------------------------
def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


async def run() -> dict[str, Any]:
    schemas: list[str] = []

    def fresh() -> str:
        schemas.append(f"bw_bench_{uuid4().hex[:10]}")
        return schemas[-1]

    try:
        floor_rounds, store_rounds, peer_rounds = [], [], []
        for _ in range(RUNS):
            floor, ours = await one_round(fresh(), fresh())
            floor_rounds.append(floor)
            store_rounds.append(ours)
            with contextlib.suppress(ImportError):  # bench-only dependency
                peer_rounds.append(await procrastinate_round(fresh()))
        latency = await pickup(fresh())
    finally:
        for schema in schemas:
            await drop(schema)
    floor, store = median_of(floor_rounds), median_of(store_rounds)
    result: dict[str, Any] = {
        "benchmark": "postgres",
        "n": N,
        "single_calls": SINGLE,
        "claim_batch": BATCH,
        "runs": RUNS,
        "floor_jobs_per_s": floor,
        "store_jobs_per_s": store,
        "ratio_to_floor": {key: round(store[key] / floor[key], 3) for key in store},
        "pickup": {"rate_per_s": RATE, "jobs": PICKUPS, **latency},
    }
    if peer_rounds:
        peer = median_of(peer_rounds)
        result["procrastinate_jobs_per_s"] = peer
        result["ratio_to_procrastinate"] = {key: round(store[key] / peer[key], 2) for key in peer}
    return result


def main() -> None:
    print(json.dumps(asyncio.run(run()), indent=2))


if __name__ == "__main__":
    main()
