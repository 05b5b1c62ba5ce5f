"""Answering the callers of a batch: futures, ``put`` callbacks, ``on_batch`` reports."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._batch_group import FUT, INDEX, ITEM, SINK, Batch, Entry, Group
from ._batch_stats import BatchInfo, Counters

logger = logging.getLogger("batchwork")

NOTHING: tuple[Awaitable[object], ...] = ()
"""No callbacks to wait for (shared, so the common case allocates nothing)."""


class Answers:
    """Delivers outcomes for one `Batcher`; never lets a callback error escape."""

    __slots__ = ("counters", "name", "on_batch", "on_result")

    def __init__(
        self,
        counters: Counters,
        name: str,
        on_batch: Callable[[BatchInfo], object] | None,
        on_result: Callable[[Any, Any], object] | None,
    ) -> None:
        self.counters = counters
        self.name = name
        self.on_batch = on_batch
        self.on_result = on_result

    def settle(
        self, batch: Batch, outcomes: Any, error: BaseException | None
    ) -> Sequence[Awaitable[object]]:
        """Give every caller of ``batch`` its outcome (or ``error`` for all of them).

        Returns the awaitables that async ``put`` callbacks gave back.
        """
        entries = batch.entries
        if batch.abandoned and not batch.puts:
            return NOTHING
        if outcomes is None:
            error = error if error is not None else asyncio.CancelledError()
            return self.fail_all(entries, error)
        if batch.puts:
            return self._settle_with_puts(entries, outcomes)
        if len(entries) == 1 and entries[0][SINK] is None:
            # One submit caller (a next-tick round trip): no loop, no call.
            fut = entries[0][FUT]
            outcome = outcomes[0]
            if isinstance(outcome, BaseException):
                self.counters.item_errors += 1
                if not fut.done():
                    set_exception(fut, outcome)
            elif not fut.done():
                fut.set_result(outcome)
            return NOTHING
        self._settle_callers(entries, outcomes)
        return NOTHING

    def _settle_with_puts(
        self, entries: list[Entry], outcomes: Sequence[Any]
    ) -> Sequence[Awaitable[object]]:
        puts: list[tuple[Entry, Any]] = []
        callers: list[Entry] = []
        caller_outcomes: list[Any] = []
        for entry, outcome in zip(entries, outcomes):  # noqa: B905 - lengths checked
            if entry[FUT] is None:
                puts.append((entry, outcome))
                if isinstance(outcome, BaseException):
                    self.counters.item_errors += 1
            else:
                callers.append(entry)
                caller_outcomes.append(outcome)
        if callers:
            self._settle_callers(callers, caller_outcomes)
        return self._run_callbacks(puts)

    def _settle_callers(self, entries: list[Entry], outcomes: Sequence[Any]) -> None:
        first = entries[0]
        many = first[SINK]
        if (
            many is not None
            and entries[-1][SINK] is many
            and entries[-1][INDEX] - first[INDEX] == len(entries) - 1
        ):
            # The whole batch is one run of a submit_many call (its indexes grow by one
            # per entry, so nothing else fits between the ends): settle it in one go
            # rather than one method call per item.
            failed = many.settle_run(first[INDEX], outcomes)
            if failed:
                self.counters.item_errors += failed
            return
        failed = 0
        for entry, outcome in zip(entries, outcomes):  # noqa: B905 - lengths checked
            is_error = isinstance(outcome, BaseException)
            if is_error:
                failed += 1
            sink = entry[SINK]
            if sink is not None:
                sink.settle(entry[INDEX], outcome)
            else:
                fut = entry[FUT]
                if fut.done():
                    continue
                if is_error:
                    set_exception(fut, outcome)
                else:
                    fut.set_result(outcome)
        if failed:
            self.counters.item_errors += failed

    def fail_all(self, entries: list[Entry], error: BaseException) -> Sequence[Awaitable[object]]:
        puts: list[tuple[Entry, Any]] = []
        for entry in entries:
            fut = entry[FUT]
            if fut is None:
                puts.append((entry, error))
            elif entry[SINK] is not None:
                entry[SINK].settle(entry[INDEX], error)
            elif not fut.done():
                set_exception(fut, error)
        self.counters.item_errors += len(entries)
        return self._run_callbacks(puts) if puts else NOTHING

    def fail_puts(self, entries: list[Entry], error: BaseException) -> list[Awaitable[object]]:
        """Give every ``put`` entry among ``entries`` ``error`` (callers are not touched)."""
        puts = [(entry, error) for entry in entries if entry[FUT] is None]
        self.counters.item_errors += len(puts)
        return self._run_callbacks(puts) if puts else []

    def _run_callbacks(self, puts: list[tuple[Entry, Any]]) -> list[Awaitable[object]]:
        awaiting: list[Awaitable[object]] = []
        default = self.on_result
        for entry, outcome in puts:
            callback = entry[SINK] or default
            item = entry[ITEM]
            if callback is None:
                if isinstance(outcome, BaseException):
                    logger.error(
                        "batcher %r: put item %r failed and has no callback",
                        self.name,
                        item,
                        exc_info=outcome,
                    )
                continue
            try:
                returned = callback(item, outcome)
            except Exception:
                logger.exception("batcher %r: callback for put item %r raised", self.name, item)
                continue
            # Most callbacks are plain functions returning None: skip the (comparatively
            # slow) awaitable check for them, it is a visible share of a put's cost.
            if returned is not None and inspect.isawaitable(returned):
                awaiting.append(returned)
        return awaiting

    async def await_callbacks(self, awaiting: Sequence[Awaitable[object]]) -> None:
        for awaitable in awaiting:
            try:
                await awaitable
            except Exception:
                logger.exception("batcher %r: async put callback raised", self.name)

    def report(
        self,
        group: Group,
        batch: Batch,
        attempts: int,
        started: float,
        error: BaseException | None,
    ) -> None:
        counters = self.counters
        counters.batches += 1
        counters.batched_items += len(batch.entries)
        if batch.abandoned:
            counters.cancelled_batches += 1
        elif error is not None:
            counters.errors += 1
        on_batch = self.on_batch
        if on_batch is None:
            return
        info = BatchInfo(
            id=os.urandom(8).hex(),
            key=group.key,
            size=len(batch.entries),
            attempts=attempts,
            waited=batch.waited,
            duration=group.loop.time() - started,
            error=error,
            reason=batch.reason.value,
            cancelled=batch.abandoned,
        )
        try:
            on_batch(info)
        except Exception:
            logger.exception("batcher %r: on_batch callback raised", self.name)


def cancel_all(entries: list[Entry]) -> None:
    """Cancel the futures of callers nobody will answer (the batch task was cancelled)."""
    for entry in entries:
        fut = entry[FUT]
        if fut is not None and not fut.done():
            fut.cancel()


def set_exception(fut: asyncio.Future[Any], error: BaseException) -> None:
    try:
        fut.set_exception(error)
    except TypeError:  # StopIteration cannot travel through a future
        fut.set_exception(RuntimeError(f"batch function returned {error!r}"))
