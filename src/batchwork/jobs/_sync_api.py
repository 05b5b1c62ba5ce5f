"""``processor.sync``: blocking twins of the producing and query calls.

They run the processor's own coroutines on one helper thread's event loop (the blocking
portal), so nothing is implemented twice and no event loop is started per call.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from batchwork._portal import BlockingPortal

from ._defs import Duration
from ._model import Job

if TYPE_CHECKING:
    from ._processor import JobProcessor


class SyncJobProcessor:
    """Blocking ``enqueue``, ``enqueue_many``, ``get``, ``list``, ``cancel``, ``retry``
    and ``result`` for threaded code (a web request handler). Thread-safe.

    Example::

        job_id = processor.sync.enqueue("send", {"to": "a@b.c"})
        value = processor.sync.result(job_id, timeout=10)
        processor.sync.close()   # optional: stops the helper thread
    """

    def __init__(self, processor: JobProcessor) -> None:
        self._processor = processor
        self._portal = BlockingPortal(name="batchwork-jobs-sync")

    def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        tag: str | None = None,
    ) -> int:
        """Blocking :meth:`JobProcessor.enqueue`."""
        call = functools.partial(
            self._processor.enqueue,
            name,
            payload,
            run_at=run_at,
            priority=priority,
            unique_key=unique_key,
            tag=tag,
        )
        return self._portal.call(call)

    def enqueue_many(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        tag: str | None = None,
    ) -> list[int]:
        """Blocking :meth:`JobProcessor.enqueue_many`."""
        call = functools.partial(
            self._processor.enqueue_many,
            name,
            list(payloads),
            run_at=run_at,
            priority=priority,
            tag=tag,
        )
        return self._portal.call(call)

    def get(self, job_id: int) -> Job:
        """Blocking :meth:`JobProcessor.get`."""
        return self._portal.call(self._processor.get, job_id)

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Blocking :meth:`JobProcessor.list`."""
        call = functools.partial(
            self._processor.list, status=status, name=name, tag=tag, limit=limit
        )
        return self._portal.call(call)

    def cancel(self, job_id: int) -> bool:
        """Blocking :meth:`JobProcessor.cancel`."""
        return self._portal.call(self._processor.cancel, job_id)

    def retry(self, job_id: int) -> bool:
        """Blocking :meth:`JobProcessor.retry`."""
        return self._portal.call(self._processor.retry, job_id)

    def result(self, job_id: int, timeout: Duration | None = None) -> Any:
        """Blocking :meth:`JobProcessor.result`."""
        return self._portal.call(self._processor.result, job_id, timeout)

    def close(self) -> None:
        """Close the helper loop's store and stop its thread; harmless twice."""
        if self._portal.started:
            self._portal.call(self._processor.close)
        self._portal.close()
