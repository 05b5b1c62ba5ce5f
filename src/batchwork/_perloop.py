"""One object per running event loop, for module-level batchers used across loops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")


class PerLoop(Generic[B]):
    """Hands out one ``B`` per running event loop, made by ``factory`` on first use.

    A ``Batcher`` binds to the loop where it is first used, so a module-level
    ``@batched`` function or ``DataLoader`` keeps one per loop (pytest runs one loop per
    test). Entries of closed loops are dropped when a new loop arrives. Outside a loop,
    ``current()`` answers the most recently handed-out object, or a spare one that the
    next new loop adopts.

    Example::

        batchers = PerLoop(lambda: Batcher(fn))
        await batchers.get().submit(item)  # this loop's Batcher
    """

    __slots__ = ("_by_loop", "_factory", "_last", "_lock", "_spare")

    def __init__(self, factory: Callable[[], B], *, spare: B | None = None) -> None:
        self._factory = factory
        self._by_loop: dict[asyncio.AbstractEventLoop, B] = {}
        self._spare = spare
        self._last: B | None = None
        self._lock = threading.Lock()

    def get(self) -> B:
        """The object of the running loop (created on first use); needs a running loop."""
        loop = asyncio.get_running_loop()
        obj = self._by_loop.get(loop)
        if obj is None:
            obj = self._attach(loop)
        return obj

    def current(self) -> B:
        """The running loop's object, or outside a loop the last one handed out."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                if self._last is not None:
                    return self._last
                if self._spare is None:
                    self._spare = self._factory()
                return self._spare
        return self.get()

    def values(self) -> list[B]:
        """Every object handed out to a loop that is still open."""
        with self._lock:
            return [obj for loop, obj in self._by_loop.items() if not loop.is_closed()]

    def _attach(self, loop: asyncio.AbstractEventLoop) -> B:
        # Loops on other threads may attach at the same time; the spare goes to one.
        with self._lock:
            for old in [old for old in self._by_loop if old.is_closed()]:
                del self._by_loop[old]
            obj = self._spare if self._spare is not None else self._factory()
            self._spare = None
            self._by_loop[loop] = self._last = obj
            return obj
