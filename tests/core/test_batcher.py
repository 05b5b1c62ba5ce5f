"""Batcher: every option and method of DESIGN §1, on virtual loop time (looptime)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from batchwork import Batcher, BatcherStats, BatchInfo, KeyConfig, Retry
from batchwork.errors import BatcherClosed, BatchResultError, BatchTimeout, QueueFull

from .conftest import Recorder, now

pytestmark = pytest.mark.looptime


# -- flushing ---------------------------------------------------------------------------


async def test_full_batches_flush_at_once_and_the_rest_after_max_wait() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=3, max_wait=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(7)))
    assert results == [i * 10 for i in range(7)]
    assert fn.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert fn.times == [0.0, 0.0, 0.05]
    await batcher.close()


async def test_age_is_timed_from_the_oldest_pending_item() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=10, max_wait=0.05)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.03)
    second = asyncio.create_task(batcher.submit(2))
    assert await first == 10
    assert await second == 20
    assert fn.batches == [[1, 2]]
    assert fn.times == [0.05]
    await batcher.close()


async def test_max_wait_zero_batches_one_loop_tick() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=100, max_wait=0)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert await batcher.submit(9) == 90
    assert fn.batches == [[0, 1, 2, 3, 4], [9]]
    assert fn.times == [0.0, 0.0]
    await batcher.close()


async def test_next_tick_batches_reach_fn_in_the_order_they_were_taken() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=4, max_wait=0, max_concurrency=3)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(9)]
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(9)]
    assert fn.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    await batcher.close()


async def test_min_size_flushes_greedily_and_stragglers_after_max_wait() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=10, min_size=3, max_wait=1.0)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 10, 20]
    assert fn.times == [0.0]
    assert await asyncio.gather(*(batcher.submit(i) for i in range(2))) == [0, 10]
    assert fn.batches == [[0, 1, 2], [0, 1]]
    assert fn.times == [0.0, 1.0]
    await batcher.close()


async def test_items_arriving_while_a_batch_waits_join_it_up_to_max_size() -> None:
    fn = Recorder()
    batcher = Batcher(fn, max_size=4, max_wait=1.0)
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(batcher.submit(i)))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    assert fn.batches == [[0, 1, 2, 3], [4, 5]]
    assert fn.times == [0.3, 1.4]
    await batcher.close()


async def test_max_concurrency_bounds_batches_in_flight_per_key() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=1, max_wait=0, max_concurrency=2)
    await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert fn.peak == 2
    assert now() == 3.0
    await batcher.close()


async def test_backlog_waiting_for_a_slot_leaves_in_full_batches_in_order() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=2, max_wait=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [i * 10 for i in range(5)]
    assert fn.batches == [[0, 1], [2, 3], [4]]
    assert fn.times == [0.0, 1.0, 2.0]
    await batcher.close()


async def test_flush_sends_pending_items_now_and_waits_for_them() -> None:
    fn = Recorder(delay=0.2)
    batcher = Batcher(fn, max_size=10, max_wait=5.0)
    task = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.1)
    await batcher.flush()
    assert fn.times == [0.1]
    assert now() == pytest.approx(0.3)
    assert task.done()
    assert await task == 10
    await batcher.close()


async def test_flush_on_an_unused_batcher_does_nothing() -> None:
    batcher = Batcher(Recorder())
    await batcher.flush()
    assert batcher.stats.batches == 0


# -- results ----------------------------------------------------------------------------


async def test_an_exception_entry_fails_only_its_caller_with_that_instance() -> None:
    boom = ValueError("boom")

    async def fn(items: list[int]) -> list[int | BaseException]:
        return [boom if item == 2 else item for item in items]

    batcher = Batcher(fn, max_wait=0)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results == [0, 1, boom, 3]
    assert results[2] is boom
    assert batcher.stats.item_errors == 1
    await batcher.close()


async def test_a_raise_fails_every_caller_of_the_batch() -> None:
    boom = RuntimeError("down")

    async def fn(items: list[int]) -> list[int]:
        raise boom

    batcher = Batcher(fn, max_wait=0)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(result is boom for result in results)
    stats = batcher.stats
    assert (stats.errors, stats.item_errors, stats.batches) == (1, 3, 1)
    await batcher.close()


@pytest.mark.parametrize(
    ("returned", "got"),
    [([1, 2], 2), ([1, 2, 3, 4], 4), (None, None), (42, None), ("abc", None), ({0: 1}, None)],
)
async def test_wrong_shape_gives_every_caller_batch_result_error(
    returned: object, got: int | None
) -> None:
    async def fn(items: list[int]) -> Any:
        return returned

    batcher = Batcher(fn, max_wait=0)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(result, BatchResultError) for result in results)
    error = results[0]
    assert isinstance(error, BatchResultError)
    assert (error.expected, error.got) == (3, got)
    assert "3" in str(error)
    if got is not None:
        assert str(got) in str(error)
    await batcher.close()


async def test_sized_non_list_results_are_accepted() -> None:
    async def fn(items: list[int]) -> Sequence[int]:
        return range(len(items))

    batcher = Batcher(fn, max_wait=0)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 1, 2]
    await batcher.close()


async def test_results_by_id_go_to_their_own_callers() -> None:
    async def fn(items: list[int]) -> Mapping[Hashable, int]:
        answers = {item: item * 10 for item in items if item != 3}
        answers[99] = -1  # an id no item has
        return dict(reversed(list(answers.items())))

    batcher = Batcher(fn, max_wait=0, id_of=lambda item: item)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert results[:3] == [0, 10, 20]
    assert results[4] == 40
    missing = results[3]
    assert isinstance(missing, BatchResultError)
    assert (missing.expected, missing.got) == (5, 4)
    assert "3" in str(missing)
    assert batcher.stats.unknown_ids == 1
    await batcher.close()


async def test_a_failing_id_of_fails_only_its_item() -> None:
    def id_of(item: int) -> int:
        if item == 1:
            raise KeyError("no id")
        return item

    async def fn(items: list[int]) -> dict[int, int]:
        return {item: item for item in items if item != 1}

    batcher = Batcher(fn, max_wait=0, id_of=id_of)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert results[0] == 0
    assert isinstance(results[1], KeyError)
    assert results[2] == 2
    await batcher.close()


async def test_submit_many_keeps_order_and_raises_the_first_failure() -> None:
    async def fn(items: list[int]) -> list[int | BaseException]:
        return [ValueError(item) if item in (3, 5) else item for item in items]

    batcher = Batcher(fn, max_size=2, max_wait=0)
    assert await batcher.submit_many([0, 1, 2]) == [0, 1, 2]
    with pytest.raises(ValueError, match="3"):
        await batcher.submit_many(range(6))
    mixed = await batcher.submit_many(range(6), return_exceptions=True)
    assert [str(x) if isinstance(x, ValueError) else x for x in mixed] == [0, 1, 2, "3", 4, "5"]
    assert await batcher.submit_many([]) == []
    await batcher.close()


async def test_submit_many_raises_the_first_failure_by_position_not_by_time() -> None:
    async def fn(items: list[int]) -> list[int | BaseException]:
        if 0 in items:
            await asyncio.sleep(1.0)  # the batch holding the earlier failure ends last
        return [ValueError(item) if item in (1, 2) else item for item in items]

    batcher = Batcher(fn, max_size=2, max_wait=0, max_concurrency=2)
    with pytest.raises(ValueError, match="1"):
        await batcher.submit_many(range(4))
    assert batcher.stats.item_errors == 2
    await batcher.close()


# -- timeout and retry ---------------------------------------------------------------------


async def test_timeout_gives_batch_timeout() -> None:
    fn = Recorder(delay=10.0)
    batcher = Batcher(fn, max_wait=0, timeout=1.0)
    with pytest.raises(BatchTimeout, match=r"timeout=1\.0"):
        await batcher.submit(1)
    assert now() == 1.0
    assert batcher.stats.timeouts == 1
    await batcher.close()


async def test_retry_backs_off_exponentially_and_succeeds() -> None:
    attempts: list[float] = []

    async def flaky(items: list[int]) -> list[int]:
        attempts.append(now())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return items

    infos: list[BatchInfo] = []
    retry = Retry(attempts=3, backoff=0.1, jitter=False)
    batcher = Batcher(flaky, max_wait=0, retry=retry, on_batch=infos.append)
    assert await batcher.submit(7) == 7
    assert attempts == [0.0, 0.1, 0.3]
    assert infos[0].attempts == 3
    assert infos[0].error is None
    assert batcher.stats.retries == 2
    await batcher.close()


async def test_retry_exhausted_gives_the_last_exception_itself() -> None:
    raised: list[Exception] = []

    async def failing(items: list[int]) -> list[int]:
        raised.append(OSError(len(raised)))
        raise raised[-1]

    infos: list[BatchInfo] = []
    batcher = Batcher(
        failing, max_wait=0, retry=Retry(attempts=3, backoff=0.0), on_batch=infos.append
    )
    with pytest.raises(OSError) as caught:
        await batcher.submit(1)
    assert len(raised) == 3
    assert caught.value is raised[-1]
    assert infos[0].attempts == 3
    assert infos[0].error is raised[-1]
    await batcher.close()


async def test_a_timed_out_call_counts_as_an_attempt_and_is_retried() -> None:
    calls: list[float] = []

    async def slow_then_fast(items: list[int]) -> list[int]:
        calls.append(now())
        if len(calls) == 1:
            await asyncio.sleep(5)
        return items

    retry = Retry(attempts=2, backoff=0.5, jitter=False, on=(BatchTimeout,))
    batcher = Batcher(slow_then_fast, max_wait=0, timeout=1.0, retry=retry)
    assert await batcher.submit(3) == 3
    assert calls == [0.0, 1.5]
    await batcher.close()


async def test_retry_on_filters_exceptions() -> None:
    calls = 0

    async def fn(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        raise KeyError("not retried")

    batcher = Batcher(fn, max_wait=0, retry=Retry(attempts=5, on=(ConnectionError,)))
    with pytest.raises(KeyError):
        await batcher.submit(1)
    assert calls == 1
    await batcher.close()


async def test_a_wrong_shape_is_not_retried() -> None:
    calls = 0

    async def fn(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        return []

    batcher = Batcher(fn, max_wait=0, retry=Retry(attempts=3, backoff=0))
    with pytest.raises(BatchResultError):
        await batcher.submit(1)
    assert calls == 1
    await batcher.close()


# -- backpressure ---------------------------------------------------------------------


async def test_submit_waits_for_room_and_put_raises_queue_full() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=2, max_wait=0, max_pending=2)
    first = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
    await asyncio.sleep(0)  # batch [0, 1] is now in fn: the queue is empty again
    queued = [asyncio.create_task(batcher.submit(i)) for i in range(2, 5)]
    await asyncio.sleep(0.5)
    assert batcher.stats.pending == 2  # item 4 waits for room
    with pytest.raises(QueueFull, match="max_pending=2"):
        batcher.put(9)
    assert batcher.stats.rejected == 1
    assert await asyncio.gather(*first, *queued) == [0, 10, 20, 30, 40]
    assert fn.batches == [[0, 1], [2, 3], [4]]
    await batcher.close()


async def test_submit_many_larger_than_max_pending_feeds_in_as_room_appears() -> None:
    fn = Recorder(delay=0.1)
    batcher = Batcher(fn, max_size=3, max_wait=0.01, max_pending=4)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, batcher.stats.pending)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    many = asyncio.create_task(batcher.submit_many(range(20)))
    await asyncio.sleep(0.15)  # after the first wake of submit_many, which was alone
    others = [asyncio.create_task(batcher.submit(i)) for i in range(100, 103)]
    assert await many == [i * 10 for i in range(20)]
    assert await asyncio.gather(*others) == [1000, 1010, 1020]
    watcher.cancel()
    assert peak == 4
    sent = sorted(item for batch in fn.batches for item in batch)
    assert sent == [*range(20), 100, 101, 102]
    assert max(len(batch) for batch in fn.batches) <= 3
    await batcher.close()


async def test_cancelled_room_waiter_passes_its_turn_on() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=1, max_wait=0, max_pending=1)
    running = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    queued = asyncio.create_task(batcher.submit(1))
    waiting = asyncio.create_task(batcher.submit(2))
    last = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0.1)
    waiting.cancel()
    assert list(await asyncio.gather(running, queued, last)) == [0, 10, 30]
    assert [2] not in fn.batches
    await batcher.close()


# -- keys -------------------------------------------------------------------------------


async def test_keys_batch_apart_with_their_own_config_and_fn() -> None:
    default = Recorder()
    audit = Recorder(answer=lambda item: -item)
    batcher = Batcher(
        default,
        max_size=10,
        max_wait=0.05,
        keys={"audit": KeyConfig(fn=audit, max_size=2, max_wait=1.0)},
    )
    results = await asyncio.gather(
        batcher.submit(1),
        batcher.submit(2, key="audit"),
        batcher.submit(3, key="other"),
        batcher.submit(4, key="audit"),
        batcher.submit(5, key="audit"),
    )
    assert list(results) == [10, -2, 30, -4, -5]
    assert default.batches == [[1], [3]]
    assert default.times == [0.05, 0.05]
    assert audit.batches == [[2, 4], [5]]
    assert audit.times == [0.0, 1.0]
    await batcher.close()


async def test_key_config_overrides_none_values_and_inherits_the_rest() -> None:
    fn = Recorder(delay=5.0)
    batcher = Batcher(
        fn,
        max_wait=0,
        timeout=1.0,
        keys={"patient": KeyConfig(timeout=None)},
    )
    with pytest.raises(BatchTimeout):
        await batcher.submit(1)
    assert await batcher.submit(2, key="patient") == 20
    await batcher.close()


async def test_groups_of_unlisted_keys_go_away_when_idle() -> None:
    batcher = Batcher(Recorder(), max_wait=0)
    for tenant in range(50):
        assert await batcher.submit(tenant, key=f"tenant-{tenant}") == tenant * 10
    assert batcher.stats.keys <= 1
    await batcher.close()


# -- put, callbacks, on_batch --------------------------------------------------------------


async def test_put_delivers_to_callback_or_on_result() -> None:
    seen: list[tuple[str, int, object]] = []

    async def fn(items: list[int]) -> list[int | BaseException]:
        return [ValueError("odd") if item % 2 else item for item in items]

    batcher = Batcher(
        fn, max_wait=0.01, on_result=lambda item, outcome: seen.append(("default", item, outcome))
    )
    batcher.put(2)
    batcher.put(3)
    batcher.put(4, callback=lambda item, outcome: seen.append(("own", item, outcome)))
    await batcher.flush()
    assert seen[0] == ("default", 2, 2)
    assert seen[1][:2] == ("default", 3)
    assert isinstance(seen[1][2], ValueError)
    assert seen[2] == ("own", 4, 4)
    await batcher.close()


async def test_async_put_callbacks_are_awaited_before_close_returns() -> None:
    done: list[int] = []

    async def callback(item: int, outcome: object) -> None:
        await asyncio.sleep(1.0)
        done.append(item)

    batcher = Batcher(Recorder(), max_wait=0.01)
    batcher.put(1, callback=callback)
    await batcher.close()
    assert done == [1]


async def test_put_items_hear_cancelled_error_when_their_batch_task_is_cancelled() -> None:
    outcomes: list[tuple[str, int, object]] = []
    running: list[asyncio.Task[Any]] = []
    infos: list[BatchInfo] = []

    async def fn(items: list[int]) -> list[int]:
        task = asyncio.current_task()
        assert task is not None
        running.append(task)
        await asyncio.sleep(10.0)
        return items

    batcher = Batcher(
        fn,
        max_size=3,
        max_wait=0.01,
        on_batch=infos.append,
        on_result=lambda item, outcome: outcomes.append(("default", item, outcome)),
    )
    batcher.put(1)
    batcher.put(2, callback=lambda item, outcome: outcomes.append(("own", item, outcome)))
    caller = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(1.0)
    running[0].cancel()  # by something other than the batcher
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert [(who, item) for who, item, _ in outcomes] == [("default", 1), ("own", 2)]
    assert all(isinstance(outcome, asyncio.CancelledError) for _, _, outcome in outcomes)
    assert len(infos) == 1
    assert isinstance(infos[0].error, asyncio.CancelledError)
    assert batcher.stats.in_flight == 0
    assert await batcher.submit(4) == 4  # the batcher carries on
    await batcher.close()


def test_loop_shutdown_mid_batch_still_answers_put_callbacks() -> None:
    outcomes: list[object] = []
    late: list[object] = []

    async def late_callback(item: int, outcome: object) -> None:
        await asyncio.sleep(0)
        late.append(outcome)

    async def main() -> None:
        started = asyncio.Event()

        async def fn(items: list[int]) -> list[int]:
            started.set()
            await asyncio.Event().wait()  # never answers: the loop shuts down first
            return items

        batcher = Batcher(fn, max_size=2, max_wait=0)
        batcher.put(1, callback=lambda item, outcome: outcomes.append(outcome))
        batcher.put(2, callback=late_callback)
        await started.wait()
        # main returns without closing the batcher: asyncio.run cancels the batch task

    asyncio.run(main())
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert len(late) == 1  # an async callback is awaited before the task ends
    assert isinstance(late[0], asyncio.CancelledError)


async def test_put_callbacks_returning_none_skip_the_awaitable_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[object] = []

    def counting_isawaitable(value: object) -> bool:
        checked.append(value)
        return inspect.isawaitable(value)

    monkeypatch.setattr(
        "batchwork._batch_answers.inspect", SimpleNamespace(isawaitable=counting_isawaitable)
    )
    seen: list[object] = []
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    batcher = Batcher(Recorder(), max_wait=0.01, on_result=lambda item, outcome: seen.append(item))
    batcher.put(1)  # on_result returns None: no check
    batcher.put(2, callback=lambda item, outcome: item)  # a plain value: checked, not awaited
    batcher.put(3, callback=lambda item, outcome: done)  # a future: checked and awaited
    await batcher.close()
    assert seen == [1]
    assert checked == [2, done]


async def test_callback_errors_are_logged_and_never_stop_the_batcher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_callback(item: int, outcome: object) -> None:
        raise RuntimeError("callback broke")

    def bad_on_batch(info: BatchInfo) -> None:
        raise RuntimeError("on_batch broke")

    async def fn(items: list[int]) -> list[int | BaseException]:
        return [ValueError("unheard") if item == 3 else item for item in items]

    batcher = Batcher(fn, max_wait=0, on_batch=bad_on_batch)
    with caplog.at_level(logging.ERROR, logger="batchwork"):
        batcher.put(1, callback=bad_callback)
        batcher.put(3)  # fails, and nobody listens: logged
        assert await batcher.submit(2) == 2
        await batcher.flush()
        assert await batcher.submit(4) == 4
    messages = [record.getMessage() for record in caplog.records]
    assert any("callback" in message for message in messages)
    assert any("on_batch" in message for message in messages)
    assert any("failed and has no callback" in message for message in messages)
    assert all(record.exc_info for record in caplog.records)
    assert all(record.name == "batchwork" for record in caplog.records)
    await batcher.close()


async def test_on_batch_reports_each_batch_with_a_unique_id() -> None:
    infos: list[BatchInfo] = []
    fn = Recorder(delay=0.25)
    batcher = Batcher(fn, max_size=2, max_wait=0.1, max_concurrency=2, on_batch=infos.append)
    await asyncio.gather(*(batcher.submit(i, key="k") for i in range(3)))
    assert len(infos) == 2
    assert len({info.id for info in infos}) == 2
    full, partial = sorted(infos, key=lambda info: info.size, reverse=True)
    assert (full.key, full.size, full.attempts, full.reason) == ("k", 2, 1, "size")
    assert full.waited == 0.0
    assert full.duration == pytest.approx(0.25)
    assert (partial.size, partial.reason, partial.error) == (1, "age", None)
    assert partial.waited == pytest.approx(0.1)
    await batcher.close()


# -- stats --------------------------------------------------------------------------------


async def test_stats_is_a_frozen_snapshot() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=2, max_wait=0.5)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.1)
    during = batcher.stats
    assert isinstance(during, BatcherStats)
    assert (during.items, during.pending, during.in_flight) == (3, 1, 1)
    with pytest.raises(AttributeError):
        during.items = 0  # type: ignore[misc]
    await asyncio.gather(*tasks)
    after = batcher.stats
    assert (after.items, after.batches, after.mean_size) == (3, 2, 1.5)
    assert (after.pending, after.in_flight, after.errors) == (0, 0, 0)
    # Items 0 and 1 left at once; item 2 was due at 0.5 s but waited for the slot (1 s).
    assert after.wait_p50 == 0.0
    assert after.wait_p99 == pytest.approx(1.0)
    await batcher.close()


# -- sync functions, loops, lifecycle ---------------------------------------------------------


async def test_a_plain_def_runs_in_the_executor() -> None:
    import threading

    threads: list[str] = []

    def blocking(items: list[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [item + 1 for item in items]

    with ThreadPoolExecutor(thread_name_prefix="bw-test") as pool:
        batcher = Batcher(blocking, max_wait=0, executor=pool)
        assert list(await asyncio.gather(batcher.submit(1), batcher.submit(2))) == [2, 3]
        await batcher.close()
    assert threads
    assert threads[0].startswith("bw-test")


def test_construction_needs_no_running_loop() -> None:
    batcher = Batcher(Recorder(), max_size=5)
    assert not batcher.closed
    assert batcher.stats == BatcherStats()


def test_use_from_a_second_loop_raises_runtime_error() -> None:
    batcher: Batcher[int, object] = Batcher(Recorder(), max_wait=0)
    assert asyncio.run(batcher.submit(1)) == 10
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(batcher.submit(2))


async def test_async_with_drains_on_exit() -> None:
    fn = Recorder()
    async with Batcher(fn, max_size=10, max_wait=60.0) as batcher:
        task = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0)
    assert batcher.closed
    assert await task == 10
    assert now() == 0.0


async def test_close_twice_and_close_unused_are_harmless() -> None:
    unused = Batcher(Recorder())
    await unused.close()
    await unused.close(drain=False)
    with pytest.raises(BatcherClosed):
        await unused.submit(1)
    used = Batcher(Recorder(), max_wait=0)
    assert await used.submit(1) == 10
    await used.close()
    await used.close()


async def test_close_without_drain_fails_pending_and_keeps_in_flight_outcomes() -> None:
    fn = Recorder(delay=1.0)
    outcomes: list[object] = []
    batcher = Batcher(fn, max_size=1, max_wait=0)
    in_flight = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    pending = asyncio.create_task(batcher.submit(2))
    batcher.put(3, callback=lambda item, outcome: outcomes.append(outcome))
    await asyncio.sleep(0)
    await batcher.close(drain=False)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], BatcherClosed)
    assert await in_flight == 10
    with pytest.raises(BatcherClosed):
        await pending
    assert fn.batches == [[1]]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_size": 0}, "max_size"),
        ({"max_wait": -0.1}, "max_wait"),
        ({"max_wait": float("nan")}, "max_wait"),
        ({"min_size": 0}, "min_size"),
        ({"min_size": 11, "max_size": 10}, "min_size"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"max_pending": 0}, "max_pending"),
        ({"keys": {"a": KeyConfig(max_size=0)}}, "keys['a'].max_size"),
        ({"keys": {"a": KeyConfig(min_size=500)}}, "keys['a'].min_size"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        Batcher(Recorder(), **options)


async def test_next_tick_items_gather_while_every_slot_is_busy() -> None:
    fn = Recorder(delay=1.0)
    batcher = Batcher(fn, max_size=10, max_wait=0)
    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(batcher.submit(i)))
        await asyncio.sleep(0.1)
    assert await asyncio.gather(*tasks) == [0, 10, 20, 30]
    assert fn.batches == [[0], [1, 2, 3]]
    assert fn.times == [0.0, 1.0]
    await batcher.close()


async def test_close_without_drain_awaits_async_put_callbacks() -> None:
    outcomes: list[object] = []

    async def callback(item: int, outcome: object) -> None:
        await asyncio.sleep(0.5)
        outcomes.append(outcome)

    batcher = Batcher(Recorder(), max_wait=10.0)
    batcher.put(1, callback=callback)
    await batcher.close(drain=False)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], BatcherClosed)
    assert now() == 0.5
