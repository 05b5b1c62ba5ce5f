"""DataLoader against aiodataloader, and SyncBatcher against a bare thread-pool floor.

DataLoader workload: 100,000 loads of 10,000 distinct keys (shuffled, each key ten
times), ``max_size=256``, next-tick dispatch (both libraries' default), a batch function
that answers ``2 * key``. Three caller shapes, each with a fresh loader per round:

* ``gather``: every ``load`` future handed to one ``asyncio.gather`` (one tick);
* ``tasks``: every load awaited by its own task, as GraphQL resolvers do (one tick);
* ``load_many``: one ``load_many`` call with all the keys;
* ``waves``: 100 resolver-like waves of 1,000 ``load`` calls, each wave gathered, the
  cache kept between waves (later waves are mostly cache hits).

``gather_floor_one_future_per_load_us`` is what the ``gather`` shape costs with nothing
but one future per load (see `time_one_future_per_load`): our floor there, since every
caller gets its own future.

Each shape runs with ``cache=True`` and ``cache=False`` (in-flight dedupe only; for
aiodataloader, whose dedupe *is* its cache, ``cache=False`` loads duplicates again).

SyncBatcher workload: 8 threads, each submitting 5,000 items one after another and
blocking for each result (identity batch function, ``max_size=256``, ``max_wait=0``),
once with a plain ``def`` (run in the executor: one more thread hop per batch) and once
with an ``async def`` (run on the helper loop).
Floor: the same 8 threads each handing every item to a one-worker
``ThreadPoolExecutor`` and blocking on its ``Future`` -- the cheapest cross-thread round
trip the standard library offers.

Times are the best of several rounds. Ratios < 1 mean batchwork is faster.
Run: ``python -m benchmarks dataloader`` (prints JSON).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiodataloader import DataLoader as AioDataLoader

from batchwork import DataLoader, SyncBatcher

LOADS = int(os.environ.get("BATCHWORK_BENCH_LOADS", "100000"))
DISTINCT = int(os.environ.get("BATCHWORK_BENCH_DISTINCT", "10000"))
ROUNDS = int(os.environ.get("BATCHWORK_BENCH_ROUNDS", "5"))
MAX_SIZE = 256
WAVE = 1000
THREADS = 8
PER_THREAD = int(os.environ.get("BATCHWORK_BENCH_PER_THREAD", "5000"))


def workload() -> list[int]:
    keys = [i % DISTINCT for i in range(LOADS)]
    random.Random(42).shuffle(keys)
    return keys


async def double(keys: list[int]) -> list[int]:
    return [2 * k for k in keys]


def ours(cache: bool) -> Any:
    return DataLoader(double, max_size=MAX_SIZE, cache=cache)


def theirs(cache: bool) -> Any:
    return AioDataLoader(double, max_batch_size=MAX_SIZE, cache=cache)


async def shape_gather(loader: Any, keys: list[int]) -> list[int]:
    return list(await asyncio.gather(*(loader.load(k) for k in keys)))


async def shape_tasks(loader: Any, keys: list[int]) -> list[int]:
    async def resolve(key: int) -> int:
        return int(await loader.load(key))

    return list(await asyncio.gather(*(resolve(k) for k in keys)))


async def shape_load_many(loader: Any, keys: list[int]) -> list[int]:
    return list(await loader.load_many(keys))


async def shape_waves(loader: Any, keys: list[int]) -> list[int]:
    out: list[int] = []
    for start in range(0, len(keys), WAVE):
        wave = keys[start : start + WAVE]
        out.extend(await asyncio.gather(*(loader.load(k) for k in wave)))
    return out


Shape = Callable[[Any, list[int]], Awaitable[list[int]]]
SHAPES: dict[str, Shape] = {
    "gather": shape_gather,
    "tasks": shape_tasks,
    "load_many": shape_load_many,
    "waves": shape_waves,
}


def best_of(run: Callable[[], float]) -> float:
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        times.append(run())
    return min(times)


def time_loader(make: Callable[[bool], Any], shape: Shape, cache: bool) -> float:
    keys = workload()
    expected = [2 * k for k in keys]

    async def once() -> float:
        loader = make(cache)
        start = time.perf_counter()
        values = await shape(loader, keys)
        elapsed = time.perf_counter() - start
        assert values == expected
        return elapsed

    return best_of(lambda: asyncio.run(once()))


def time_one_future_per_load() -> float:
    """Floor of the ``gather`` shape when every caller gets a future of its own.

    One future per load, resolved key by key in a later callback, all gathered: the least
    any loader that never shares a future between callers can cost. aiodataloader hands
    equal keys the same future, and ``gather`` waits on each distinct future once, so in
    the ``gather`` shapes it waits on 10,000 futures where a per-caller loader waits on
    100,000.
    """
    keys = workload()

    async def once() -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        by_key: dict[int, list[asyncio.Future[int]]] = {}
        futures = []
        for key in keys:
            future: asyncio.Future[int] = loop.create_future()
            by_key.setdefault(key, []).append(future)
            futures.append(future)

        def resolve() -> None:
            for key, waiting in by_key.items():
                for future in waiting:
                    future.set_result(2 * key)

        loop.call_soon(resolve)
        await asyncio.gather(*futures)
        return time.perf_counter() - start

    return best_of(lambda: asyncio.run(once()))


def dataloader_results() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for cache in (True, False):
        for name, shape in SHAPES.items():
            ours_s = time_loader(ours, shape, cache)
            theirs_s = time_loader(theirs, shape, cache)
            results[f"{name}_cache_{str(cache).lower()}"] = {
                "batchwork_us_per_load": round(ours_s / LOADS * 1e6, 3),
                "aiodataloader_us_per_load": round(theirs_s / LOADS * 1e6, 3),
                "ratio": round(ours_s / theirs_s, 3),
            }
    return results


def run_threads(submit: Callable[[int], object]) -> float:
    start_line = threading.Barrier(THREADS + 1)

    def work(t: int) -> None:
        start_line.wait()
        base = t * PER_THREAD
        for i in range(base, base + PER_THREAD):
            submit(i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def time_sync_batcher(fn: Callable[[list[int]], Any]) -> float:
    def once() -> float:
        with SyncBatcher(fn, max_size=MAX_SIZE, max_wait=0) as batcher:
            batcher.submit(-1)  # start the loop thread outside the timing
            return run_threads(batcher.submit)

    return best_of(once)


def identity(items: list[int]) -> list[int]:
    return items


async def async_identity(items: list[int]) -> list[int]:
    return items


def time_pool_floor() -> float:
    def one(item: int) -> int:
        return item

    def once() -> float:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(one, -1).result()
            return run_threads(lambda item: pool.submit(one, item).result())

    return best_of(once)


def sync_results() -> dict[str, Any]:
    total = THREADS * PER_THREAD
    sync_s = time_sync_batcher(identity)
    async_s = time_sync_batcher(async_identity)
    floor_s = time_pool_floor()
    return {
        "threads": THREADS,
        "items": total,
        "thread_pool_floor_items_per_s": round(total / floor_s),
        "sync_fn_items_per_s": round(total / sync_s),
        "sync_fn_ratio_time": round(sync_s / floor_s, 3),
        "async_fn_items_per_s": round(total / async_s),
        "async_fn_ratio_time": round(async_s / floor_s, 3),
    }


def main() -> None:
    report = {
        "benchmark": "dataloader",
        "loads": LOADS,
        "distinct_keys": DISTINCT,
        "max_size": MAX_SIZE,
        "rounds": ROUNDS,
        "dataloader_vs_aiodataloader": dataloader_results(),
        "gather_floor_one_future_per_load_us": round(time_one_future_per_load() / LOADS * 1e6, 3),
        "sync_batcher_8_threads": sync_results(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
