"""One key's queue: pending entries, its flush timer and its batches in flight.

An *entry* is a small list ``[item, at, fut, sink, index, state]`` (a list, not an
object, because it is built once per item on the hot path):

* ``fut`` is the caller's future (``submit``), the shared future of a ``submit_many``
  call (then ``sink`` is its `Many` collector and ``index`` the item's position), or
  ``None`` for a ``put`` item (then ``sink`` is its callback or ``None``);
* ``state`` is ``None`` while queued, `DROPPED` once its caller left before it was sent,
  or the `Batch` that carries it.

Every live entry is counted exactly once in ``Group.live`` and ``Room.pending``; an
entry leaves that count either when a batch takes it or when it is dropped, never both,
because both paths look at (and set) ``state``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._flush import FlushReason, decide
from ._keyconfig import Settings

if TYPE_CHECKING:
    from ._batcher import Batcher

Entry = list[Any]

ITEM: Final = 0
AT: Final = 1
FUT: Final = 2
SINK: Final = 3
INDEX: Final = 4
STATE: Final = 5

DROPPED: Final = "dropped"
"""``state`` of an entry whose caller left before it was sent."""

FOREVER: Final = sys.maxsize


class Many:
    """Collects the results of one ``submit_many`` call into one future."""

    __slots__ = ("entries", "first_error", "fut", "left", "results", "return_exceptions")

    def __init__(self, fut: asyncio.Future[Any], size: int, return_exceptions: bool) -> None:
        self.fut = fut
        self.results: list[Any] = [None] * size
        self.left = size
        self.first_error = size
        self.return_exceptions = return_exceptions
        self.entries: list[Entry] = []

    def settle(self, index: int, outcome: Any) -> None:
        """Record one item's outcome; resolve the future once every item has one."""
        if self.fut.done():
            return
        self.results[index] = outcome
        if isinstance(outcome, BaseException) and index < self.first_error:
            self.first_error = index
        self.left -= 1
        if self.left == 0:
            if self.first_error < len(self.results) and not self.return_exceptions:
                self.fut.set_exception(self.results[self.first_error])
            else:
                self.fut.set_result(self.results)

    def settle_run(self, start: int, outcomes: Sequence[Any]) -> int:
        """Record the outcomes of the items at ``start``, ``start + 1``, ... at once (a
        batch that holds a run of this call's items); return how many are exceptions."""
        failed = 0
        for offset, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                if not failed and start + offset < self.first_error:
                    self.first_error = start + offset
                failed += 1
        if self.fut.done():
            return failed
        count = len(outcomes)
        self.results[start : start + count] = outcomes
        self.left -= count
        if self.left == 0:
            if self.first_error < len(self.results) and not self.return_exceptions:
                self.fut.set_exception(self.results[self.first_error])
            else:
                self.fut.set_result(self.results)
        return failed


class Batch:
    """Entries handed to one call of the batch function (and its retries)."""

    __slots__ = (
        "abandoned",
        "callers",
        "entries",
        "group",
        "in_call",
        "lo",
        "puts",
        "reason",
        "task",
        "waited",
    )

    def __init__(self, group: Group, reason: FlushReason, lo: int) -> None:
        self.group = group
        self.reason = reason
        self.lo = lo
        self.entries: list[Entry] = []
        self.callers = 0
        self.puts = 0
        self.waited = 0.0
        self.task: asyncio.Task[None] | None = None
        self.abandoned = False
        self.in_call = False


class Group:
    """The queue, timer and in-flight batches of one key."""

    __slots__ = (
        "force_reason",
        "force_upto",
        "inflight",
        "key",
        "listed",
        "live",
        "loop",
        "next_tick",
        "owner",
        "popped",
        "pushed",
        "queue",
        "room",
        "running",
        "settings",
        "threshold",
        "timer",
        "timer_when",
    )

    def __init__(
        self,
        owner: Batcher[Any, Any],
        key: Hashable,
        settings: Settings[Any, Any],
        loop: asyncio.AbstractEventLoop,
        *,
        listed: bool,
    ) -> None:
        self.owner = owner
        self.room = owner._room
        self.key = key
        self.settings = settings
        self.loop = loop
        self.listed = listed
        self.queue: deque[Entry] = deque()
        self.live = 0
        self.running = 0
        self.pushed = 0
        self.popped = 0
        self.force_upto = 0
        self.force_reason = FlushReason.FLUSH
        self.inflight: list[Batch] = []
        # A loop timer, or in next-tick mode the task that will flush (see _open_window).
        self.timer: asyncio.Handle | asyncio.Task[None] | None = None
        self.timer_when = 0.0
        self.threshold = settings.threshold
        self.next_tick = settings.max_wait == 0

    # -- accepting ---------------------------------------------------------------------

    def push(self, entry: Entry) -> None:
        """Queue one entry and flush or arm the timer as the settings say."""
        self.queue.append(entry)
        self.pushed += 1
        self.live += 1
        self.room.pending += 1
        if self.live >= self.threshold or self.force_upto > self.popped:
            self.pump()
        elif self.timer is None:
            self._open_window(entry[AT])

    def push_many(self, entries: list[Entry]) -> None:
        """Queue several entries at once (one ``submit_many`` chunk)."""
        self.queue.extend(entries)
        count = len(entries)
        self.pushed += count
        self.live += count
        self.room.pending += count
        if self.live >= self.threshold or self.force_upto > self.popped:
            self.pump()
        elif self.timer is None:
            self._open_window(entries[0][AT])

    def _open_window(self, at: float) -> None:
        if self.running >= self.settings.max_concurrency:
            return  # every slot is taken: the batch that ends first pumps the queue
        if self.next_tick:
            # Next-tick mode: everything already scheduled in this loop iteration (e.g.
            # the other tasks of a gather) runs before this task starts and joins the
            # batch. The task then runs that batch itself, which saves a loop iteration
            # per round trip over "a timer callback that starts a task".
            self.timer = self.owner._spawn_tick(self)
            self.timer_when = at
        else:
            self.pump(at)

    # -- leaving early -----------------------------------------------------------------

    def abandon(self, entry: Entry) -> None:
        """The entry's caller left: drop it if queued, or let go of its batch."""
        state = entry[STATE]
        if state is None:
            self.drop(entry)
        elif state is not DROPPED:
            batch: Batch = state
            batch.callers -= 1
            if batch.callers <= 0 and batch.puts == 0 and not batch.abandoned:
                batch.abandoned = True
                # A sync fn keeps running in its thread whatever we do, and its slot must
                # stay taken until it returns, so only async calls are cancelled.
                if batch.in_call and batch.task is not None and self.settings.is_async:
                    batch.task.cancel()

    def drop(self, entry: Entry) -> None:
        """Take a queued entry out of the counts; it stays in the deque until popped."""
        entry[STATE] = DROPPED
        self.live -= 1
        counters = self.owner._counters
        counters.dropped += 1
        counters.items += 1
        room = self.room
        room.pending -= 1
        room.freed()

    # -- flushing ----------------------------------------------------------------------

    def pump(self, now: float | None = None, *, inline: bool = False) -> Batch | None:
        """Start every batch that is due and has a concurrency slot; arm the timer.

        With ``inline`` the first due batch is not given a task but returned, for the
        caller (the next-tick task) to run itself.
        """
        settings = self.settings
        queue = self.queue
        first: Batch | None = None
        if self.running:
            # Batches taken earlier may have tasks that have not started yet: a batch run
            # inline would call fn before them, out of the order they were taken in.
            inline = False
        while self.running < settings.max_concurrency:
            self._prune()
            if not queue:
                break
            if now is None:
                now = self.loop.time()
            forced = self.force_reason if self.popped < self.force_upto else None
            decision = decide(self.live, queue[0][AT], now, settings, forced)
            if decision is None:
                break
            if isinstance(decision, float):
                self._arm(decision)
                break
            batch = self._take(decision, now)
            if batch is None:
                continue
            if inline and first is None:
                first = batch
            else:
                batch.task = self.owner._launch(self, batch)
        return first

    def force(self, reason: FlushReason, upto: int) -> None:
        """Treat every entry pushed before ``upto`` as due, then pump."""
        if upto > self.force_upto:
            self.force_upto = upto
        if reason is FlushReason.CLOSE:
            self.force_reason = reason
        self.pump()

    def flushed(self, mark: int) -> bool:
        """Whether every entry pushed before ``mark`` has left the queue and its batch."""
        return self.popped >= mark and all(batch.lo >= mark for batch in self.inflight)

    def _prune(self) -> None:
        queue = self.queue
        while queue:
            entry = queue[0]
            state = entry[STATE]
            if state is None:
                fut = entry[FUT]
                if fut is None or not fut.done():
                    return
                self.drop(entry)
            queue.popleft()
            self.popped += 1

    def _arm(self, when: float) -> None:
        # Timers only ever fire early (the oldest item can only get younger), and an
        # early wake just re-arms, so a later deadline never replaces an earlier timer.
        if self.timer is not None:
            if self.timer_when <= when:
                return
            self._detach_timer()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_when = when

    def _on_timer(self) -> None:
        when = self.timer_when
        self.timer = None
        now = self.loop.time()
        self.pump(now if now > when else when)

    def _take(self, reason: FlushReason, now: float) -> Batch | None:
        queue = self.queue
        size = self.settings.max_size
        batch = Batch(self, reason, self.popped)
        entries = batch.entries
        taken = popped = callers = puts = 0
        while queue and taken < size:
            entry = queue.popleft()
            popped += 1
            if entry[STATE] is not None:
                continue
            fut = entry[FUT]
            if fut is None:
                puts += 1
            elif fut.done():
                self.drop(entry)
                continue
            else:
                callers += 1
            entry[STATE] = batch
            entries.append(entry)
            taken += 1
        self.popped += popped
        if not taken:
            return None
        self.live -= taken
        batch.callers = callers
        batch.puts = puts
        batch.waited = now - entries[0][AT]
        owner = self.owner
        room = self.room
        room.pending -= taken
        owner._counters.items += taken
        if taken == 1:
            owner._counters.waits.append(batch.waited)
        else:
            owner._counters.waits.extend([now - entry[AT] for entry in entries])
        self.running += 1
        self.inflight.append(batch)
        if room.limit is not None or owner._change is not None:
            room.freed()
        return batch

    def finish(self, batch: Batch) -> None:
        """A batch left the batch function: free its slot and start what is due."""
        self.running -= 1
        self.inflight.remove(batch)
        batch.entries = []  # each entry points at its batch: free them now, not by the GC
        if self.queue:
            self.pump()
        elif not self.listed and not self.running:
            self.owner._forget(self)

    def discard_pending(self) -> list[Entry]:
        """Remove and return every live queued entry (``close(drain=False)``)."""
        self.cancel_timer()
        live: list[Entry] = []
        queue = self.queue
        while queue:
            entry = queue.popleft()
            self.popped += 1
            if entry[STATE] is None:
                fut = entry[FUT]
                if fut is not None and fut.done():
                    self.drop(entry)
                    continue
                entry[STATE] = DROPPED
                live.append(entry)
        self.live -= len(live)
        self.room.pending -= len(live)
        self.owner._counters.items += len(live)
        return live

    def cancel_timer(self) -> None:
        """Cancel the flush timer (the group is going away, or closing)."""
        if self.timer is not None:
            self._detach_timer()

    def _detach_timer(self) -> None:
        timer = self.timer
        self.timer = None
        # A next-tick task is never cancelled: cancelled before it starts, it would skip
        # its own bookkeeping. Detached, it finds nothing due and ends.
        if isinstance(timer, asyncio.Handle):
            timer.cancel()
