"""Every exception batchwork raises on purpose.

The tree::

    BatchworkError
    ├── BatcherClosed          submit/put after close, or pending at close(drain=False)
    ├── BatchTimeout           one call of the batch function took longer than ``timeout``
    ├── BatchResultError       the batch function returned the wrong shape (.expected, .got)
    ├── QueueFull              put() while ``max_pending`` items already wait
    ├── CycleError             TaskRunner dependencies form a cycle (.cycle)
    ├── DependencyFailed       a task's ``needs`` failed (``__cause__`` is the original error)
    ├── PayloadError           a job payload or result that strict JSON cannot hold
    ├── InvalidCron            a cron expression that cannot be parsed (.expression)
    ├── JobNotFound            no job with that id (.job_id)
    ├── JobFailed              a job ended without a result (.job)
    └── StoreError             a database driver error, mapped at the store's edge

Example::

    from batchwork.errors import BatchworkError

    try:
        await batcher.submit(item)
    except BatchworkError as exc:
        log.warning("batching failed: %s", exc)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class BatchworkError(Exception):
    """Root of every error batchwork raises on purpose.

    Example::

        except BatchworkError: ...
    """


class BatcherClosed(BatchworkError):
    """The batcher is closed: nothing more is accepted, or a pending item was dropped.

    Example::

        await batcher.close()
        await batcher.submit(1)  # raises BatcherClosed
    """


class BatchTimeout(BatchworkError):
    """One call of the batch function took longer than the batcher's ``timeout``.

    Example::

        Batcher(slow_fn, timeout=1.0)  # callers get BatchTimeout after 1 s (and retries)
    """


class BatchResultError(BatchworkError):
    """The batch function returned something that does not answer every item.

    ``expected`` and ``got`` are the counts (``got`` is ``None`` when the value was not a
    sequence or mapping at all).

    Example::

        except BatchResultError as exc:
            print(exc.expected, exc.got)
    """

    def __init__(self, message: str, *, expected: int, got: int | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class QueueFull(BatchworkError):
    """``put`` was called while ``max_pending`` items were already waiting.

    Example::

        try:
            batcher.put(event)
        except QueueFull:
            drop_or_retry_later(event)
    """


class CycleError(BatchworkError):
    """Task dependencies form a cycle; ``cycle`` names the tasks in it, in order.

    Example::

        except CycleError as exc:
            print(" -> ".join(exc.cycle))
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join([*self.cycle, self.cycle[0]]))


class DependencyFailed(BatchworkError):
    """A task did not run because a task it needs failed (see ``__cause__``).

    Example::

        except* DependencyFailed as group: ...
    """


class PayloadError(BatchworkError, ValueError):
    """A job payload (or result) that strict JSON cannot hold; nothing was stored.

    Example::

        await processor.enqueue("send", {"at": datetime.now()})  # raises PayloadError
    """


class InvalidCron(BatchworkError, ValueError):
    """A cron expression that cannot be parsed; ``expression`` is the string given.

    Example::

        @processor.cron("61 * * * *")  # raises InvalidCron naming "61 * * * *"
        async def tick(signal): ...
    """

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"invalid cron expression {expression!r}: {reason}")


class JobNotFound(BatchworkError, LookupError):
    """No job with this id exists in the store.

    Example::

        await processor.get(123456789)  # raises JobNotFound
    """

    def __init__(self, job_id: object) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class JobFailed(BatchworkError):
    """A job ended without a result; ``job`` is its record.

    Example::

        try:
            value = await processor.result(job_id, timeout=10)
        except JobFailed as exc:
            print(exc.job.status, exc.job.error)
    """

    def __init__(self, job: Any) -> None:
        self.job = job
        first_line = (job.error or "").splitlines()[0] if job.error else "no result"
        super().__init__(f"job {job.id} ended {job.status}: {first_line}")


class StoreError(BatchworkError):
    """A database error, mapped at the store's edge; ``__cause__`` is the driver's error.

    Example::

        except StoreError as exc:
            log.error("store unavailable: %s (cause: %r)", exc, exc.__cause__)
    """


__all__ = [
    "BatchResultError",
    "BatchTimeout",
    "BatcherClosed",
    "BatchworkError",
    "CycleError",
    "DependencyFailed",
    "InvalidCron",
    "JobFailed",
    "JobNotFound",
    "PayloadError",
    "QueueFull",
    "StoreError",
]
