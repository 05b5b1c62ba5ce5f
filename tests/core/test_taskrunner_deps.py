"""TaskRunner dependencies: needs by handle or name, the three failure policies, cycles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batchwork import Progress, Skipped, TaskRunner
from batchwork.errors import CycleError, DependencyFailed


async def value(v: Any) -> Any:
    return v


async def boom(message: str = "boom") -> None:
    raise ValueError(message)


async def echo(*args: Any) -> tuple[Any, ...]:
    return args


# -- needs by handle and by name ---------------------------------------------------------


async def test_needs_by_name_also_of_tasks_pushed_later() -> None:
    runner = TaskRunner(concurrency=1)
    last = runner.push(echo, "end", needs=["first", "second"])
    runner.push(value, 1, name="first")
    runner.push(value, 2, name="second")
    await runner.start()
    assert last.result() == (1, 2, "end")


async def test_needs_takes_a_single_handle_or_name() -> None:
    runner = TaskRunner()
    a = runner.push(value, "a", name="a")
    by_handle = runner.push(echo, needs=a)
    by_name = runner.push(echo, needs="a")
    await runner.start()
    assert by_handle.result() == by_name.result() == ("a",)


async def test_a_task_waits_for_all_it_needs() -> None:
    gate = asyncio.Event()
    order: list[str] = []

    async def slow() -> str:
        await gate.wait()
        order.append("slow")
        return "s"

    async def after(*args: Any) -> None:
        order.append("after")

    runner = TaskRunner(concurrency=4)
    fast = runner.push(value, "f")
    waiting = runner.push(slow)
    runner.push(after, needs=[fast, waiting])
    run = asyncio.ensure_future(runner.start())
    for _ in range(10):
        await asyncio.sleep(0)
    assert order == []
    gate.set()
    await run
    assert order == ["slow", "after"]


async def test_an_unknown_name_is_refused_at_start_before_any_task_runs() -> None:
    ran: list[str] = []

    async def record() -> None:
        ran.append("x")

    runner = TaskRunner()
    runner.push(record)
    runner.push(record, needs=["missing"])
    with pytest.raises(ValueError, match="'missing'"):
        await runner.start()
    assert ran == []


# -- "fail" ------------------------------------------------------------------------------


async def test_fail_policy_raises_dependency_failed_caused_by_the_original() -> None:
    runner = TaskRunner()
    source = runner.push(boom, name="source")
    child = runner.push(value, 1, needs=[source], name="child")
    grandchild = runner.push(value, 2, needs=[child], name="grandchild")
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    original = source.exception()
    assert isinstance(original, ValueError)
    for handle, need in [(child, "source"), (grandchild, "child")]:
        error = handle.exception()
        assert isinstance(error, DependencyFailed)
        assert error.__cause__ is original  # down the whole chain
        assert repr(handle.name) in str(error)
        assert f"needs {need!r}, which failed" in str(error)
    assert list(caught.value.exceptions) == [
        original,
        child.exception(),
        grandchild.exception(),
    ]


async def test_a_failure_touches_only_its_dependents() -> None:
    runner = TaskRunner()
    bad = runner.push(boom)
    good = runner.push(value, "ok")
    runner.push(echo, needs=[good])
    runner.push(echo, needs=[bad])
    results = await runner.start(return_exceptions=True)
    assert results[1:3] == ["ok", ("ok",)]
    assert isinstance(results[3], DependencyFailed)


# -- "skip" ------------------------------------------------------------------------------


async def test_skip_policy_gives_skipped_and_cascades_by_each_policy() -> None:
    progress: list[Progress] = []
    runner = TaskRunner(on_progress=progress.append)
    source = runner.push(boom, name="source")
    skipped = runner.push(value, 1, needs=[source], on_needs_failed="skip", name="skipped")
    skipped_too = runner.push(value, 2, needs=[skipped], on_needs_failed="skip")
    failed = runner.push(value, 3, needs=[skipped])
    results = await runner.start(return_exceptions=True)
    assert results[1] is Skipped
    assert results[2] is Skipped
    assert (skipped.status, skipped.result(), skipped.exception()) == ("skipped", Skipped, None)
    assert skipped_too.status == "skipped"
    error = failed.exception()
    assert isinstance(error, DependencyFailed)
    assert "needs 'skipped', which was skipped" in str(error)
    assert error.__cause__ is source.exception()
    last = progress[-1]
    assert (last.done, last.succeeded, last.failed, last.skipped) == (4, 0, 2, 2)


# -- a fallback callable -----------------------------------------------------------------


async def test_fallback_gets_the_failed_needs_exception_and_its_value_flows_on() -> None:
    seen: list[BaseException] = []

    def fallback(exc: BaseException) -> str:
        seen.append(exc)
        return "<empty>"

    runner = TaskRunner()
    page = runner.push(boom, "404")
    safe = runner.push(echo, needs=[page], on_needs_failed=fallback)
    after = runner.push(echo, "!", needs=[safe])
    with pytest.raises(ExceptionGroup) as caught:
        await runner.start()
    assert seen == [page.exception()]
    assert (safe.status, safe.result()) == ("succeeded", "<empty>")
    assert after.result() == ("<empty>", "!")
    assert list(caught.value.exceptions) == [page.exception()]  # the fallback saved the rest


async def test_fallback_of_a_cascaded_failure_gets_the_dependency_error() -> None:
    seen: list[BaseException] = []
    runner = TaskRunner()
    source = runner.push(boom)
    middle = runner.push(echo, needs=[source])
    runner.push(echo, needs=[middle], on_needs_failed=lambda exc: seen.append(exc))
    await runner.start(return_exceptions=True)
    assert seen == [middle.exception()]
    assert isinstance(seen[0], DependencyFailed)


async def test_an_async_fallback_is_awaited() -> None:
    async def fallback(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return f"recovered from {exc}"

    runner = TaskRunner()
    source = runner.push(boom, "x")
    safe = runner.push(echo, needs=[source], on_needs_failed=fallback)
    after = runner.push(echo, needs=[safe])
    await runner.start(return_exceptions=True)
    assert safe.result() == "recovered from x"
    assert after.result() == ("recovered from x",)


async def test_a_raising_fallback_fails_the_task_and_cascades() -> None:
    def fallback(exc: BaseException) -> None:
        raise KeyError("fallback broke")

    runner = TaskRunner()
    source = runner.push(boom)
    safe = runner.push(echo, needs=[source], on_needs_failed=fallback)
    after = runner.push(echo, needs=[safe], on_needs_failed="skip")
    await runner.start(return_exceptions=True)
    assert isinstance(safe.exception(), KeyError)
    assert after.status == "skipped"


async def test_the_first_failed_need_decides() -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def fail_later() -> None:
        await gate.wait()
        raise ValueError("later")

    runner = TaskRunner()
    runner.push(fail_later, name="later")
    first = runner.push(boom, "first")
    runner.push(echo, needs=["later", first], on_needs_failed=lambda e: seen.append(str(e)))
    run = asyncio.ensure_future(runner.start(return_exceptions=True))
    for _ in range(10):
        await asyncio.sleep(0)
    gate.set()
    await run
    assert seen == ["first"]


# -- needs that ended in an earlier run --------------------------------------------------


async def test_a_task_needing_an_earlier_failure_is_resolved_at_once() -> None:
    runner = TaskRunner()
    source = runner.push(boom)
    await runner.start(return_exceptions=True)
    skipped = runner.push(echo, needs=[source], on_needs_failed="skip")
    fallback = runner.push(echo, needs=[source], on_needs_failed=lambda e: "fb")
    results = await runner.start(return_exceptions=True)
    assert results[1:] == [Skipped, "fb"]
    assert skipped.status == "skipped"
    assert fallback.result() == "fb"


# -- cycles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({"a": ["a"]}, ["a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, ["a", "b", "c"]),
        ({"x": [], "a": ["x", "c"], "b": ["a"], "c": ["b"]}, ["a", "c", "b"]),
    ],
)
async def test_a_cycle_raises_cycle_error_naming_every_task_before_any_runs(
    edges: dict[str, list[str]], cycle: list[str]
) -> None:
    ran: list[str] = []

    async def record(*args: Any) -> None:
        ran.append("ran")

    ended: list[Any] = []
    runner = TaskRunner(on_end=lambda e, r: ended.append(e))
    runner.push(record)  # an innocent task that must not run either
    for name, needs in edges.items():
        runner.push(record, needs=needs, name=name)
    with pytest.raises(CycleError) as caught:
        await runner.start()
    assert caught.value.cycle == cycle
    assert " -> ".join([*cycle, cycle[0]]) in str(caught.value)
    assert ran == []
    assert ended == []
    with pytest.raises(CycleError):  # still refused: the tasks are still there
        await runner.start()


async def test_a_self_dependency_pushed_while_running_is_a_cycle() -> None:
    runner = TaskRunner()
    errors: list[CycleError] = []

    async def spawner() -> None:
        try:
            runner.push(value, 1, name="me", needs=["me"])
        except CycleError as exc:
            errors.append(exc)

    runner.push(spawner)
    await runner.start()
    assert errors[0].cycle == ["me"]
    assert runner.progress.total == 1
