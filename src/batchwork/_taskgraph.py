"""The dependency graph behind :class:`~batchwork.TaskRunner`, with no asyncio and no clock.

Tasks are nodes numbered ``0, 1, 2, ...`` in push order. The graph answers three
questions, each as a plain function of its state:

* which tasks are ready (every task they need has succeeded) -- the ``ready`` deque;
* what a task's failure does to the tasks that need it, by each one's policy
  (:meth:`TaskGraph.fail` returns the cascade as :class:`Event` tuples);
* where a cycle is (:func:`find_cycle`), before any task of a new batch runs.

The runner owns everything that waits; this module only decides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final, NamedTuple

# Node states. Small ints rather than an Enum: they are read and written on the per-task
# hot path of the runner.
WAITING: Final = 0  # some need has not ended yet
READY: Final = 1  # every need succeeded; in ``ready``, not started
RUNNING: Final = 2  # started, or its fallback is being resolved
SUCCEEDED: Final = 3
FAILED: Final = 4
SKIPPED: Final = 5
CANCELLED: Final = 6

STATE_NAMES: Final = (
    "pending",
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
)

# What a node does when a task it needs does not succeed.
FAIL: Final = 0  # it fails too (the runner raises DependencyFailed)
SKIP: Final = 1  # it is skipped
FALLBACK: Final = 2  # the runner resolves it (a fallback callable), then reports the outcome


class Event(NamedTuple):
    """A node that ended (or must be resolved) because a node it needs did not succeed.

    ``outcome`` is ``FAILED``, ``SKIPPED`` (already applied) or ``RUNNING`` for a
    ``FALLBACK`` node that the caller must now end with :meth:`TaskGraph.succeed` or
    :meth:`TaskGraph.fail`. ``need`` is the node whose end caused it.
    """

    node: int
    outcome: int
    need: int


class TaskGraph:
    """Readiness and failure propagation for tasks added in batches.

    Example::

        graph = TaskGraph()
        graph.extend([(), (0,)], [FAIL, SKIP])   # task 1 needs task 0
        node = graph.take()                      # 0
        events = graph.fail(node)                # [Event(node=1, outcome=SKIPPED, need=0)]
    """

    __slots__ = ("_dependents", "_policy", "_unmet", "ready", "state")

    def __init__(self) -> None:
        self.state: list[int] = []
        self.ready: deque[int] = deque()
        self._unmet: list[int] = []
        self._dependents: list[list[int]] = []
        self._policy: list[int] = []

    def __len__(self) -> int:
        return len(self.state)

    def extend(self, needs: Sequence[Sequence[int]], policies: Sequence[int]) -> list[Event]:
        """Add one node per entry of ``needs`` (which may name nodes of the same batch).

        The batch must be acyclic (check with :func:`find_cycle` first). Nodes whose needs
        all succeeded already become ready; nodes needing a node that already failed, was
        skipped or was cancelled are resolved by policy at once, and returned as events.
        """
        first = len(self.state)
        count = len(needs)
        self.state.extend([WAITING] * count)
        self._unmet.extend([0] * count)
        self._dependents.extend([] for _ in range(count))
        self._policy.extend(policies)
        state, unmet, dependents = self.state, self._unmet, self._dependents
        unsettled: list[tuple[int, int]] = []
        for node in range(first, first + count):
            node_needs = needs[node - first]
            if not node_needs:
                continue
            for need in set(node_needs):
                need_state = state[need]
                if need_state == SUCCEEDED:
                    continue
                if need_state >= FAILED:
                    unsettled.append((node, need))
                else:
                    unmet[node] += 1
                    dependents[need].append(node)
        events: list[Event] = []
        for node, need in unsettled:
            if state[node] == WAITING:
                events.extend(self._resolve(node, need))
        for node in range(first, first + count):
            if state[node] == WAITING and unmet[node] == 0:
                state[node] = READY
                self.ready.append(node)
        return events

    def take(self) -> int:
        """Start the oldest ready node and return it."""
        node = self.ready.popleft()
        self.state[node] = RUNNING
        return node

    def succeed(self, node: int) -> None:
        """End ``node`` successfully; dependents whose last need it was become ready."""
        state, unmet = self.state, self._unmet
        state[node] = SUCCEEDED
        for dependent in self._dependents[node]:
            if state[dependent] == WAITING:
                unmet[dependent] -= 1
                if unmet[dependent] == 0:
                    state[dependent] = READY
                    self.ready.append(dependent)

    def fail(self, node: int, outcome: int = FAILED, *, cascade: bool = True) -> list[Event]:
        """End ``node`` with ``outcome`` (``FAILED``, ``SKIPPED`` or ``CANCELLED``).

        Returns what that does to the nodes that need it, transitively, in cascade order
        (nothing with ``cascade=False``: the caller is about to cancel them).
        """
        self.state[node] = outcome
        return self._cascade(node) if cascade else []

    def cancel_pending(self) -> list[int]:
        """Cancel every node that has not started; return them in push order."""
        state = self.state
        cancelled = [node for node, value in enumerate(state) if value <= READY]
        for node in cancelled:
            state[node] = CANCELLED
        self.ready.clear()
        return cancelled

    def _resolve(self, node: int, need: int) -> list[Event]:
        policy = self._policy[node]
        if policy == FALLBACK:
            self.state[node] = RUNNING
            return [Event(node, RUNNING, need)]
        outcome = SKIPPED if policy == SKIP else FAILED
        self.state[node] = outcome
        return [Event(node, outcome, need), *self._cascade(node)]

    def _cascade(self, root: int) -> list[Event]:
        # Iterative on purpose: a chain of 100,000 "fail" tasks must not hit the
        # recursion limit.
        state, policy, dependents = self.state, self._policy, self._dependents
        events: list[Event] = []
        todo = [root]
        while todo:
            need = todo.pop()
            for node in dependents[need]:
                if state[node] != WAITING:
                    continue
                if policy[node] == FALLBACK:
                    state[node] = RUNNING
                    events.append(Event(node, RUNNING, need))
                else:
                    state[node] = SKIPPED if policy[node] == SKIP else FAILED
                    events.append(Event(node, state[node], need))
                    todo.append(node)
        return events


def find_cycle(needs: Sequence[Sequence[int]], first: int = 0) -> list[int] | None:
    """Return one dependency cycle among nodes ``first ..`` or ``None`` when there is none.

    ``needs[i]`` lists what node ``first + i`` needs; references to nodes below ``first``
    are ignored (older nodes cannot need newer ones, so they close no cycle). The cycle is
    given in "needs" order -- each node needs the next, the last needs the first -- and
    starts at its lowest node, so the answer does not depend on traversal details.

    Example::

        find_cycle([(1,), (2,), (0,)])  # [0, 1, 2]
        find_cycle([(0,)])              # [0]  (a self-dependency)
    """
    count = len(needs)
    # 0 = unvisited, 1 = on the current path, 2 = finished.
    color = [0] * count
    for root in range(count):
        if color[root]:
            continue
        if not needs[root]:
            color[root] = 2
            continue
        path = [root]
        iters = [iter(needs[root])]
        color[root] = 1
        while path:
            for target in iters[-1]:
                local = target - first
                if local < 0 or color[local] == 2:
                    continue
                if color[local] == 1:
                    cycle = [first + n for n in path[path.index(local) :]]
                    low = cycle.index(min(cycle))
                    return cycle[low:] + cycle[:low]
                color[local] = 1
                path.append(local)
                iters.append(iter(needs[local]))
                break
            else:
                color[path.pop()] = 2
                iters.pop()
    return None
