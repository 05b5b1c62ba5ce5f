"""Chaos: many submissions, random cancellations, failing batches, a close midway.

``BATCHWORK_CHAOS_N`` sets the number of submissions (100,000 by default; ``make bench``
runs 10**6). Every caller must be settled exactly once and nothing may hang.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import pytest

from batchwork import Batcher, KeyConfig
from batchwork.errors import BatcherClosed

pytestmark = pytest.mark.looptime

CHAOS_N = int(os.environ.get("BATCHWORK_CHAOS_N", "100000"))
WAVE = 2000


class Chaos(Exception):
    """A whole batch failed on purpose."""


class ItemChaos(Exception):
    """One item failed on purpose (an exception entry)."""


async def test_chaos_every_caller_settled_exactly_once_and_nothing_hangs() -> None:
    rng = random.Random(20261122)
    processed: Counter[int] = Counter()
    failed_batches: set[int] = set()

    async def fn(items: list[int]) -> list[int | BaseException]:
        roll = rng.random()
        if roll < 0.02:
            await asyncio.sleep(rng.random() * 0.01)
        processed.update(items)
        if roll < 0.01:
            failed_batches.update(items)
            raise Chaos(len(items))
        return [ItemChaos(item) if item % 101 == 0 else item for item in items]

    batcher = Batcher(
        fn,
        max_size=64,
        max_wait=0.001,
        max_concurrency=3,
        max_pending=20_000,
        keys={"slow": KeyConfig(max_wait=0.005, min_size=8), "tick": KeyConfig(max_wait=0)},
    )
    put_outcomes: Counter[int] = Counter()
    keys = [None, "slow", "tick", "other"]
    tasks: dict[int, asyncio.Task[int]] = {}
    put_items: list[int] = []
    closing: asyncio.Task[None] | None = None

    def record(item: int, outcome: object) -> None:
        put_outcomes[item] += 1

    settled = Counter[str]()

    def check(item: int, task: asyncio.Task[int]) -> None:
        if task.cancelled():
            settled["cancelled"] += 1
            return
        error = task.exception()
        if error is None:
            assert task.result() == item  # its own result, never someone else's
            assert processed[item] == 1
            settled["ok"] += 1
        elif isinstance(error, ItemChaos):
            assert error.args == (item,)
            settled["item error"] += 1
        elif isinstance(error, Chaos):
            assert item in failed_batches
            settled["batch error"] += 1
        else:
            assert isinstance(error, BatcherClosed)
            assert processed[item] == 0
            settled["closed"] += 1

    def sweep() -> None:
        # Check finished callers as we go, so 10**6 of them never sit in memory at once.
        for item in [item for item, task in tasks.items() if task.done()]:
            check(item, tasks.pop(item))

    submitted = 0
    async with asyncio.timeout(3600):  # virtual time: a deadlock would jump here
        for item in range(CHAOS_N):
            key = keys[item % 4]
            if item % 10 == 7:
                try:
                    batcher.put(item, key=key, callback=record)
                    put_items.append(item)
                except BatcherClosed:
                    pass
            else:
                tasks[item] = asyncio.create_task(batcher.submit(item, key=key))
                submitted += 1
            if item % WAVE == WAVE - 1:
                # Cancel about 10% of the callers of this wave, some before they even ran.
                for victim in rng.sample(range(item - WAVE + 1, item + 1), WAVE // 10):
                    if victim in tasks:
                        tasks[victim].cancel()
                await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))
                sweep()
            if item == CHAOS_N // 2:
                closing = asyncio.create_task(batcher.close())
        assert closing is not None
        await closing
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    sweep()

    assert not tasks
    assert sum(settled.values()) == submitted
    assert all(count == 1 for count in processed.values())  # no item sent twice
    assert set(put_outcomes) == set(put_items)
    assert all(count == 1 for count in put_outcomes.values())
    stats = batcher.stats
    assert (stats.pending, stats.in_flight) == (0, 0)
    assert settled["ok"] > 0
    assert settled["cancelled"] > 0
    assert settled["closed"] > 0
    assert settled["batch error"] > 0
