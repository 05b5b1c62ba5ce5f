"""What a `Batcher` reports: one `BatchInfo` per batch and a `BatcherStats` snapshot."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

# Wait percentiles come from the most recent item waits; a bounded window keeps memory
# flat and makes the numbers describe the present, not the whole life of the process.
WAIT_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """One batch, as reported to ``on_batch`` after its last attempt.

    ``id`` is unique (usable as a trace id); ``waited`` is the age of the oldest item when
    the batch was flushed; ``duration`` covers every attempt including backoff sleeps;
    ``error`` is the exception that failed the whole batch (``None`` when ``fn`` returned
    a usable result, even if some entries were exceptions); ``reason`` says why the batch
    was flushed (``"size"``, ``"min_size"``, ``"age"``, ``"flush"`` or ``"close"``);
    ``cancelled`` is true when the call was cancelled because every caller had left.

    Example::

        Batcher(fn, on_batch=lambda info: log.info("batch %s: %d items", info.id, info.size))
    """

    id: str
    key: Hashable
    size: int
    attempts: int
    waited: float
    duration: float
    error: BaseException | None
    reason: str = "size"
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class BatcherStats:
    """A snapshot of a `Batcher`'s counters (``batcher.stats``).

    * ``items``: items accepted (``submit``, ``submit_many``, ``put``);
    * ``batches``: batches finished (after all their attempts), ``mean_size`` their mean
      number of items;
    * ``errors``: batches that failed as a whole (raise, timeout, wrong shape);
      ``item_errors``: items answered with an exception (per-item entries included);
    * ``pending``: items accepted and not yet handed to ``fn``; ``in_flight``: batches in
      ``fn`` now;
    * ``wait_p50`` / ``wait_p99``: seconds items waited between acceptance and ``fn``,
      over the most recent 4096 items;
    * ``retries``, ``timeouts``, ``dropped`` (items whose caller left before they were
      sent), ``cancelled_batches`` (calls cancelled because every caller left),
      ``unknown_ids`` (results for ids no item had), ``rejected`` (``QueueFull``),
      ``keys`` (key groups alive).

    Example::

        s = batcher.stats
        print(f"{s.batches} batches, mean {s.mean_size:.1f}, p99 wait {s.wait_p99:.3f}s")
    """

    items: int = 0
    batches: int = 0
    mean_size: float = 0.0
    errors: int = 0
    pending: int = 0
    in_flight: int = 0
    wait_p50: float = 0.0
    wait_p99: float = 0.0
    item_errors: int = 0
    retries: int = 0
    timeouts: int = 0
    dropped: int = 0
    cancelled_batches: int = 0
    unknown_ids: int = 0
    rejected: int = 0
    keys: int = 0


class Counters:
    """Mutable counters behind `BatcherStats` (internal; plain attributes for speed).

    ``items`` counts items that left the queue (sent, dropped or discarded); the items
    still pending are added in `snapshot`, which keeps the per-item push path shorter.
    """

    __slots__ = (
        "batched_items",
        "batches",
        "cancelled_batches",
        "dropped",
        "errors",
        "item_errors",
        "items",
        "rejected",
        "retries",
        "timeouts",
        "unknown_ids",
        "waits",
    )

    def __init__(self) -> None:
        self.items = 0
        self.batches = 0
        self.batched_items = 0
        self.errors = 0
        self.item_errors = 0
        self.retries = 0
        self.timeouts = 0
        self.dropped = 0
        self.cancelled_batches = 0
        self.unknown_ids = 0
        self.rejected = 0
        self.waits: deque[float] = deque(maxlen=WAIT_WINDOW)

    def snapshot(self, *, pending: int, in_flight: int, keys: int) -> BatcherStats:
        """A frozen copy of the counters plus the live gauges."""
        p50, p99 = percentiles(self.waits, (0.50, 0.99))
        return BatcherStats(
            items=self.items + pending,
            batches=self.batches,
            mean_size=self.batched_items / self.batches if self.batches else 0.0,
            errors=self.errors,
            pending=pending,
            in_flight=in_flight,
            wait_p50=p50,
            wait_p99=p99,
            item_errors=self.item_errors,
            retries=self.retries,
            timeouts=self.timeouts,
            dropped=self.dropped,
            cancelled_batches=self.cancelled_batches,
            unknown_ids=self.unknown_ids,
            rejected=self.rejected,
            keys=keys,
        )


def percentiles(values: Iterable[float], qs: tuple[float, ...]) -> tuple[float, ...]:
    """Nearest-rank percentiles of ``values`` (0.0 each when there are none).

    Example::

        percentiles([1.0, 2.0, 3.0, 4.0], (0.5, 0.99))  # (2.0, 4.0)
    """
    ordered = sorted(values)
    if not ordered:
        return tuple(0.0 for _ in qs)
    last = len(ordered) - 1
    return tuple(ordered[min(last, max(0, _rank(q, len(ordered)) - 1))] for q in qs)


def _rank(q: float, n: int) -> int:
    # Nearest rank: the smallest rank whose cumulative share reaches q.
    rank = int(q * n)
    return rank if rank == q * n else rank + 1
