"""Properties of the Batcher over random workloads (hypothesis, virtual loop time)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass

import looptime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchwork import Batcher, BatchInfo
from batchwork.errors import QueueFull


@dataclass(frozen=True)
class Config:
    max_size: int
    max_wait: float
    min_size: int | None
    max_concurrency: int
    max_pending: int | None
    fn_delay: float


@dataclass(frozen=True)
class Op:
    delay: float
    kind: str
    key: str | None
    count: int


@st.composite
def configs(draw: st.DrawFn) -> Config:
    max_size = draw(st.integers(1, 8))
    return Config(
        max_size=max_size,
        max_wait=draw(st.sampled_from([0.0, 0.01, 0.1])),
        min_size=draw(st.none() | st.integers(1, max_size)),
        max_concurrency=draw(st.integers(1, 3)),
        max_pending=draw(st.none() | st.integers(1, 12)),
        fn_delay=draw(st.sampled_from([0.0, 0.005, 0.05])),
    )


ops_strategy = st.lists(
    st.builds(
        Op,
        delay=st.sampled_from([0.0, 0.0, 0.002, 0.03]),
        kind=st.sampled_from(["submit", "submit", "many", "put"]),
        key=st.sampled_from([None, "a", "b"]),
        count=st.integers(1, 12),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Outcome:
    """What a scenario observed, for the assertions."""

    batches: list[tuple[Hashable, list[int]]]
    infos: list[BatchInfo]
    key_of: dict[int, str | None]
    answers: dict[int, list[object]]
    rejected: set[int]
    ordered_calls: list[tuple[list[int], object]]


async def run_scenario(config: Config, ops: list[Op]) -> Outcome:
    batches: list[tuple[Hashable, list[int]]] = []
    infos: list[BatchInfo] = []
    key_of: dict[int, str | None] = {}

    async def fn(items: list[int]) -> list[tuple[str, int]]:
        batches.append((key_of[items[0]], list(items)))
        if config.fn_delay:
            await asyncio.sleep(config.fn_delay)
        return [("r", item) for item in items]

    batcher = Batcher(
        fn,
        max_size=config.max_size,
        max_wait=config.max_wait,
        min_size=config.min_size,
        max_concurrency=config.max_concurrency,
        max_pending=config.max_pending,
        on_batch=infos.append,
    )
    ids = itertools.count()
    answers: dict[int, list[object]] = defaultdict(list)
    rejected: set[int] = set()
    calls: list[tuple[list[int], asyncio.Task[object]]] = []

    def record(item: int, outcome: object) -> None:
        answers[item].append(outcome)

    async def put(item: int, key: str | None) -> None:
        try:
            batcher.put(item, key=key, callback=record)
        except QueueFull:
            rejected.add(item)

    puts: list[asyncio.Task[None]] = []

    for op in ops:
        if op.delay:
            await asyncio.sleep(op.delay)
        items = [next(ids) for _ in range(op.count if op.kind == "many" else 1)]
        key_of.update(dict.fromkeys(items, op.key))
        if op.kind == "submit":
            calls.append((items, asyncio.create_task(batcher.submit(items[0], key=op.key))))
        elif op.kind == "many":
            task = asyncio.create_task(batcher.submit_many(items, key=op.key))
            calls.append((items, task))
        else:
            # Through a task like the others, so arrival order is id order.
            puts.append(asyncio.create_task(put(items[0], op.key)))
    await asyncio.sleep(0)  # let the last submit tasks start before closing
    await batcher.close()
    assert all(task.done() for _, task in calls)
    assert all(task.done() for task in puts)
    ordered_calls = [(items, task.result()) for items, task in calls]
    for items, result in ordered_calls:
        if len(items) == 1 and not isinstance(result, list):
            answers[items[0]].append(result)
        else:
            assert isinstance(result, list)
            for item, outcome in zip(items, result, strict=True):
                answers[item].append(outcome)
    return Outcome(batches, infos, key_of, answers, rejected, ordered_calls)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), ops=ops_strategy)
def test_random_workloads_keep_every_promise(config: Config, ops: list[Op]) -> None:
    with asyncio.Runner(loop_factory=looptime.new_event_loop) as runner:
        outcome = runner.run(run_scenario(config, ops))

    # Every accepted item is answered exactly once, with its own result.
    accepted = set(outcome.key_of) - outcome.rejected
    assert set(outcome.answers) == accepted
    for item in accepted:
        assert outcome.answers[item] == [("r", item)]

    # Every accepted item reached fn exactly once, in a batch of its own key.
    sent = [item for _, items in outcome.batches for item in items]
    assert sorted(sent) == sorted(accepted)
    for key, items in outcome.batches:
        assert {outcome.key_of[item] for item in items} == {key}
        assert 1 <= len(items) <= config.max_size

    # submit_many answers in the order of its items.
    for items, result in outcome.ordered_calls:
        if isinstance(result, list):
            assert result == [("r", item) for item in items]

    # Small batches only when forced by age or by close.
    if config.min_size is not None:
        for info in outcome.infos:
            if info.size < config.min_size:
                assert info.reason in ("age", "close", "flush")
    for info in outcome.infos:
        if info.size < config.max_size and config.min_size is None:
            assert info.reason in ("age", "close", "flush")
        if info.reason == "age":
            assert info.waited >= config.max_wait - 1e-9

    # Within a key, batches take the oldest pending items (arrival order = id order when
    # nobody had to wait for room).
    if config.max_pending is None:
        by_key: dict[Hashable, list[int]] = defaultdict(list)
        for key, items in outcome.batches:
            by_key[key].extend(items)
        for items in by_key.values():
            assert items == sorted(items)
