"""Random DAGs through a real TaskRunner on a virtual clock.

Every task runs at most once and never before what it needs; the concurrency limit holds
and is reached (whenever k tasks are ready, min(k, concurrency) run); every task ends in
the state its needs and policy dictate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import looptime
from hypothesis import given, settings
from hypothesis import strategies as st

from batchwork import Skipped, TaskHandle, TaskRunner
from batchwork.errors import DependencyFailed


@dataclass
class Spec:
    needs: list[int]
    duration: int
    fails: bool
    policy: str  # "fail", "skip" or "fallback"


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, list[Spec]]:
    concurrency = draw(st.integers(1, 5))
    count = draw(st.integers(0, 30))
    specs = [
        Spec(
            needs=draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else [],
            duration=draw(st.integers(0, 3)),
            fails=draw(st.integers(0, 3)) == 0,
            policy=draw(st.sampled_from(["fail", "skip", "fallback"])),
        )
        for i in range(count)
    ]
    return concurrency, specs


@dataclass
class Trace:
    starts: list[int] = field(default_factory=list)
    running: set[int] = field(default_factory=set)
    peak: int = 0
    ended: bool = False


async def drive(concurrency: int, specs: list[Spec]) -> tuple[Trace, list[TaskHandle[Any]]]:
    trace = Trace()
    runner = TaskRunner(concurrency=concurrency)
    handles: list[TaskHandle[Any]] = []

    async def task(*args: Any) -> str:
        *need_results, index = args  # the results of needs come first
        spec = specs[index]
        assert index not in trace.starts, "ran twice"
        assert all(handles[n].status == "succeeded" for n in spec.needs), "ran too early"
        assert list(need_results) == [handles[n].result() for n in spec.needs]
        trace.starts.append(index)
        trace.running.add(index)
        trace.peak = max(trace.peak, len(trace.running))
        try:
            await asyncio.sleep(spec.duration)
        finally:
            trace.running.discard(index)
        if spec.fails:
            raise ValueError(f"task {index}")
        return f"value {index}"

    def ready_not_started() -> int:
        return sum(
            1
            for i, spec in enumerate(specs)
            if handles[i].status == "pending"
            and all(handles[n].status == "succeeded" for n in spec.needs)
        )

    async def monitor() -> None:
        # Durations are whole seconds, so every start and end happens at a whole second;
        # half-way between, the runner has settled and must be using every slot it can.
        await asyncio.sleep(0.5)
        while not trace.ended:
            running = len(trace.running)
            assert running <= concurrency
            assert running == min(concurrency, running + ready_not_started())
            await asyncio.sleep(1)

    for i, spec in enumerate(specs):
        policy: Any = (
            (lambda exc, i=i: f"fallback {i}") if spec.policy == "fallback" else spec.policy
        )
        handles.append(
            runner.push(task, i, needs=[handles[n] for n in spec.needs], on_needs_failed=policy)
        )

    async def run() -> None:
        try:
            await runner.start(return_exceptions=True)
        finally:
            trace.ended = True

    await asyncio.gather(run(), monitor())
    return trace, handles


def expected_outcomes(specs: list[Spec]) -> list[tuple[str, Any]]:
    """What each task must end as, computed independently of the runner."""
    outcomes: list[tuple[str, Any]] = []
    for i, spec in enumerate(specs):
        if all(outcomes[n][0] == "succeeded" for n in spec.needs):
            outcomes.append(("failed", ValueError) if spec.fails else ("succeeded", f"value {i}"))
        elif spec.policy == "fail":
            outcomes.append(("failed", DependencyFailed))
        elif spec.policy == "skip":
            outcomes.append(("skipped", Skipped))
        else:
            outcomes.append(("succeeded", f"fallback {i}"))
    return outcomes


@settings(max_examples=100, deadline=None)
@given(plans())
def test_random_dags_respect_needs_limits_and_policies(plan: tuple[int, list[Spec]]) -> None:
    concurrency, specs = plan
    with asyncio.Runner(loop_factory=looptime.new_event_loop) as runner:
        trace, handles = runner.run(drive(concurrency, specs))

    assert len(trace.starts) == len(set(trace.starts))
    assert trace.peak <= concurrency
    for i, (status, expected) in enumerate(expected_outcomes(specs)):
        handle = handles[i]
        assert handle.status == status, i
        if status == "failed":
            assert isinstance(handle.exception(), expected)
        else:
            assert handle.result() == expected
        assert (i in trace.starts) == (
            all(handles[n].status == "succeeded" for n in specs[i].needs)
        )
    ready_at_once = sum(1 for spec in specs if not spec.needs)
    if ready_at_once >= concurrency:
        assert trace.peak == concurrency
