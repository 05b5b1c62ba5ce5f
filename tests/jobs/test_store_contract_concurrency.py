"""The store contract across connections and processes: no double claims, racing
migrations, wake-ups."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from batchwork.jobs._model import JobStatus
from batchwork.jobs._store import Store, store_from_url

from .clock import ManualClock
from .store_helpers import add, new_job, outcome, worker

OPENERS = 6


async def test_two_stores_never_claim_a_job_twice(store_url: str, clock: ManualClock) -> None:
    a, b = store_from_url(store_url), store_from_url(store_url)
    await a.open()
    await b.open()
    try:
        ids = await add(a, clock, *(new_job(clock.now()) for _ in range(400)))
        await a.register_worker(worker(clock, "wa"))
        await b.register_worker(worker(clock, "wb"))
        taken: list[int] = []
        while True:
            batches = await asyncio.gather(
                *(
                    store.claim(worker_id, tags=None, limit=7, now=clock.now())
                    for _ in range(8)
                    for store, worker_id in ((a, "wa"), (b, "wb"))
                )
            )
            got = [claimed.job.id for batch in batches for claimed in batch]
            if not got:
                break
            taken += got
        assert sorted(taken) == ids
        owners = {job.worker_id for job in await a.list_jobs(limit=1000)}
        assert owners == {"wa", "wb"}
    finally:
        await a.close()
        await b.close()


async def test_completions_from_two_stores(store_url: str, clock: ManualClock) -> None:
    a, b = store_from_url(store_url), store_from_url(store_url)
    await a.open()
    await b.open()
    try:
        ids = await add(a, clock, *(new_job(clock.now()) for _ in range(50)))
        await a.register_worker(worker(clock, "wa"))
        claimed = await a.claim("wa", tags=None, limit=50, now=clock.now())
        half = len(claimed) // 2
        written = await asyncio.gather(
            a.complete("wa", [outcome(c, clock) for c in claimed[:half]]),
            b.complete("wa", [outcome(c, clock) for c in claimed[half:]]),
        )
        assert written[0] | written[1] == set(ids)
        counts = await b.counts()
        assert counts == {("task", JobStatus.FINISHED): 50}
    finally:
        await a.close()
        await b.close()


OPENER = textwrap.dedent(
    """
    import asyncio, sys
    from batchwork.jobs._model import NewJob
    from batchwork.jobs._store import store_from_url

    async def main(url, n):
        store = store_from_url(url)  # imports the driver; no I/O yet
        print("ready", flush=True)
        sys.stdin.readline()  # everyone opens at the same moment
        await store.open()
        now = store.now()
        await store.enqueue([NewJob(f"opener-{n}", "{}", now)], now=now)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_processes_racing_to_open_a_fresh_store(store_url: str, tmp_path: Path) -> None:
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            store_url,
            str(n),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(OPENERS)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    results = await asyncio.gather(*(proc.communicate() for proc in procs))
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()

    store = store_from_url(store_url)
    await store.open()  # a later open finds the schema current
    await store.open()  # and opening twice is harmless
    try:
        names = sorted(job.name for job in await store.list_jobs())
        assert names == sorted(f"opener-{n}" for n in range(OPENERS))
    finally:
        await store.close()


async def test_close_and_open_again(store_url: str, clock: ManualClock) -> None:
    store = store_from_url(store_url)
    await store.open()
    [job_id] = await add(store, clock, new_job(clock.now()))
    await store.close()
    await store.open()
    try:
        assert (await store.get(job_id)).status is JobStatus.PENDING
    finally:
        await store.close()


# -- wake-ups ------------------------------------------------------------------------------
async def test_wait_for_work_returns_at_once_for_a_local_enqueue(
    store: Store, clock: ManualClock
) -> None:
    await store.register_worker(worker(clock))
    assert await store.claim("w1", tags=None, limit=10, now=clock.now()) == []
    waiter = asyncio.create_task(store.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    await add(store, clock, new_job(clock.now()))
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1.0


async def test_wait_for_work_sees_another_connection_promptly(
    store_url: str, store: Store, clock: ManualClock
) -> None:
    await store.register_worker(worker(clock))
    assert await store.claim("w1", tags=None, limit=10, now=clock.now()) == []
    other = store_from_url(store_url)
    await other.open()
    try:
        waiter = asyncio.create_task(store.wait_for_work(30))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        await add(other, clock, new_job(clock.now()))
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - started < 1.0
    finally:
        await other.close()


async def test_wait_for_work_times_out_when_nothing_changes(
    store: Store, clock: ManualClock
) -> None:
    await store.register_worker(worker(clock))
    await store.claim("w1", tags=None, limit=10, now=clock.now())
    started = time.monotonic()
    await store.wait_for_work(0.3)
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    await store.wait_for_work(0)
    assert time.monotonic() - started < 0.5
