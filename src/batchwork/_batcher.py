"""`Batcher`: many callers hand over one item each; one call processes a whole batch."""

from __future__ import annotations

import asyncio
import inspect
import logging
import operator
import random
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, Generic, TypeVar

from ._batch_answers import Answers, cancel_all
from ._batch_group import (
    DROPPED,
    FOREVER,
    ITEM,
    STATE,
    Batch,
    Entry,
    Group,
    Many,
)
from ._batch_room import Room
from ._batch_routing import route_results
from ._batch_stats import BatcherStats, BatchInfo, Counters
from ._flush import FlushReason
from ._keyconfig import BatchFn, KeyConfig, Settings, build_settings
from ._retry import Retry
from .errors import BatcherClosed, BatchTimeout, QueueFull

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("batchwork")

_item_of = operator.itemgetter(ITEM)

PutCallback = Callable[[T, R | BaseException], object]


class Batcher(Generic[T, R]):
    """Group single items from many callers into batches for one batch function.

    Each caller hands over one item and gets its own result back. A batch is flushed when
    it holds ``max_size`` items (or ``min_size``, when set), or when its oldest item is
    ``max_wait`` seconds old; ``max_wait=0`` flushes once the event loop has run every
    ready callback, so items submitted in one tick (e.g. through ``gather``) share a
    batch. ``fn`` is ``async def fn(items)`` or a plain ``def`` (run in ``executor``,
    default the loop's thread pool) and returns one entry per item, in order; with
    ``id_of`` it may return a mapping by id instead. An entry that is an exception fails
    only its caller; a raise fails every caller of the batch.

    Options: ``max_concurrency`` batches of one key in ``fn`` at once; ``timeout`` per
    call (then `BatchTimeout`); ``retry`` (a `Retry`); ``max_pending`` items accepted but
    not yet sent (``submit`` waits for room, ``put`` raises `QueueFull`); ``keys`` maps a
    key to its own `KeyConfig` (any key is batched apart from the others); ``on_batch``
    gets a `BatchInfo` per batch; ``on_result(item, outcome)`` hears ``put`` items;
    ``name`` appears in logs and errors. Invalid options raise ``ValueError`` naming the
    option.

    A caller cancelled while waiting disturbs no one: its item is dropped if not yet sent,
    and when every caller of a batch inside an async ``fn`` is gone (and it holds no
    ``put`` items) the call is cancelled. Every accepted item gets exactly one result or
    one exception: if the task running a batch is cancelled from outside (e.g. the event
    loop shuts down mid-batch), its ``submit`` callers are cancelled and its ``put`` items
    get an ``asyncio.CancelledError`` instance as their outcome (in their callback or
    ``on_result``). The batcher needs no running loop to be created and binds to the loop
    it is first used on. Errors of callbacks are logged on the ``batchwork`` logger.

    Example::

        async def embed(texts: list[str]) -> list[list[float]]: ...

        async with Batcher(embed, max_size=64, max_wait=0.002) as batcher:
            vector = await batcher.submit("hello")
            vectors = await batcher.submit_many(["a", "b"])
            batcher.put("fire and forget")
    """

    def __init__(
        self,
        fn: BatchFn[T, R],
        *,
        max_size: int = 100,
        max_wait: float = 0.01,
        min_size: int | None = None,
        max_concurrency: int = 1,
        timeout: float | None = None,
        retry: Retry | None = None,
        max_pending: int | None = None,
        keys: Mapping[Hashable, KeyConfig[T, R]] | None = None,
        id_of: Callable[[T], Hashable] | None = None,
        on_batch: Callable[[BatchInfo], object] | None = None,
        on_result: PutCallback[T, R] | None = None,
        executor: Executor | None = None,
        name: str | None = None,
    ) -> None:
        self._defaults: Settings[T, R] = build_settings(
            fn,
            max_size=max_size,
            max_wait=max_wait,
            min_size=min_size,
            max_concurrency=max_concurrency,
            timeout=timeout,
            retry=retry,
            id_of=id_of,
        )
        if max_pending is not None and (isinstance(max_pending, bool) or max_pending < 1):
            raise ValueError(f"max_pending must be >= 1 or None, got {max_pending!r}")
        self._keyed: dict[Hashable, Settings[T, R]] = {
            key: self._defaults.merged(config, where=f"keys[{key!r}].")
            for key, config in (keys or {}).items()
        }
        self._on_batch = on_batch
        self._executor = executor
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._groups: dict[Hashable, Group] = {}
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._change: asyncio.Future[None] | None = None
        self._room = Room(max_pending, self._notify)
        self._counters = Counters()
        self._answers = Answers(self._counters, self.name, on_batch, on_result)
        self._rng = random.Random()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Batcher {self.name!r} {state} pending={self._room.pending}>"

    # -- public API --------------------------------------------------------------------

    async def submit(self, item: T, *, key: Hashable = None) -> R:
        """Hand over one item and wait for its own result.

        Raises the item's exception entry, the batch's exception, `BatchResultError`,
        `BatchTimeout` or `BatcherClosed`. A caller cancelled while waiting disturbs no
        one: its item is dropped if not yet sent.

        Example::

            ok = await batcher.submit(event, key="audit")
        """
        loop = self._loop
        if loop is None or loop is not asyncio.get_running_loop():
            loop = self._bind()
        if self._closed:
            raise self._closed_error(key)
        room = self._room
        if room.limit is not None and not room.fits():
            await room.wait(loop)
        group = self._groups.get(key)
        if group is None:
            group = self._new_group(key, loop)
        fut: asyncio.Future[R] = loop.create_future()
        entry: Entry = [item, loop.time(), fut, None, 0, None]
        group.push(entry)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                group.abandon(entry)
            raise

    async def submit_many(
        self,
        items: Iterable[T],
        *,
        key: Hashable = None,
        return_exceptions: bool = False,
    ) -> list[R]:
        """Hand over several items; their results come back in the same order.

        Raises the first failure (by position) once every item is answered, unless
        ``return_exceptions`` is true: then failures stand in the list. With
        ``max_pending``, more items than the bound are fed in as room appears.

        Example::

            oks = await batcher.submit_many(events)
        """
        loop = self._bind()
        if self._closed:
            raise self._closed_error(key)
        batch = list(items)
        if not batch:
            return []
        many = Many(loop.create_future(), len(batch), return_exceptions)
        try:
            await self._feed(loop, batch, key, many)
            result: list[R] = await many.fut
            return result
        except BaseException:
            self._abandon_many(many, key)
            raise

    def put(
        self,
        item: T,
        *,
        key: Hashable = None,
        callback: PutCallback[T, R] | None = None,
    ) -> None:
        """Hand over one item without waiting (fire and forget).

        Its outcome goes to ``callback(item, result_or_exception)``, else to the
        batcher's ``on_result``; a failure with neither is logged on ``batchwork``.
        Raises `QueueFull` when ``max_pending`` items already wait. Needs a running loop.

        Example::

            batcher.put(event, callback=lambda item, outcome: print(item, outcome))
        """
        loop = self._loop
        if loop is None or loop is not asyncio.get_running_loop():
            loop = self._bind()
        if self._closed:
            raise self._closed_error(key)
        if self._room.limit is not None and not self._room.fits():
            self._counters.rejected += 1
            raise QueueFull(
                f"batcher {self.name!r} already holds max_pending={self._room.limit} items"
            )
        group = self._groups.get(key)
        if group is None:
            group = self._new_group(key, loop)
        group.push([item, loop.time(), None, callback, 0, None])

    async def flush(self) -> None:
        """Send every item pending now to the batch function and wait for those batches.

        Example::

            batcher.put(event)
            await batcher.flush()  # the event's callback has run
        """
        if self._loop is None:
            return
        self._bind()
        marks = [(group, group.pushed) for group in list(self._groups.values())]
        for group, mark in marks:
            group.force(FlushReason.FLUSH, mark)
        await self._wait_until(lambda: all(group.flushed(mark) for group, mark in marks))
        await asyncio.sleep(0)  # as in close: let the answered callers run first

    async def close(self, drain: bool = True) -> None:
        """Stop accepting items; settle every pending one; wait for batches in flight.

        With ``drain`` every pending item is still processed (partial batches included)
        and ``close`` returns after every ``put`` callback has run. Without it, pending
        callers and ``put`` callbacks get `BatcherClosed`; a batch already inside ``fn``
        still delivers its outcome. Calling ``close`` twice is harmless.

        Example::

            await batcher.close(drain=False)
        """
        self._closed = True
        if self._loop is None:
            return
        self._bind()
        if not drain:
            await self._answers.await_callbacks(self._discard_pending())
        for group in list(self._groups.values()):
            group.force(FlushReason.CLOSE, FOREVER)
        await self._wait_until(self._idle)
        # Callers answered by the last batch are woken but have not run yet; one more
        # tick lets them finish first, so a caller's task is done when close returns.
        await asyncio.sleep(0)

    @property
    def stats(self) -> BatcherStats:
        """A frozen snapshot of the counters (see `BatcherStats`).

        Example::

            print(batcher.stats.mean_size)
        """
        in_flight = sum(group.running for group in self._groups.values())
        return self._counters.snapshot(
            pending=self._room.pending, in_flight=in_flight, keys=len(self._groups)
        )

    @property
    def closed(self) -> bool:
        """Whether `close` was called.

        Example::

            assert not batcher.closed
        """
        return self._closed

    async def __aenter__(self) -> Batcher[T, R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- loop binding and groups ---------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                f"Batcher {self.name!r} is bound to the event loop it was first used on "
                "and cannot be used from another event loop; create one Batcher per loop"
            )
        return loop

    def _closed_error(self, key: Hashable) -> BatcherClosed:
        return BatcherClosed(f"batcher {self.name!r} is closed (key={key!r})")

    def _new_group(self, key: Hashable, loop: asyncio.AbstractEventLoop) -> Group:
        settings = self._keyed.get(key)
        listed = settings is not None or key is None
        group = Group(self, key, settings or self._defaults, loop, listed=listed)
        self._groups[key] = group
        if self._closed:
            group.force(FlushReason.CLOSE, FOREVER)
        return group

    def _forget(self, group: Group) -> None:
        # Groups of keys nobody configured go away when idle, so per-tenant keys do not
        # pile up; the next item for that key simply builds a new one.
        if self._groups.get(group.key) is group:
            group.cancel_timer()
            del self._groups[group.key]

    # -- backpressure --------------------------------------------------------------------

    async def _feed(
        self, loop: asyncio.AbstractEventLoop, items: list[T], key: Hashable, many: Many
    ) -> None:
        fut = many.fut
        start = 0
        while start < len(items):
            room = self._room.free()
            if room == 0:
                await self._room.wait(loop)
                # Our reservation was just released into the free room; with others
                # still in line, take only that one place.
                room = self._room.free() or 1
            end = min(len(items), start + room)
            at = loop.time()
            chunk = [[items[i], at, fut, many, i, None] for i in range(start, end)]
            many.entries.extend(chunk)
            group = self._groups.get(key)
            if group is None:
                group = self._new_group(key, loop)
            group.push_many(chunk)
            start = end

    def _abandon_many(self, many: Many, key: Hashable) -> None:
        if not many.fut.done():
            many.fut.cancel()
        elif not many.fut.cancelled():
            return
        for entry in many.entries:
            state = entry[STATE]
            if state is None:
                # A queued entry keeps its group alive, so the key still maps to it.
                self._groups[key].drop(entry)
            elif state is not DROPPED:
                state.group.abandon(entry)

    # -- waiting for the batcher to settle -------------------------------------------------

    def _idle(self) -> bool:
        return self._room.idle and not self._tasks

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        assert self._loop is not None
        while not done():
            change = self._change
            if change is None or change.done():
                change = self._change = self._loop.create_future()
            await change

    def _notify(self) -> None:
        change = self._change
        if change is not None:
            self._change = None
            if not change.done():
                change.set_result(None)

    def _discard_pending(self) -> list[Awaitable[object]]:
        closed = BatcherClosed(f"batcher {self.name!r} was closed before this item was sent")
        awaiting: list[Awaitable[object]] = []
        for group in list(self._groups.values()):
            entries = group.discard_pending()
            if entries:
                awaiting.extend(self._answers.fail_all(entries, closed))
        self._room.fail_waiters(closed)
        self._notify()
        return awaiting

    # -- running batches -----------------------------------------------------------------

    def _launch(self, group: Group, batch: Batch) -> asyncio.Task[None]:
        task = group.loop.create_task(self._run(group, batch))
        self._tasks.add(task)
        return task

    def _spawn_tick(self, group: Group) -> asyncio.Task[None]:
        task = group.loop.create_task(self._run(group, None))
        self._tasks.add(task)
        return task

    async def _run(self, group: Group, batch: Batch | None) -> None:
        """Run one batch in this task: ``batch``, or for a next-tick flush (``None``) the
        first batch due now (any others due get tasks of their own).

        Calls fn (with retries), answers the batch's callers and frees its slot.
        """
        # One coroutine does it all (bookkeeping, the calls of fn, the answers), not a
        # nested coroutine or a done callback; and the plain case (async fn, no timeout)
        # awaits fn right here: in next-tick mode each frame or loop callback saved per
        # batch is a visible share of a single item's round trip.
        task = asyncio.current_task()
        interrupted: asyncio.CancelledError | None = None
        awaiting: Sequence[Awaitable[object]] = ()
        try:
            if batch is None:
                if group.timer is task:
                    group.timer = None
                batch = group.pump(inline=True)
                if batch is None:
                    return
                batch.task = task
            settings = group.settings
            started = group.loop.time() if self._on_batch is not None else 0.0
            entries = batch.entries
            items = [entries[0][ITEM]] if len(entries) == 1 else list(map(_item_of, entries))
            direct = settings.is_async and settings.timeout is None
            attempts = 0
            outcomes: Any = None
            error: BaseException | None = None
            try:
                while not batch.abandoned:
                    attempts += 1
                    try:
                        batch.in_call = True
                        if direct:
                            raw = await settings.fn(items)  # type: ignore[misc]
                        else:
                            raw = await self._attempt(settings, items)
                    except asyncio.CancelledError:
                        if not batch.abandoned:
                            raise
                        _uncancel()
                        break
                    except BaseException as exc:  # the batch loop survives anything fn does
                        error = exc
                        if await self._backoff(settings.retry, exc, attempts, batch):
                            continue
                        break
                    finally:
                        batch.in_call = False
                    error = None
                    if type(raw) is list and len(raw) == len(items) and settings.id_of is None:
                        outcomes = raw  # the common shape, checked here to save a call
                    else:
                        outcomes, error = self._route(raw, items, settings)
                    break
                awaiting = self._answers.settle(batch, outcomes, error)
                self._answers.report(group, batch, attempts, started, error)
            except asyncio.CancelledError as exc:
                # Cancelled from outside (e.g. the loop is shutting down): nobody else will
                # answer this batch. Its callers are cancelled rather than left hanging, and
                # its put items hear a CancelledError, so each still gets exactly one outcome.
                cancel_all(entries)
                awaiting = self._answers.fail_puts(entries, _cancelled_error(self.name))
                self._answers.report(group, batch, attempts, started, exc)
                interrupted = exc
            finally:
                group.finish(batch)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise error  # after answering the callers, let it stop the loop as asyncio does
            if awaiting:
                await self._answers.await_callbacks(awaiting)
            if interrupted is not None:
                raise interrupted
        finally:
            self._tasks.discard(task)
            if self._change is not None:
                self._notify()

    def _route(
        self, raw: object, items: list[T], settings: Settings[T, R]
    ) -> tuple[Any, BaseException | None]:
        """(one outcome per item, None), or (None, the error that fails the batch)."""
        if type(raw) is list and len(raw) == len(items) and settings.id_of is None:
            return raw, None
        try:
            outcomes, unknown = route_results(raw, items, settings.id_of)
        except Exception as exc:
            return None, exc
        self._counters.unknown_ids += unknown
        return outcomes, None

    async def _backoff(
        self, retry: Retry | None, exc: BaseException, attempts: int, batch: Batch
    ) -> bool:
        """Count a failed call; sleep before the next one and say whether to make it."""
        counters = self._counters
        if isinstance(exc, BatchTimeout):
            counters.timeouts += 1
        if retry is None or not isinstance(exc, Exception) or not retry.should_retry(exc, attempts):
            return False
        counters.retries += 1
        batch.in_call = True  # the sleep is cancellable like the call itself
        try:
            await asyncio.sleep(retry.delay(attempts, self._rng))
        except asyncio.CancelledError:
            if not batch.abandoned:
                raise
            _uncancel()
            return False
        finally:
            batch.in_call = False
        return True

    async def _attempt(self, settings: Settings[T, R], items: list[T]) -> object:
        if settings.timeout is None:
            return await self._invoke(settings, items)
        timeout = asyncio.timeout(settings.timeout)
        try:
            async with timeout:
                return await self._invoke(settings, items)
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise BatchTimeout(
                f"batch function of {self.name!r} took longer than "
                f"timeout={settings.timeout}s for {len(items)} items"
            ) from exc

    async def _invoke(self, settings: Settings[T, R], items: list[T]) -> object:
        if settings.is_async:
            result: object = settings.fn(items)
        else:
            assert self._loop is not None
            result = await self._loop.run_in_executor(self._executor, settings.fn, items)
        if inspect.isawaitable(result):
            result = await result
        return result


def _cancelled_error(name: str) -> asyncio.CancelledError:
    return asyncio.CancelledError(
        f"the task running a batch of {name!r} was cancelled before the batch was answered"
    )


def _uncancel() -> None:
    # The cancellation was ours (every caller left); do not let it leak into the rest of
    # this task, e.g. into asyncio.timeout's bookkeeping or the put callbacks.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
