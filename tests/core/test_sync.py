"""SyncBatcher: the blocking twin, from many threads, with a clean close."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable

import pytest

from batchwork import SyncBatcher
from batchwork.errors import BatcherClosed, QueueFull

DEADLINE = 20.0  # generous: only a hang reaches it


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.001)


def run_threads(n: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
        assert not t.is_alive(), "a submitting thread hung"


class Recorder:
    """A sync batch function that records batches; entries are ``f"r{item}"``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[str]:
        with self.lock:
            self.batches.append(list(items))
        return [f"r{i}" for i in items]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def test_many_threads_each_get_their_own_result(recorder: Recorder) -> None:
    results: dict[int, list[str]] = {}
    start = threading.Barrier(16)
    with SyncBatcher(recorder, max_size=32, max_wait=0.001) as batcher:

        def work(t: int) -> None:
            start.wait(timeout=DEADLINE)
            results[t] = [batcher.submit(t * 1000 + i) for i in range(200)]

        run_threads(16, work)
    assert results == {t: [f"r{t * 1000 + i}" for i in range(200)] for t in range(16)}
    items = sorted(i for batch in recorder.batches for i in batch)
    assert items == sorted(t * 1000 + i for t in range(16) for i in range(200))
    assert max(len(b) for b in recorder.batches) <= 32


def test_a_full_batch_leaves_at_once(recorder: Recorder) -> None:
    start = threading.Barrier(4)
    got: dict[int, str] = {}
    # max_wait is an hour: only reaching max_size can flush.
    with SyncBatcher(recorder, max_size=4, max_wait=3600) as batcher:

        def work(t: int) -> None:
            start.wait(timeout=DEADLINE)
            got[t] = batcher.submit(t)

        run_threads(4, work)
    assert got == {t: f"r{t}" for t in range(4)}
    assert [sorted(b) for b in recorder.batches] == [[0, 1, 2, 3]]


def test_async_fn_runs_on_the_helper_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def double(items: list[int]) -> list[int]:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return [2 * i for i in items]

    with SyncBatcher(double, max_size=10, max_wait=0.001, name="doubler") as batcher:
        assert batcher.submit(21) == 42
        assert batcher.submit_many([1, 2, 3]) == [2, 4, 6]
        assert threading.current_thread().name != "batchwork-doubler"
        assert any(t.name == "batchwork-doubler" for t in threading.enumerate())
    assert len(set(map(id, loops))) == 1


def test_exception_entry_fails_only_its_caller() -> None:
    def picky(items: list[int]) -> list[int | BaseException]:
        return [ValueError(i) if i < 0 else i for i in items]

    with SyncBatcher(picky, max_size=10, max_wait=0.001) as batcher:
        with pytest.raises(ValueError, match="-1"):
            batcher.submit(-1)
        assert batcher.submit(5) == 5


def test_submit_many_raises_the_first_failure_or_returns_them() -> None:
    def picky(items: list[int]) -> list[int | BaseException]:
        return [KeyError(i) if i < 0 else i for i in items]

    with SyncBatcher(picky, max_size=10, max_wait=0.001) as batcher:
        with pytest.raises(KeyError) as info:
            batcher.submit_many([1, -2, -3])
        assert info.value.args == (-2,)
        mixed = batcher.submit_many([1, -2], return_exceptions=True)
    assert mixed[0] == 1
    assert isinstance(mixed[1], KeyError)


def test_a_raise_reaches_every_caller_of_the_batch() -> None:
    def broken(items: list[int]) -> list[int]:
        raise RuntimeError("sink down")

    errors: list[BaseException] = []
    start = threading.Barrier(3)
    with SyncBatcher(broken, max_size=3, max_wait=3600) as batcher:

        def work(t: int) -> None:
            start.wait(timeout=DEADLINE)
            try:
                batcher.submit(t)
            except RuntimeError as exc:
                errors.append(exc)

        run_threads(3, work)
    assert len(errors) == 3
    assert all(str(e) == "sink down" for e in errors)


def test_close_joins_the_thread_and_later_calls_raise(recorder: Recorder) -> None:
    batcher = SyncBatcher(recorder, max_size=4, max_wait=0.001, name="closing")
    assert batcher.submit(1) == "r1"
    thread = next(t for t in threading.enumerate() if t.name == "batchwork-closing")
    batcher.close()
    assert not thread.is_alive()
    assert batcher.closed
    with pytest.raises(BatcherClosed):
        batcher.submit(2)
    with pytest.raises(BatcherClosed):
        batcher.submit_many([2, 3])
    with pytest.raises(BatcherClosed):
        batcher.put(2)
    batcher.flush()  # nothing pending: harmless
    batcher.close()  # twice: harmless
    assert batcher.stats.items == 1


def test_close_before_any_use(recorder: Recorder) -> None:
    batcher = SyncBatcher(recorder)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit(1)
    assert recorder.batches == []


def test_close_drains_put_items_and_runs_their_callbacks(recorder: Recorder) -> None:
    outcomes: list[tuple[int, object]] = []
    batcher = SyncBatcher(recorder, max_size=100, max_wait=3600)
    for i in range(5):
        batcher.put(i, callback=lambda item, outcome: outcomes.append((item, outcome)))
    batcher.close()
    assert sorted(outcomes) == [(i, f"r{i}") for i in range(5)]
    assert recorder.batches == [[0, 1, 2, 3, 4]]


def test_put_from_many_threads_reaches_every_callback(recorder: Recorder) -> None:
    outcomes: list[object] = []
    lock = threading.Lock()

    def callback(item: int, outcome: object) -> None:
        with lock:
            outcomes.append(outcome)

    batcher = SyncBatcher(recorder, max_size=16, max_wait=0.001)

    def work(t: int) -> None:
        for i in range(100):
            batcher.put(t * 100 + i, callback=callback)

    run_threads(8, work)
    batcher.close()
    assert sorted(outcomes, key=str) == sorted((f"r{i}" for i in range(800)), key=str)
    with pytest.raises(BatcherClosed):
        batcher.put(1)


def test_an_item_the_batcher_refuses_is_never_lost(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    batcher = SyncBatcher(recorder, max_wait=0.001)

    def refuse(item: int, **kwargs: object) -> None:
        raise RuntimeError(f"refused {item}")

    batcher.batcher.put = refuse  # type: ignore[method-assign]
    outcomes: list[object] = []
    batcher.put(1, callback=lambda item, outcome: outcomes.append(outcome))
    batcher.put(2)  # no callback: logged
    with pytest.raises(RuntimeError, match="refused 3"):
        batcher.submit(3)
    batcher.close()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], RuntimeError)
    assert "item 2 was refused" in caplog.text


def test_on_result_gets_put_items(recorder: Recorder) -> None:
    outcomes: list[tuple[int, object]] = []
    with SyncBatcher(
        recorder,
        max_size=100,
        max_wait=3600,
        on_result=lambda item, outcome: outcomes.append((item, outcome)),
    ) as batcher:
        batcher.put(1)
        batcher.put(2)
    assert outcomes == [(1, "r1"), (2, "r2")]


def test_close_without_drain_refuses_pending_items(recorder: Recorder) -> None:
    outcomes: list[object] = []
    batcher = SyncBatcher(recorder, max_size=100, max_wait=3600)
    batcher.put(1, callback=lambda item, outcome: outcomes.append(outcome))
    waiting: list[BaseException] = []

    def caller(_: int) -> None:
        try:
            batcher.submit(2)
        except BatcherClosed as exc:
            waiting.append(exc)

    thread = threading.Thread(target=caller, args=(0,))
    thread.start()
    wait_until(lambda: batcher.stats.pending == 2)
    batcher.close(drain=False)
    thread.join(timeout=DEADLINE)
    assert len(waiting) == 1
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], BatcherClosed)
    assert recorder.batches == []


def test_flush_sends_a_partial_batch_now(recorder: Recorder) -> None:
    done = threading.Event()
    with SyncBatcher(recorder, max_size=100, max_wait=3600) as batcher:
        batcher.put(1, callback=lambda item, outcome: done.set())
        batcher.put(2)
        batcher.flush()
        assert done.wait(timeout=DEADLINE)
        assert recorder.batches == [[1, 2]]


def test_stats_from_another_thread(recorder: Recorder) -> None:
    with SyncBatcher(recorder, max_size=2, max_wait=0.001) as batcher:
        assert batcher.stats.items == 0
        batcher.submit_many([1, 2, 3, 4])
        stats = batcher.stats
    assert stats.items == 4
    assert stats.batches == 2
    assert stats.pending == 0


def test_max_pending_makes_submitters_wait(recorder: Recorder) -> None:
    results: dict[int, list[str]] = {}
    with SyncBatcher(recorder, max_size=4, max_wait=0.001, max_pending=3) as batcher:

        def work(t: int) -> None:
            results[t] = [batcher.submit(t * 100 + i) for i in range(30)]

        run_threads(8, work)
        assert batcher.submit_many(range(10)) == [f"r{i}" for i in range(10)]
    assert results == {t: [f"r{t * 100 + i}" for i in range(30)] for t in range(8)}


def test_put_raises_queue_full(recorder: Recorder) -> None:
    with SyncBatcher(recorder, max_size=10, max_wait=3600, max_pending=1) as batcher:
        batcher.put(1)
        with pytest.raises(QueueFull):
            batcher.put(2)


def test_keys_are_batched_apart(recorder: Recorder) -> None:
    with SyncBatcher(recorder, max_size=10, max_wait=3600) as batcher:
        batcher.put(1, key="a")
        batcher.put(2, key="b")
        batcher.put(3, key="a")
        batcher.flush()
    assert sorted(recorder.batches) == [[1, 3], [2]]


def test_close_while_threads_submit_leaves_nobody_hanging(recorder: Recorder) -> None:
    batcher = SyncBatcher(recorder, max_size=8, max_wait=0.001)
    answered: list[str] = []
    refused: list[int] = []
    started = threading.Barrier(9)

    def work(t: int) -> None:
        started.wait(timeout=DEADLINE)
        for i in range(10_000):
            try:
                answered.append(batcher.submit(i))
            except BatcherClosed:
                refused.append(t)
                return

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    started.wait(timeout=DEADLINE)
    wait_until(lambda: len(answered) > 100)
    batcher.close()
    for t in threads:
        t.join(timeout=DEADLINE)
        assert not t.is_alive()
    assert len(refused) == 8
    assert batcher.stats.items == len(answered)


def test_blocking_calls_from_a_callback_are_refused() -> None:
    errors: list[BaseException] = []
    batcher: SyncBatcher[int, int] = SyncBatcher(lambda items: items, max_wait=3600)

    def callback(item: int, outcome: object) -> None:
        try:
            batcher.submit(item)
        except RuntimeError as exc:
            errors.append(exc)
        batcher.put(item + 100)  # put is allowed: it does not block

    done: list[object] = []
    batcher.put(1, callback=callback)
    batcher.flush()
    wait_until(lambda: len(errors) == 1)
    batcher.put(2, callback=lambda item, outcome: done.append(outcome))
    batcher.close()
    assert "deadlock" in str(errors[0])
    assert done == [2]
    assert batcher.stats.items == 3


def test_garbage_collection_stops_an_unclosed_batcher(recorder: Recorder) -> None:
    batcher = SyncBatcher(recorder, max_wait=0.001, name="forgotten")
    assert batcher.submit(1) == "r1"
    thread = next(t for t in threading.enumerate() if t.name == "batchwork-forgotten")
    del batcher
    gc.collect()
    thread.join(timeout=DEADLINE)
    assert not thread.is_alive()


def test_invalid_options_fail_in_the_constructor(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="max_size"):
        SyncBatcher(recorder, max_size=0)


def test_repr_and_batcher_attribute(recorder: Recorder) -> None:
    batcher = SyncBatcher(recorder, name="shown")
    assert "shown" in repr(batcher)
    assert "open" in repr(batcher)
    assert batcher.batcher is batcher.batcher
    batcher.close()
    assert "closed" in repr(batcher)
