"""SyncBatcher: the blocking twin of Batcher, for threaded programs."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from ._batch_stats import BatcherStats, BatchInfo
from ._batcher import Batcher, PutCallback
from ._keyconfig import BatchFn, KeyConfig
from ._portal import BlockingPortal, PortalClosed
from ._retry import Retry
from .errors import BatcherClosed

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")

logger = logging.getLogger("batchwork")


class SyncBatcher(Generic[T, R]):
    """A ``Batcher`` for threaded code: every method blocks the calling thread instead.

    It takes exactly ``Batcher``'s options (see there) and runs one ``Batcher`` on a
    private event-loop thread, started on first use and stopped and joined by
    ``close()``. Any number of threads may call ``submit`` at once; each gets its own
    result. ``fn`` may be ``async def`` (run on the helper loop) or a plain ``def`` (run
    in ``executor``, a thread pool by default). Callbacks (``on_batch``, ``on_result``,
    ``put(callback=...)``) run on the helper thread and must not call back into this
    ``SyncBatcher`` blockingly.

    After ``close()``, ``submit``, ``submit_many`` and ``put`` raise ``BatcherClosed``.
    An unclosed ``SyncBatcher`` stops its thread when garbage-collected, but only
    ``close()`` (or ``with``) guarantees that pending ``put`` items are processed.

    Example::

        def write_rows(rows: list[Row]) -> list[int]:
            return db.insert_many(rows)  # one round trip for the whole batch

        with SyncBatcher(write_rows, max_size=500, max_wait=0.05) as batcher:
            row_id = batcher.submit(row)          # from any thread
            ids = batcher.submit_many(more_rows)
            batcher.put(row)                      # fire-and-forget
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
        executor: concurrent.futures.Executor | None = None,
        name: str | None = None,
    ) -> None:
        # Built here, outside any loop, so that bad options fail in the caller's thread.
        self._batcher: Batcher[T, R] = Batcher(
            fn,
            max_size=max_size,
            max_wait=max_wait,
            min_size=min_size,
            max_concurrency=max_concurrency,
            timeout=timeout,
            retry=retry,
            max_pending=max_pending,
            keys=keys,
            id_of=id_of,
            on_batch=on_batch,
            on_result=on_result,
            executor=executor,
            name=name,
        )
        self._name = name
        self._portal = BlockingPortal(name=f"batchwork-{name or 'sync-batcher'}")
        # Without max_pending nothing but close() refuses an item, so submit and put can
        # go through the inbox; with it, submit must wait for room and put must be able
        # to raise QueueFull, so both ask the loop thread directly.
        self._via_inbox = max_pending is None
        self._closed = False
        self._close_lock = threading.Lock()
        # submit() and put() hand items to the loop thread through this inbox; closing
        # under the same lock orders every accepted item before the batcher's close.
        self._inbox: list[tuple[T, Hashable, PutCallback[T, R] | None]] = []
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False
        # Garbage collection stops an unclosed batcher's idle thread; at interpreter exit
        # the daemon thread is simply abandoned (a hung fn must not block exit).
        weakref.finalize(self, _stop_portal, self._portal).atexit = False

    @property
    def batcher(self) -> Batcher[T, R]:
        """The async ``Batcher`` underneath (it lives on the helper thread's loop).

        Example::

            print(batcher.batcher.name)
        """
        return self._batcher

    def submit(self, item: T, *, key: Hashable | None = None) -> R:
        """Hand over one item; block until its batch ran and return its own result.

        Raises what the batch gave this item (an exception entry, the batch's error,
        ``BatchTimeout``, ``BatchResultError``), or ``BatcherClosed``.

        Example::

            row_id = batcher.submit(row, key="users")
        """
        if not self._via_inbox:
            return self._call(functools.partial(self._batcher.submit, item, key=key))
        self._portal.refuse_own_thread()
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._send(item, key, _resolver(future))
        return future.result()

    @overload
    def submit_many(
        self,
        items: Iterable[T],
        *,
        key: Hashable | None = None,
        return_exceptions: Literal[False] = False,
    ) -> list[R]: ...
    @overload
    def submit_many(
        self, items: Iterable[T], *, key: Hashable | None = None, return_exceptions: bool
    ) -> list[R | BaseException]: ...
    def submit_many(
        self, items: Iterable[T], *, key: Hashable | None = None, return_exceptions: bool = False
    ) -> list[R] | list[R | BaseException]:
        """Hand over several items; block until all ran; return their results in order.

        Raises the first failure (by position) once every item is answered, unless
        ``return_exceptions`` is true: then failures stand in the list.

        Example::

            ids = batcher.submit_many(rows)
        """
        batch = list(items)
        call = functools.partial(
            self._batcher.submit_many, batch, key=key, return_exceptions=return_exceptions
        )
        return self._call(call)

    def put(
        self,
        item: T,
        *,
        key: Hashable | None = None,
        callback: PutCallback[T, R] | None = None,
    ) -> None:
        """Hand over one item without waiting for its result.

        ``callback(item, result_or_exception)``, or else ``on_result``, is called on the
        helper thread when it is done. With ``max_pending``, ``put`` waits for the helper
        thread briefly, to raise ``QueueFull`` when that many items already wait. Unlike the
        other methods, ``put`` may also be called from such a callback.

        Example::

            batcher.put(event, callback=lambda item, outcome: print(item, outcome))
        """
        if self._portal.in_portal_thread():  # from a callback: already on the loop
            self._check_open()
            self._batcher.put(item, key=key, callback=callback)
        elif self._via_inbox:  # nothing can refuse the item but close()
            self._send(item, key, callback)
        else:  # QueueFull must reach this caller
            self._check_open()
            try:
                self._portal.call_sync(
                    functools.partial(self._batcher.put, item, key=key, callback=callback)
                )
            except PortalClosed:
                raise self._closed_error() from None

    def flush(self) -> None:
        """Flush everything pending now and block until those batches have been handed to
        ``fn`` (as ``Batcher.flush``). Does nothing before first use or after close.

        Example::

            batcher.put(event)
            batcher.flush()
        """
        if self._portal.started:
            with contextlib.suppress(PortalClosed):
                self._portal.call(self._batcher.flush)

    def close(self, drain: bool = True) -> None:
        """Stop accepting items, finish (``drain=True``) or refuse (``drain=False``) the
        pending ones as ``Batcher.close`` does, then stop and join the helper thread.

        Calling it twice is harmless; it must not be called from a callback or from
        ``fn``.

        Example::

            batcher.close(drain=False)
        """
        with self._close_lock:
            if self._closed:
                return
            with self._inbox_lock:
                self._closed = True
            if self._portal.started:
                self._portal.call(functools.partial(self._batcher.close, drain=drain))
            self._portal.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called.

        Example::

            assert not batcher.closed
        """
        return self._closed

    @property
    def stats(self) -> BatcherStats:
        """A ``BatcherStats`` snapshot (read on the helper thread while it runs).

        Example::

            print(batcher.stats.items, batcher.stats.mean_size)
        """
        if self._portal.started:
            try:
                return self._portal.call_sync(lambda: self._batcher.stats)
            except PortalClosed:
                pass
        return self._batcher.stats

    def __enter__(self) -> SyncBatcher[T, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SyncBatcher name={self._name!r} {state}>"

    def _send(self, item: T, key: Hashable, callback: PutCallback[T, R] | None) -> None:
        """Queue ``put(item, key=key, callback=callback)`` for the loop thread."""
        with self._inbox_lock:
            if self._closed:
                raise self._closed_error()
            self._inbox.append((item, key, callback))
            # One wake-up of the loop thread serves every item that arrives before it runs.
            if not self._drain_scheduled:
                try:
                    self._portal.call_soon(self._drain)
                except PortalClosed:
                    self._inbox.pop()
                    raise self._closed_error() from None
                self._drain_scheduled = True

    def _drain(self) -> None:
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            self._drain_scheduled = False
        put = self._batcher.put
        for item, key, callback in inbox:
            try:
                put(item, key=key, callback=callback)
            except Exception as exc:  # not expected without max_pending; never lose it
                _refused(self._batcher.name, item, callback, exc)

    def _call(self, fn: Callable[[], Coroutine[Any, Any, X]]) -> X:
        self._check_open()
        self._portal.refuse_own_thread()
        try:
            return self._portal.call(fn)
        except PortalClosed:
            raise self._closed_error() from None
        except concurrent.futures.CancelledError:
            # Only the portal's shutdown cancels a call; the batcher was closed under us.
            raise self._closed_error() from None

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> BatcherClosed:
        named = f" {self._name!r}" if self._name else ""
        return BatcherClosed(f"SyncBatcher{named} is closed")


def _resolver(future: concurrent.futures.Future[R]) -> PutCallback[Any, R]:
    """A ``put`` callback that hands the item's outcome to a waiting thread's future."""

    def resolve(_item: Any, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    return resolve


def _refused(name: str, item: Any, callback: PutCallback[Any, Any] | None, exc: Exception) -> None:
    # Runs inside the drain: raising here would strand every item queued after this one.
    try:
        if callback is not None:
            callback(item, exc)
            return
    except Exception:
        logger.exception("SyncBatcher %r: callback for refused item %r raised", name, item)
        return
    logger.error("SyncBatcher %r: item %r was refused", name, item, exc_info=exc)


def _stop_portal(portal: BlockingPortal) -> None:
    portal.close(wait=False)
