"""Review guard: ``processor.sync.enqueue`` from several threads at once while the
processor's own loop enqueues too (SQLite: inline commits on two loops' threads;
PostgreSQL: each loop's kept connection)."""

from __future__ import annotations

import asyncio
import threading

from batchwork.jobs import JobProcessor


async def test_sync_enqueues_from_threads_and_async_enqueues_all_land(store_url: str) -> None:
    processor = JobProcessor(store_url)
    got: dict[str, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce(thread: int) -> None:
        try:
            for i in range(20):
                job_id = processor.sync.enqueue("t", {"n": f"s{thread}-{i}"})
                with lock:
                    got[f"s{thread}-{i}"] = job_id
        except BaseException as exc:  # reported below
            errors.append(exc)

    def run_threads() -> None:
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    async def produce_here() -> None:
        for i in range(20):
            got[f"a-{i}"] = await processor.enqueue("t", {"n": f"a-{i}"})

    try:
        await asyncio.gather(asyncio.to_thread(run_threads), produce_here())
        assert errors == []
        assert len(set(got.values())) == len(got) == 100
        for key, job_id in got.items():
            assert (await processor.get(job_id)).payload == {"n": key}
    finally:
        await asyncio.to_thread(processor.sync.close)
        await processor.close()
