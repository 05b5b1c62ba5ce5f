"""TaskRunner: the bounded pool, rate limit, results, errors, fail_fast, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, assert_type, cast

import pytest

import batchwork
from batchwork import Progress, Skipped, TaskHandle, TaskRunner
from batchwork._taskrunner import SkippedType
from batchwork.errors import DependencyFailed


async def settle() -> None:
    """Let every callback that is ready run (a handful of loop iterations)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Pool:
    """Async tasks that block on their own gate and record how many run at once."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.running = 0
        self.peak = 0

    async def task(self, i: int) -> int:
        self.started.append(i)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gates.setdefault(i, asyncio.Event()).wait()
        finally:
            self.running -= 1
        return i * 10

    def release(self, i: int) -> None:
        self.gates.setdefault(i, asyncio.Event()).set()


# -- the bounded pool --------------------------------------------------------------------


async def test_never_more_than_concurrency_run_and_the_limit_is_reached() -> None:
    pool = Pool()
    runner = TaskRunner(concurrency=3)
    for i in range(8):
        runner.push(pool.task, i)
    run = asyncio.ensure_future(runner.start())
    await settle()
    assert pool.started == [0, 1, 2]
    assert pool.running == 3
    pool.release(1)
    await settle()
    assert pool.started == [0, 1, 2, 3]  # one ended, exactly one more started
    assert pool.running == 3
    for i in range(8):
        pool.release(i)
    assert await run == [i * 10 for i in range(8)]
    assert pool.peak == 3


async def test_concurrency_one_runs_tasks_one_after_another_in_push_order() -> None:
    pool = Pool()
    runner = TaskRunner(concurrency=1)
    for i in range(4):
        pool.release(i)
        runner.push(pool.task, i)
    assert await runner.start() == [0, 10, 20, 30]
    assert pool.started == [0, 1, 2, 3]
    assert pool.peak == 1


async def test_sync_tasks_run_in_threads_up_to_the_limit() -> None:
    # Four tasks can only pass the barrier together: this needs four threads at once,
    # more than a small machine's default executor would give.
    barrier = threading.Barrier(4, timeout=10)
    threads: set[int] = set()

    def meet(i: int) -> int:
        threads.add(threading.get_ident())
        barrier.wait()
        return i

    runner = TaskRunner(concurrency=4)
    for i in range(4):
        runner.push(meet, i)
    assert await runner.start() == [0, 1, 2, 3]
    assert threading.get_ident() not in threads
    assert len(threads) == 4


@pytest.mark.looptime
async def test_rate_limit_spaces_starts_evenly() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def stamp() -> None:
        starts.append(loop.time())

    runner = TaskRunner(concurrency=10, rate_limit=4)
    for _ in range(5):
        runner.push(stamp)
    begin = loop.time()
    await runner.start()
    assert [t - begin for t in starts] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.looptime
async def test_rate_limit_builds_no_burst_credit_while_idle() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def stamp() -> None:
        starts.append(loop.time())

    async def producer() -> None:
        await asyncio.sleep(5)  # idle for 5 s, then three tasks at once
        for _ in range(3):
            runner.push(stamp)

    runner = TaskRunner(concurrency=10, rate_limit=2)
    runner.push(producer)
    begin = loop.time()
    await runner.start()
    assert [t - begin for t in starts] == pytest.approx([5.0, 5.5, 6.0])


# -- calling conventions -----------------------------------------------------------------


async def test_async_and_sync_callables_with_args_and_kwargs() -> None:
    async def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    def join(a: str, b: str, sep: str = "") -> str:
        return sep.join([a, b])

    class Doubler:
        async def __call__(self, x: int) -> int:
            return 2 * x

    runner = TaskRunner()
    runner.push(add, 1, 2, scale=10)
    runner.push(join, "a", "b", sep="-")
    runner.push(Doubler(), 21)
    assert await runner.start() == [30, "a-b", 42]


async def test_needs_results_come_first_positionally_in_needs_order() -> None:
    async def value(v: str) -> str:
        return v

    def combine(*parts: str, sep: str) -> str:
        return sep.join(parts)

    runner = TaskRunner()
    a = runner.push(value, "a")
    b = runner.push(value, "b")
    c = runner.push(combine, "x", "y", needs=[b, a], sep="+")
    await runner.start()
    assert c.result() == "b+a+x+y"


async def test_a_sync_raise_fails_only_that_task_and_never_hangs() -> None:
    def boom() -> None:
        raise KeyError("sync")

    async def takes_one(x: int) -> int:
        return x

    runner = TaskRunner(concurrency=1)
    bad_sync = runner.push(boom)
    bad_call = runner.push(takes_one)  # missing argument: raises when called
    good = runner.push(takes_one, 7)
    results = await asyncio.wait_for(runner.start(return_exceptions=True), 10)
    assert isinstance(results[0], KeyError)
    assert isinstance(results[1], TypeError)
    assert results[2] == 7
    assert [bad_sync.status, bad_call.status, good.status] == ["failed", "failed", "succeeded"]


async def test_context_variables_of_the_caller_reach_async_and_sync_tasks() -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-1")

    async def read_async() -> str:
        return request_id.get()

    def read_sync() -> str:
        return request_id.get()

    runner = TaskRunner()
    runner.push(read_async)
    runner.push(read_sync)
    assert await runner.start() == ["r-1", "r-1"]


# -- results and errors ------------------------------------------------------------------


@pytest.mark.looptime
async def test_results_in_push_order_whatever_the_completion_order() -> None:
    async def after(delay: float, value: str) -> str:
        await asyncio.sleep(delay)
        return value

    runner = TaskRunner(concurrency=3)
    for delay, value in [(3, "a"), (1, "b"), (2, "c")]:
        runner.push(after, delay, value)
    assert await runner.start() == ["a", "b", "c"]


@pytest.mark.looptime
async def test_failures_raise_a_group_only_after_every_other_task_ended() -> None:
    loop = asyncio.get_running_loop()

    async def fail_now() -> None:
        raise ValueError("first")

    async def slow() -> str:
        await asyncio.sleep(10)
        return "slow"

    async def fail_later() -> None:
        await asyncio.sleep(1)
        raise KeyError("second")

    runner = TaskRunner()
    runner.push(fail_now)
    slow_handle = runner.push(slow)
    runner.push(fail_later)
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    assert loop.time() == pytest.approx(10)
    assert slow_handle.result() == "slow"
    assert [type(e) for e in caught.value.exceptions] == [ValueError, KeyError]
    assert "2 of 3 tasks failed" in str(caught.value)


async def test_return_exceptions_puts_errors_in_the_list() -> None:
    async def fail() -> None:
        raise ValueError("x")

    async def ok() -> int:
        return 1

    runner = TaskRunner()
    runner.push(ok)
    runner.push(fail)
    results = await runner.start(return_exceptions=True)
    assert results[0] == 1
    assert isinstance(results[1], ValueError)


@pytest.mark.looptime
async def test_fail_fast_cancels_the_rest_and_raises_only_the_failures() -> None:
    loop = asyncio.get_running_loop()
    cancelled: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def fail() -> None:
        await asyncio.sleep(1)
        raise ValueError("stop")

    async def quick() -> str:
        return "quick"

    ended: list[tuple[Any, list[Any]]] = []
    runner = TaskRunner(concurrency=3, fail_fast=True, on_end=lambda e, r: ended.append((e, r)))
    done = runner.push(quick)
    running = runner.push(slow, "running")
    failing = runner.push(fail)
    started_late = runner.push(slow, "started late")  # takes the slot of ``quick``
    queued = runner.push(slow, "queued")
    dependent = runner.push(slow, "dependent", needs=[running])
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    assert loop.time() == pytest.approx(1)  # right away, not after the slow tasks
    assert [type(e) for e in caught.value.exceptions] == [ValueError]
    # The running tasks really were cancelled; the others never started.
    assert cancelled == ["running", "started late"]
    assert done.status == "succeeded"
    assert failing.status == "failed"
    statuses = [h.status for h in (running, started_late, queued, dependent)]
    assert statuses == ["cancelled"] * 4
    with pytest.raises(asyncio.CancelledError):
        queued.result()
    error, results = ended[0]
    assert error is caught.value
    assert results[0] == "quick"
    assert isinstance(results[2], ValueError)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:2] + results[3:])


@pytest.mark.looptime
async def test_fail_fast_with_return_exceptions_returns_the_list() -> None:
    async def fail() -> None:
        raise ValueError("stop")

    async def slow() -> None:
        await asyncio.sleep(100)

    runner = TaskRunner(concurrency=1, fail_fast=True)
    runner.push(fail)
    runner.push(slow)
    results = await runner.start(return_exceptions=True)
    assert isinstance(results[0], ValueError)
    assert isinstance(results[1], asyncio.CancelledError)


# -- lifecycle ---------------------------------------------------------------------------


async def test_an_empty_runner_returns_an_empty_list_and_still_ends() -> None:
    ended: list[tuple[Any, list[Any]]] = []
    runner = TaskRunner(on_end=lambda error, results: ended.append((error, results)))
    assert await runner.start() == []
    assert ended == [(None, [])]


async def test_on_end_is_called_once_with_error_then_results() -> None:
    calls: list[tuple[Any, Any]] = []

    async def fail() -> None:
        raise ValueError("x")

    async def ok() -> int:
        return 5

    runner = TaskRunner(on_end=lambda error, results: calls.append((error, results)))
    runner.push(ok)
    runner.push(fail)
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    assert len(calls) == 1
    error, results = calls[0]
    assert error is caught.value
    assert results[0] == 5
    assert results[1] is caught.value.exceptions[0]


async def test_finished_tasks_are_never_run_again() -> None:
    calls: list[str] = []

    async def record(*args: str) -> str:
        calls.append(args[-1])
        return args[-1]

    runner = TaskRunner()
    first = runner.push(record, "a")
    assert await runner.start() == ["a"]
    runner.push(record, "b", needs=[first])
    assert await runner.start() == ["a", "b"]
    assert await runner.start() == ["a", "b"]
    assert calls == ["a", "b"]


async def test_a_second_start_while_running_is_refused() -> None:
    pool = Pool()
    runner = TaskRunner()
    runner.push(pool.task, 0)
    run = asyncio.ensure_future(runner.start())
    await settle()
    with pytest.raises(RuntimeError, match="in progress"):
        await runner.start()
    pool.release(0)
    assert await run == [0]


async def test_tasks_pushed_while_running_join_the_run() -> None:
    async def child(n: int) -> int:
        return n * n

    async def parent() -> str:
        # A crawler-style task: discovers work and pushes it into the same run.
        for n in range(3):
            runner.push(child, n)
        return "parent"

    progress_pushed: list[TaskHandle[Any]] = []

    def on_progress(p: Progress) -> None:
        if p.task is not None and p.task.name == "parent":
            progress_pushed.append(runner.push(child, 10))

    runner = TaskRunner(concurrency=2, on_progress=on_progress)
    runner.push(parent, name="parent")
    assert await runner.start() == ["parent", 0, 1, 4, 100]
    assert progress_pushed[0].result() == 100


async def test_a_push_while_running_may_need_tasks_of_the_run() -> None:
    runner = TaskRunner()

    async def base() -> int:
        return 2

    async def add(x: int, y: int) -> int:
        return x + y

    async def spawner() -> None:
        runner.push(add, 3, needs="base")

    runner.push(base, name="base")
    runner.push(spawner)
    assert await runner.start() == [2, None, 5]


async def test_a_push_while_running_naming_an_unknown_task_is_refused() -> None:
    runner = TaskRunner()
    errors: list[Exception] = []

    async def noop() -> None:
        pass

    async def spawner() -> None:
        try:
            runner.push(noop, needs="later")
        except ValueError as exc:
            errors.append(exc)

    runner.push(spawner)
    await runner.start()
    assert "later" in str(errors[0])


async def test_push_from_another_thread_while_running_is_refused() -> None:
    runner = TaskRunner()

    def push_from_thread() -> str:
        try:
            runner.push(print)
        except RuntimeError as exc:
            return str(exc)
        return "accepted"

    runner.push(push_from_thread)
    [message] = await runner.start()
    assert "event loop's thread" in message


async def test_cancelling_start_cancels_every_task_and_skips_on_end() -> None:
    pool = Pool()
    ended: list[Any] = []
    runner = TaskRunner(concurrency=2, on_end=lambda e, r: ended.append(e))
    handles = [runner.push(pool.task, i) for i in range(4)]
    run = asyncio.ensure_future(runner.start())
    await settle()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert pool.running == 0  # the running ones really stopped before start() returned
    assert [h.status for h in handles] == ["cancelled"] * 4
    assert ended == []


# -- as_completed ------------------------------------------------------------------------


@pytest.mark.looptime
async def test_as_completed_starts_the_run_and_yields_in_completion_order() -> None:
    async def after(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    async def fail() -> None:
        await asyncio.sleep(1.5)
        raise ValueError("x")

    ended: list[Any] = []
    runner = TaskRunner(on_end=lambda e, r: ended.append(e))
    for delay in (3, 1, 2):
        runner.push(after, delay)
    failing = runner.push(fail)
    order = [handle async for handle in runner.as_completed()]
    assert [h.result() if h is not failing else "failed" for h in order] == [
        1,
        "failed",
        2,
        3,
    ]
    assert isinstance(ended[0], ExceptionGroup)  # on_end ran before the loop finished


@pytest.mark.looptime
async def test_as_completed_joins_a_run_started_elsewhere() -> None:
    async def after(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    runner = TaskRunner()
    for delay in (2, 1):
        runner.push(after, delay)
    run = asyncio.ensure_future(runner.start())
    await asyncio.sleep(1.5)  # the 1 s task has ended already: it is yielded first
    order = [h.result() async for h in runner.as_completed()]
    assert order == [1, 2]
    assert await run == [2, 1]


async def test_cancelling_one_as_completed_consumer_leaves_the_others_alone() -> None:
    pool = Pool()
    runner = TaskRunner()
    for i in range(2):
        runner.push(pool.task, i)
    run = asyncio.ensure_future(runner.start())
    await settle()

    async def consume() -> list[int]:
        return [h.result() async for h in runner.as_completed()]

    doomed = asyncio.ensure_future(consume())
    survivor = asyncio.ensure_future(consume())
    await settle()  # both wait for the first end
    doomed.cancel()
    await settle()
    pool.release(0)
    pool.release(1)
    assert await survivor == [0, 10]
    assert doomed.cancelled()
    assert await run == [0, 10]


async def test_breaking_out_of_as_completed_cancels_the_rest() -> None:
    pool = Pool()
    runner = TaskRunner(concurrency=2)
    handles = [runner.push(pool.task, i) for i in range(4)]
    pool.release(0)
    iterator = runner.as_completed()
    first = await iterator.__anext__()
    await iterator.aclose()
    assert first is handles[0]
    assert [h.status for h in handles] == ["succeeded", "cancelled", "cancelled", "cancelled"]


@pytest.mark.looptime
async def test_progress_after_the_run_is_frozen_at_its_end() -> None:
    runner = TaskRunner()
    runner.push(asyncio.sleep, 2)
    await runner.start()
    await asyncio.sleep(5)
    after = runner.progress
    assert (after.elapsed, after.done, after.total, after.rate) == (2, 1, 1, 0.5)


# -- handles -----------------------------------------------------------------------------


async def test_handle_status_result_and_exception_through_a_run() -> None:
    pool = Pool()

    async def fail() -> None:
        raise ValueError("bad")

    runner = TaskRunner(concurrency=1)
    ok = runner.push(pool.task, 1, name="ok")
    bad = runner.push(fail)
    assert (ok.status, ok.done()) == ("pending", False)
    with pytest.raises(asyncio.InvalidStateError, match="'ok' has not ended"):
        ok.result()
    run = asyncio.ensure_future(runner.start(return_exceptions=True))
    await settle()
    assert ok.status == "running"
    assert bad.status == "pending"
    with pytest.raises(asyncio.InvalidStateError):
        ok.exception()
    pool.release(1)
    await run
    assert (ok.status, ok.done(), ok.result(), ok.exception()) == ("succeeded", True, 10, None)
    assert bad.name == "fail#1"
    assert isinstance(bad.exception(), ValueError)
    with pytest.raises(ValueError, match="bad"):
        bad.result()
    assert repr(ok) == "<TaskHandle 'ok' succeeded>"


# -- callbacks that raise, options -------------------------------------------------------


async def test_a_raising_callback_is_logged_and_does_not_stop_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_progress(p: Progress) -> None:
        raise RuntimeError("progress broke")

    def bad_end(error: object, results: object) -> None:
        raise RuntimeError("end broke")

    async def ok(i: int) -> int:
        return i

    runner = TaskRunner(on_progress=bad_progress, on_end=bad_end)
    runner.push(ok, 1)
    runner.push(ok, 2)
    with caplog.at_level(logging.ERROR, logger="batchwork"):
        assert await runner.start() == [1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("callback" in m for m in messages) == 3
    assert all(r.exc_info is not None for r in caplog.records)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": -1.0}, "rate_limit"),
    ],
)
async def test_invalid_options_name_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TaskRunner(**options)


async def test_push_refuses_bad_arguments_and_adds_nothing() -> None:
    runner = TaskRunner()
    other = TaskRunner()
    foreign = other.push(print)
    runner.push(print, name="a")
    with pytest.raises(ValueError, match="another TaskRunner"):
        runner.push(print, needs=[foreign])
    with pytest.raises(ValueError, match="'a' was already pushed"):
        runner.push(print, name="a")
    with pytest.raises(ValueError, match="on_needs_failed"):
        runner.push(print, on_needs_failed="retry")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="needs takes"):
        runner.push(print, needs=cast(Any, [42]))
    assert runner.progress.total == 1  # nothing refused was added


async def test_a_task_cancelled_from_inside_ends_cancelled_and_its_dependents_by_policy() -> None:
    async def gives_up() -> None:
        raise asyncio.CancelledError

    runner = TaskRunner()
    quitter = runner.push(gives_up)
    skipped = runner.push(print, needs=[quitter], on_needs_failed="skip")
    failed = runner.push(print, needs=[quitter])
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    # The cancellation itself is not a failure; the dependent that failed because of it is.
    assert list(caught.value.exceptions) == [failed.exception()]
    assert quitter.status == "cancelled"
    assert skipped.status == "skipped"
    assert "which was cancelled" in str(failed.exception())
    assert runner.progress.total == 2  # the cancelled task is not counted


async def test_a_task_pushed_while_fail_fast_cancels_is_cancelled_at_once() -> None:
    pushed: list[TaskHandle[Any]] = []
    runner = TaskRunner(fail_fast=True)

    async def cleans_up() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pushed.append(runner.push(print, "cleanup"))
            raise

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("stop")

    runner.push(cleans_up)
    runner.push(fail)
    with pytest.raises(ExceptionGroup):
        await runner.start()
    assert pushed[0].status == "cancelled"


async def test_fail_fast_stops_on_a_dependency_failure_from_an_earlier_run() -> None:
    async def fail() -> None:
        raise ValueError("x")

    runner = TaskRunner(fail_fast=True)
    source = runner.push(fail)
    with pytest.raises(ExceptionGroup):
        await runner.start()
    failing = runner.push(print, needs=[source])
    rescued = runner.push(print, needs=[source], on_needs_failed=lambda exc: "fallback")
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    assert failing.status == "failed"
    assert rescued.status == "cancelled"  # the run stopped before its fallback
    assert [type(e) for e in caught.value.exceptions] == [ValueError, DependencyFailed]


async def test_unhashable_callables_and_bad_names() -> None:
    class Adder:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Adder)

        async def __call__(self, x: int) -> int:
            return x + 1

    runner = TaskRunner()
    runner.push(Adder(), 1)
    with pytest.raises(TypeError, match="name must be a str"):
        runner.push(print, name=cast(Any, 5))
    assert await runner.start() == [2]


async def test_push_and_map_are_typed_by_the_function() -> None:
    async def number() -> int:
        return 1

    def text() -> str:
        return "a"

    runner = TaskRunner()
    assert_type(runner.push(number), TaskHandle[int])
    assert_type(runner.push(text), TaskHandle[str])
    skippable = runner.push(number, needs=[], on_needs_failed="skip")
    assert_type(skippable, TaskHandle[int | SkippedType])
    assert_type(await batchwork.map(str, [1]), list[str])
    await runner.start()


# -- map ---------------------------------------------------------------------------------


async def test_map_keeps_order_bounds_concurrency_and_takes_sync_functions() -> None:
    peak = running = 0

    async def square(x: int) -> int:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return x * x

    assert await batchwork.map(square, range(20), concurrency=3) == [x * x for x in range(20)]
    assert peak == 3
    assert await batchwork.map(str.upper, ["a", "b"]) == ["A", "B"]
    assert await batchwork.map(square, []) == []


async def test_map_raises_a_group_of_the_failures() -> None:
    async def invert(x: int) -> float:
        return 1 / x

    with pytest.raises(ExceptionGroup) as caught:
        await batchwork.map(invert, [1, 0, 2, 0])
    assert [type(e) for e in caught.value.exceptions] == [ZeroDivisionError] * 2


async def test_skipped_is_a_single_named_sentinel() -> None:
    assert repr(Skipped) == str(Skipped) == "Skipped"
    assert batchwork.Skipped is Skipped
