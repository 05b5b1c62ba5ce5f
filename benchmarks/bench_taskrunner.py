"""TaskRunner overhead against the floor that asyncio itself sets.

* ``flat``: 10,000 no-op coroutines, concurrency 64, results in push order. The floor is
  ``asyncio.gather`` over tasks that each hold an ``asyncio.Semaphore(64)``; aiometer's
  ``run_all`` and ``batchwork.map`` are measured in the same process.
* ``chains``: a forest of 10 dependency chains (each task needs the one before it),
  1k / 10k / 100k tasks; per-task microseconds should stay flat (linear scheduling).

Times are the process's CPU seconds (``time.process_time``): every variant runs on one
thread, and CPU time is what other processes on a busy machine disturb least. Each figure
is the best of several rounds, the rounds interleaving the variants.
Run: ``python -m benchmarks taskrunner`` (prints JSON).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiometer

import batchwork
from batchwork import TaskRunner

FLAT_TASKS = 10_000
CONCURRENCY = 64
CHAIN_WIDTH = 10
ROUNDS = 12


async def noop(i: int) -> int:
    return i


async def chain_step(*args: int) -> int:
    return args[0] + 1 if args else 0


async def floor_gather(n: int) -> list[int]:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> int:
        async with sem:
            return await noop(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def taskrunner_flat(n: int) -> list[int]:
    runner = TaskRunner(concurrency=CONCURRENCY)
    for i in range(n):
        runner.push(noop, i)
    return await runner.start()


async def map_flat(n: int) -> list[int]:
    return await batchwork.map(noop, range(n), concurrency=CONCURRENCY)


async def aiometer_flat(n: int) -> list[int]:
    return await aiometer.run_all([partial(noop, i) for i in range(n)], max_at_once=CONCURRENCY)


async def taskrunner_chains(n: int) -> list[int]:
    runner = TaskRunner(concurrency=CONCURRENCY)
    last: list[Any] = [None] * CHAIN_WIDTH
    for i in range(n):
        lane = i % CHAIN_WIDTH
        previous = last[lane]
        last[lane] = runner.push(chain_step, needs=() if previous is None else [previous])
    return await runner.start()


async def timed(make: Callable[[int], Awaitable[list[int]]], n: int) -> float:
    gc.collect()
    started = time.process_time()
    results = await make(n)
    elapsed = time.process_time() - started
    assert len(results) == n
    return elapsed


async def best_of(
    variants: dict[str, Callable[[int], Awaitable[list[int]]]], n: int
) -> dict[str, float]:
    """Best time of each variant. Rounds interleave the variants, each round in a rotated
    order, so that a noisy spell or the after-effects of the previous variant hit all of
    them alike."""
    best = dict.fromkeys(variants, float("inf"))
    names = list(variants)
    for round_ in range(ROUNDS):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            best[name] = min(best[name], await timed(variants[name], n))
    return best


async def measure() -> dict[str, Any]:
    flat = await best_of(
        {
            "gather_semaphore_floor": floor_gather,
            "taskrunner": taskrunner_flat,
            "batchwork_map": map_flat,
            "aiometer_run_all": aiometer_flat,
        },
        FLAT_TASKS,
    )
    floor = flat["gather_semaphore_floor"]
    chains = {
        n: (await best_of({"chains": taskrunner_chains}, n))["chains"]
        for n in (1_000, 10_000, 100_000)
    }
    assert (await taskrunner_chains(1_000))[-1] == 1_000 // CHAIN_WIDTH - 1
    return {
        "benchmark": "taskrunner",
        "flat": {
            "tasks": FLAT_TASKS,
            "concurrency": CONCURRENCY,
            "cpu_seconds": {name: round(value, 5) for name, value in flat.items()},
            "ratio_to_floor": {name: round(value / floor, 3) for name, value in flat.items()},
            "goal_ratio": 1.2,
        },
        "chains": {
            "width": CHAIN_WIDTH,
            "concurrency": CONCURRENCY,
            "per_task_us": {str(n): round(seconds / n * 1e6, 2) for n, seconds in chains.items()},
        },
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure()), indent=2))


if __name__ == "__main__":
    main()
