"""The cancellation signal a job handler receives."""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

SignalReason = Literal["cancelled", "max_runtime", "shutdown", "lease_lost"]

# Guards the lazy creation of a signal's thread event against a concurrent ``set``: one
# lock for every signal, as a ``threading.Event`` per job costs more than the no-op job.
_THREAD_EVENT_LOCK = threading.Lock()


class Signal:
    """Tells a running handler to stop: ``cancelled``, ``reason`` and ``await wait()``.

    It is set on ``processor.cancel(job_id)`` (reason ``"cancelled"``), at ``max_runtime``
    (``"max_runtime"``), at worker shutdown (``"shutdown"``) and when the worker lost its
    lease (``"lease_lost"``). After it is set the worker waits ``shutdown_grace`` seconds,
    then stops an async handler hard (a thread running a sync handler cannot be killed: its
    job ends with the signal's status and the thread's late return is discarded).
    Safe to read from the thread running a sync handler (``wait_blocking``).

    Example::

        @processor.job()
        async def crawl(job: Job, signal: Signal) -> int:
            done = 0
            for url in job.payload["urls"]:
                if signal.cancelled:
                    break
                done += await fetch(url)
            return done
    """

    __slots__ = ("_async_event", "_reason", "_thread_event")

    def __init__(self) -> None:
        self._reason: SignalReason | None = None
        self._thread_event: threading.Event | None = None
        self._async_event: asyncio.Event | None = None

    @property
    def cancelled(self) -> bool:
        """True once the handler has been asked to stop."""
        return self._reason is not None

    @property
    def reason(self) -> SignalReason | None:
        """Why the handler was asked to stop, or ``None`` while it may go on."""
        return self._reason

    async def wait(self) -> SignalReason:
        """Wait until the signal is set; returns the reason."""
        if self._reason is None:
            if self._async_event is None:
                self._async_event = asyncio.Event()
            await self._async_event.wait()
        assert self._reason is not None
        return self._reason

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Block the calling thread until the signal is set (for sync handlers)."""
        with _THREAD_EVENT_LOCK:
            if self._reason is not None:
                return True
            if self._thread_event is None:
                self._thread_event = threading.Event()
            event = self._thread_event
        return event.wait(timeout)

    def set(self, reason: SignalReason) -> None:
        """Ask the handler to stop (the first reason wins). Call from the worker's loop."""
        if self._reason is not None:
            return
        self._reason = reason
        with _THREAD_EVENT_LOCK:
            event = self._thread_event
        if event is not None:
            event.set()
        if self._async_event is not None:
            self._async_event.set()
