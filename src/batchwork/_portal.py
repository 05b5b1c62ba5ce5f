"""A blocking portal: one helper thread running an event loop, called from other threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class PortalClosed(RuntimeError):
    """The portal was closed; nothing more can run on its loop."""


class BlockingPortal:
    """Run coroutines on one private event-loop thread; block the calling thread meanwhile.

    The thread starts on the first call and is stopped and joined by ``close``. Every call
    scheduled before ``close`` runs before the loop stops (a coroutine still running then
    is cancelled); calls after it raise ``PortalClosed``. Blocking calls from the portal's
    own thread are refused, since they could only deadlock.

    Example::

        portal = BlockingPortal(name="demo")
        assert portal.call(asyncio.sleep, 0, "done") == "done"
        portal.close()
    """

    def __init__(self, name: str = "batchwork-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the loop thread is running (started and not yet closed)."""
        return self._loop is not None and not self._closed

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def in_portal_thread(self) -> bool:
        """Whether the caller runs on the portal's own loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call_soon(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Schedule the plain function ``fn(*args)`` on the loop thread; do not wait."""
        # Scheduling under the lock orders every call strictly before or after close().
        with self._lock:
            self._running_loop().call_soon_threadsafe(fn, *args)

    def submit(
        self, fn: Callable[[*Ts], Coroutine[Any, Any, T]], *args: *Ts
    ) -> concurrent.futures.Future[T]:
        """Schedule ``await fn(*args)`` on the loop; return a future for its outcome."""
        with self._lock:
            loop = self._running_loop()
            return asyncio.run_coroutine_threadsafe(fn(*args), loop)

    def call(self, fn: Callable[[*Ts], Coroutine[Any, Any, T]], *args: *Ts) -> T:
        """Run ``await fn(*args)`` on the loop and block until it returns (or raises)."""
        self.refuse_own_thread()
        return self.submit(fn, *args).result()

    def call_sync(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run the plain function ``fn(*args)`` on the loop thread and return its result."""
        self.refuse_own_thread()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.call_soon(run)
        return future.result()

    def close(self, *, wait: bool = True) -> None:
        """Let what was scheduled run, cancel what still runs, stop the loop, join the thread
        (unless ``wait=False``). Calling it twice is harmless; after it every call raises
        ``PortalClosed``.
        """
        if wait:
            self.refuse_own_thread()
        with self._lock:
            self._closed = True
            loop, thread, stop = self._loop, self._thread, self._stop
            if loop is not None and stop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(stop.set)
        if wait and thread is not None:
            thread.join()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise PortalClosed(f"portal {self._name!r} is closed")
        return self._loop or self._start()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_until_complete(stop.wait())
                # Cancel whatever still runs so that its caller wakes up; a cancelled task
                # may start others, hence the loop.
                while pending := asyncio.all_tasks(loop):
                    for task in pending:
                        task.cancel()
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

        # A daemon thread, so that a program that forgets close() can still exit.
        thread = threading.Thread(target=main, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread, self._stop = loop, thread, stop
        return loop

    def refuse_own_thread(self) -> None:
        """Raise ``RuntimeError`` on the portal's own thread, where blocking deadlocks."""
        if self.in_portal_thread():
            raise RuntimeError(
                f"a blocking call from the event-loop thread of {self._name!r} would deadlock"
            )
