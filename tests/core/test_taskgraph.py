"""The pure dependency graph: readiness, failure propagation by policy, cycle detection."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchwork._taskgraph import (
    CANCELLED,
    FAIL,
    FAILED,
    FALLBACK,
    READY,
    RUNNING,
    SKIP,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    Event,
    TaskGraph,
    find_cycle,
)

# -- readiness ---------------------------------------------------------------------------


def test_nodes_without_needs_are_ready_in_push_order() -> None:
    graph = TaskGraph()
    assert graph.extend([(), (), ()], [FAIL] * 3) == []
    assert list(graph.ready) == [0, 1, 2]
    assert [graph.take(), graph.take()] == [0, 1]
    assert graph.state == [RUNNING, RUNNING, READY]


def test_a_node_is_ready_only_once_every_need_succeeded() -> None:
    graph = TaskGraph()
    graph.extend([(), (), (0, 1)], [FAIL] * 3)
    graph.take(), graph.take()
    graph.succeed(0)
    assert list(graph.ready) == []
    assert graph.state[2] == WAITING
    graph.succeed(1)
    assert list(graph.ready) == [2]


def test_a_need_listed_twice_counts_once() -> None:
    graph = TaskGraph()
    graph.extend([(), (0, 0)], [FAIL, FAIL])
    graph.succeed(graph.take())
    assert list(graph.ready) == [1]


def test_a_batch_may_need_a_later_node_of_the_same_batch() -> None:
    graph = TaskGraph()
    graph.extend([(1,), ()], [FAIL, FAIL])
    assert list(graph.ready) == [1]
    graph.succeed(graph.take())
    assert list(graph.ready) == [0]


def test_a_later_batch_sees_what_earlier_nodes_became() -> None:
    graph = TaskGraph()
    graph.extend([(), ()], [FAIL, FAIL])
    graph.succeed(graph.take())
    graph.take()
    # Node 2 needs a succeeded node (ready at once), node 3 a running one (waits).
    graph.extend([(0,), (1,)], [FAIL, FAIL])
    assert list(graph.ready) == [2]
    assert graph.state[3] == WAITING
    graph.succeed(1)
    assert list(graph.ready) == [2, 3]


# -- failure propagation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected_state", "expected_outcome"),
    [(FAIL, FAILED, FAILED), (SKIP, SKIPPED, SKIPPED), (FALLBACK, RUNNING, RUNNING)],
)
def test_a_failure_resolves_each_dependent_by_its_policy(
    policy: int, expected_state: int, expected_outcome: int
) -> None:
    graph = TaskGraph()
    graph.extend([(), (0,)], [FAIL, policy])
    events = graph.fail(graph.take())
    assert events == [Event(node=1, outcome=expected_outcome, need=0)]
    assert graph.state == [FAILED, expected_state]
    assert list(graph.ready) == []


def test_fail_and_skip_cascade_down_a_chain_but_a_fallback_stops_it() -> None:
    graph = TaskGraph()
    # 0 <- 1 (fail) <- 2 (skip) <- 3 (fallback) <- 4 (fail)
    graph.extend([(), (0,), (1,), (2,), (3,)], [FAIL, FAIL, SKIP, FALLBACK, FAIL])
    events = graph.fail(graph.take())
    assert events == [Event(1, FAILED, 0), Event(2, SKIPPED, 1), Event(3, RUNNING, 2)]
    assert graph.state[4] == WAITING  # waits for the fallback's outcome
    graph.succeed(3)
    assert list(graph.ready) == [4]


def test_a_failed_fallback_cascades_further() -> None:
    graph = TaskGraph()
    graph.extend([(), (0,), (1,)], [FAIL, FALLBACK, SKIP])
    graph.fail(graph.take())
    assert graph.fail(1) == [Event(2, SKIPPED, 1)]


def test_a_cancelled_node_counts_as_not_succeeded_for_its_dependents() -> None:
    graph = TaskGraph()
    graph.extend([(), (0,)], [FAIL, SKIP])
    assert graph.fail(graph.take(), CANCELLED) == [Event(1, SKIPPED, 0)]
    assert graph.state == [CANCELLED, SKIPPED]


def test_fail_without_cascade_leaves_dependents_for_the_caller() -> None:
    graph = TaskGraph()
    graph.extend([(), (0,)], [FAIL, FAIL])
    assert graph.fail(graph.take(), cascade=False) == []
    assert graph.state == [FAILED, WAITING]
    assert graph.cancel_pending() == [1]
    assert graph.state == [FAILED, CANCELLED]


def test_the_first_failed_need_decides_and_later_ones_change_nothing() -> None:
    graph = TaskGraph()
    graph.extend([(), (), (0, 1)], [FAIL, FAIL, SKIP])
    graph.take(), graph.take()
    assert graph.fail(1) == [Event(2, SKIPPED, 1)]
    assert graph.fail(0) == []
    graph.succeed(0)  # a late success must not revive it either
    assert graph.state[2] == SKIPPED
    assert list(graph.ready) == []


def test_needing_an_already_failed_node_resolves_at_extend() -> None:
    graph = TaskGraph()
    graph.extend([()], [FAIL])
    graph.fail(graph.take())
    events = graph.extend([(0,), (1,), (0,)], [SKIP, FAIL, FALLBACK])
    assert events == [Event(1, SKIPPED, 0), Event(2, FAILED, 1), Event(3, RUNNING, 0)]
    assert list(graph.ready) == []


def test_a_long_fail_chain_does_not_recurse() -> None:
    graph = TaskGraph()
    count = 50_000
    graph.extend([()] + [(i,) for i in range(count - 1)], [FAIL] * count)
    events = graph.fail(graph.take())
    assert len(events) == count - 1
    assert graph.state[-1] == FAILED


def test_cancel_pending_cancels_waiting_and_ready_only() -> None:
    graph = TaskGraph()
    graph.extend([(), (), (0,)], [FAIL] * 3)
    graph.take()
    assert graph.cancel_pending() == [1, 2]
    assert graph.state == [RUNNING, CANCELLED, CANCELLED]
    assert list(graph.ready) == []


# -- cycles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("needs", "first", "cycle"),
    [
        ([()], 0, None),
        ([(0,)], 0, [0]),
        ([(1,), (0,)], 0, [0, 1]),
        ([(1,), (2,), (0,)], 0, [0, 1, 2]),
        ([(2,), (0,), (1,)], 0, [0, 2, 1]),
        # a tail leading into a cycle: only the cycle is named
        ([(1,), (2,), (3,), (2,)], 0, [2, 3]),
        # a cycle that does not include the first node
        ([(), (2,), (1,)], 0, [1, 2]),
        # a diamond is not a cycle
        ([(1, 2), (3,), (3,), ()], 0, None),
        # references to older nodes (below ``first``) close no cycle
        ([(0, 11), (10,)], 10, [10, 11]),
        ([(3,), (4,)], 10, None),
        ([(12,), (10,), (12,)], 10, [12]),
    ],
)
def test_find_cycle_table(
    needs: list[tuple[int, ...]], first: int, cycle: list[int] | None
) -> None:
    assert find_cycle(needs, first) == cycle


def _dags(max_nodes: int = 25) -> st.SearchStrategy[list[tuple[int, ...]]]:
    """Random DAGs in push order: node i needs a subset of nodes < i."""

    @st.composite
    def build(draw: st.DrawFn) -> list[tuple[int, ...]]:
        count = draw(st.integers(1, max_nodes))
        return [
            tuple(draw(st.lists(st.integers(0, i - 1), max_size=3))) if i else ()
            for i in range(count)
        ]

    return build()


def _is_cycle(needs: Sequence[Sequence[int]], cycle: list[int], first: int = 0) -> bool:
    return all(
        cycle[(k + 1) % len(cycle)] in needs[node - first] for k, node in enumerate(cycle)
    ) and len(set(cycle)) == len(cycle)


@given(_dags())
def test_a_dag_has_no_cycle(needs: list[tuple[int, ...]]) -> None:
    assert find_cycle(needs) is None


@given(_dags(), st.data())
def test_a_back_edge_makes_a_cycle_that_is_reported_exactly(
    needs: list[tuple[int, ...]], data: st.DataObject
) -> None:
    low = data.draw(st.integers(0, len(needs) - 1))
    high = data.draw(st.integers(low, len(needs) - 1))
    # Force a path high -> ... -> low, then close it with low -> high.
    for node in range(low + 1, high + 1):
        needs[node] = (*needs[node], node - 1)
    needs[low] = (*needs[low], high)
    cycle = find_cycle(needs)
    assert cycle is not None
    assert _is_cycle(needs, cycle)
    assert cycle[0] == min(cycle)


# -- random executions -------------------------------------------------------------------


@settings(max_examples=200)
@given(_dags(), st.data())
def test_random_executions_keep_every_invariant(
    needs: list[tuple[int, ...]], data: st.DataObject
) -> None:
    """Each node runs at most once, only after all it needs succeeded, and every node ends
    in the state its policy dictates."""
    policies = data.draw(
        st.lists(st.sampled_from([FAIL, SKIP, FALLBACK]), min_size=len(needs), max_size=len(needs))
    )
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    # Split the nodes in two batches, as pushes before start() and while running would.
    split = data.draw(st.integers(0, len(needs)))
    graph = TaskGraph()
    started: list[int] = []
    running: set[int] = set()
    reasons: dict[int, int] = {}  # node -> the need whose end resolved it

    def absorb(events: list[Event]) -> None:
        for event in events:
            assert event.node not in reasons
            reasons[event.node] = event.need
            if event.outcome == RUNNING:
                running.add(event.node)

    absorb(graph.extend(needs[:split], policies[:split]))
    pending_batch = True
    while graph.ready or running or pending_batch:
        if pending_batch and (rng.random() < 0.2 or not (graph.ready or running)):
            absorb(graph.extend(needs[split:], policies[split:]))
            pending_batch = False
            continue
        if graph.ready and (not running or rng.random() < 0.5):
            node = graph.take()
            assert node not in started
            assert all(graph.state[need] == SUCCEEDED for need in needs[node])
            started.append(node)
            running.add(node)
            continue
        node = rng.choice(sorted(running))
        running.discard(node)
        if rng.random() < 0.7:
            graph.succeed(node)
        else:
            absorb(graph.fail(node))

    assert len(started) == len(set(started))
    for node, state in enumerate(graph.state):
        assert state in (SUCCEEDED, FAILED, SKIPPED)
        if node in started:
            assert node not in reasons
            continue
        need = reasons[node]
        assert need in needs[node]
        assert graph.state[need] in (FAILED, SKIPPED)
        if policies[node] == FAIL:
            assert state == FAILED
        elif policies[node] == SKIP:
            assert state == SKIPPED
