"""The bugs the seed systems had, one test each: none of them may come back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batchwork import Batcher, BatchInfo, KeyConfig
from batchwork.errors import BatcherClosed, BatchResultError, BatchTimeout

from .conftest import Recorder, now

pytestmark = pytest.mark.looptime


async def test_the_timer_keeps_working_after_the_first_flush() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=10, max_wait=0.2)
    assert await batcher.submit(1) == 10
    await asyncio.sleep(1.0)
    assert await batcher.submit(2) == 20
    assert await batcher.submit(3) == 30
    assert fn.times == [0.2, 1.4, 1.6]
    await batcher.close()


async def test_the_timer_keeps_working_after_a_size_flush() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=2, max_wait=0.2)
    await asyncio.gather(batcher.submit(1), batcher.submit(2))
    await asyncio.sleep(0.05)
    assert await batcher.submit(3) == 30
    assert fn.times == [0.0, 0.25]
    await batcher.close()


async def test_a_cancelled_caller_never_stalls_the_others_and_its_item_is_dropped() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=3, max_wait=0.1)
    keep = asyncio.create_task(batcher.submit(1))
    leave = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.01)
    leave.cancel()
    more = [asyncio.create_task(batcher.submit(i)) for i in (3, 4)]
    assert await asyncio.gather(keep, *more) == [10, 30, 40]
    assert fn.batches == [[1, 3, 4]]  # the dropped item made room: a full batch at once
    assert fn.times == [0.01]
    with pytest.raises(asyncio.CancelledError):
        await leave
    assert batcher.stats.dropped == 1
    assert batcher.stats.pending == 0
    await batcher.close()


async def test_a_caller_cancelled_during_fn_does_not_disturb_its_batch_mates() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=3, max_wait=0)
    leave = asyncio.create_task(batcher.submit(1))
    stay = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.5)
    leave.cancel()
    assert await stay == 20
    assert now() == 1.0
    assert batcher.stats.cancelled_batches == 0
    await batcher.close()


async def test_when_every_caller_is_gone_the_fn_call_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def fn(items: list[int]) -> list[int]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return items

    infos: list[BatchInfo] = []
    batcher = Batcher(fn, max_wait=0, on_batch=infos.append)
    callers = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(1)
    for caller in callers:
        caller.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    await batcher.flush()
    assert now() == 1.0
    assert infos[0].cancelled
    assert batcher.stats.cancelled_batches == 1
    assert batcher.stats.in_flight == 0
    assert await batcher.submit(5) == 5  # the slot is free again
    await batcher.close()


async def test_a_batch_holding_put_items_is_not_cancelled() -> None:
    fn = Recorder(delay=2.0)
    outcomes: list[object] = []
    batcher = Batcher(fn, max_wait=0.1)
    caller = asyncio.create_task(batcher.submit(1))
    batcher.put(2, callback=lambda item, outcome: outcomes.append(outcome))
    await asyncio.sleep(1)
    caller.cancel()
    await batcher.close()
    assert outcomes == [20]
    assert now() == 2.1


async def test_a_submit_many_caller_leaving_drops_its_queued_items() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=10, max_wait=1.0)
    many = asyncio.create_task(batcher.submit_many([1, 2, 3]))
    await asyncio.sleep(0.1)
    many.cancel()
    assert await batcher.submit(4) == 40
    assert fn.batches == [[4]]
    assert batcher.stats.dropped == 3
    await batcher.close()


async def test_a_processor_that_reorders_results_still_answers_each_caller() -> None:
    async def reordering(items: list[str]) -> dict[str, str]:
        return {item: item.upper() for item in sorted(items, reverse=True)}

    batcher = Batcher(reordering, max_wait=0, id_of=lambda item: item)
    words = ["b", "a", "d", "c"]
    assert await asyncio.gather(*(batcher.submit(word) for word in words)) == [
        "B",
        "A",
        "D",
        "C",
    ]
    await batcher.close()


async def test_one_slow_key_never_delays_another() -> None:
    slow = Recorder(delay=100.0)
    fast = Recorder()
    batcher = Batcher(
        fast, max_size=5, max_wait=0.01, keys={"slow": KeyConfig(fn=slow, max_concurrency=1)}
    )
    slow_calls = [asyncio.create_task(batcher.submit(i, key="slow")) for i in range(20)]
    await asyncio.sleep(0.5)
    assert await batcher.submit(1, key="fast") == 10
    assert await batcher.submit(2) == 20
    assert now() == pytest.approx(0.52)
    await batcher.close(drain=False)
    results = await asyncio.gather(*slow_calls, return_exceptions=True)
    assert results[:5] == [0, 10, 20, 30, 40]
    assert all(isinstance(result, BatcherClosed) for result in results[5:])


async def test_shutdown_drains_below_min_size_and_waits_for_batches_in_flight() -> None:
    fn = Recorder(delay=1.0)
    outcomes: list[object] = []
    batcher = Batcher(fn, max_size=10, min_size=5, max_wait=3600.0, max_concurrency=2)
    full = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0.5)
    stragglers = [asyncio.create_task(batcher.submit(i)) for i in range(5, 7)]
    await asyncio.sleep(0)
    batcher.put(7, callback=lambda item, outcome: outcomes.append(outcome))
    await batcher.close()
    assert now() == 1.5
    assert all(task.done() for task in full + stragglers)
    assert await asyncio.gather(*full, *stragglers) == [i * 10 for i in range(7)]
    assert outcomes == [70]
    assert fn.batches == [[0, 1, 2, 3, 4], [5, 6, 7]]


async def test_shutdown_drains_a_backlog_without_pacing() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=2, max_wait=10.0)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(7)]
    await asyncio.sleep(0)
    await batcher.close()
    assert now() == 0.0
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(7)]


@pytest.mark.parametrize("key", [None, "seen", "never-seen"])
async def test_submit_and_put_after_close_raise_batcher_closed(key: str | None) -> None:
    batcher = Batcher(Recorder(), max_wait=0)
    assert await batcher.submit(1, key="seen") == 10
    await batcher.close()
    with pytest.raises(BatcherClosed):
        await batcher.submit(2, key=key)
    with pytest.raises(BatcherClosed):
        await batcher.submit_many([2], key=key)
    with pytest.raises(BatcherClosed):
        batcher.put(2, key=key)


class Fatal(BaseException):
    """Not an Exception: must still reach the callers and leave the batcher working."""


async def test_the_batch_loop_survives_raise_garbage_and_hangs() -> None:
    behaviour: list[str] = ["raise", "garbage", "short", "hang", "base", "ok"]

    async def moody(items: list[int]) -> Any:
        what = behaviour.pop(0)
        if what == "raise":
            raise ZeroDivisionError("raise")
        if what == "garbage":
            return object()
        if what == "short":
            return items[:-1]
        if what == "hang":
            await asyncio.Event().wait()
        if what == "base":
            raise Fatal("a BaseException that is not an Exception")
        return items

    batcher = Batcher(moody, max_size=2, max_wait=0, timeout=5.0)
    with pytest.raises(ZeroDivisionError):
        await batcher.submit(1)
    with pytest.raises(BatchResultError):
        await batcher.submit(2)
    with pytest.raises(BatchResultError):
        await asyncio.gather(batcher.submit(3), batcher.submit(4))
    with pytest.raises(BatchTimeout):
        await batcher.submit(5)
    assert now() == 5.0
    with pytest.raises(Fatal):
        await batcher.submit(6)
    assert await batcher.submit(7) == 7
    assert batcher.stats.errors == 5
    await batcher.close()


async def test_sync_fn_that_raises_fails_its_batch_and_the_batcher_continues() -> None:
    calls = 0

    def sometimes(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first call fails")
        return items

    batcher = Batcher(sometimes, max_wait=0)
    with pytest.raises(ValueError, match="first call fails"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
    await batcher.close()
