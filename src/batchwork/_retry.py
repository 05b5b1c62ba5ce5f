"""Retry policy for failed batch calls, and its pure backoff math.

The delay math is a plain function of the retry number and a random source, so the jobs
part reuses it and tests check it with tables.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# 2.0 ** 1000 is still a finite float; anything beyond is capped by max_backoff anyway.
_MAX_EXPONENT = 1000


def backoff_delay(
    retry: int,
    *,
    backoff: float,
    max_backoff: float,
    jitter: bool,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the ``retry``-th retry (1 = the first retry).

    The nominal delay is ``min(max_backoff, backoff * 2 ** (retry - 1))``. With ``jitter``
    it is scaled by a random factor in ``[0.5, 1.0)`` ("equal jitter"): never longer than
    the nominal delay, never shorter than half of it, so callers retrying together spread
    out without waiting for ever.

    Example::

        backoff_delay(3, backoff=0.1, max_backoff=10.0, jitter=False)  # 0.4
    """
    if retry < 1:
        raise ValueError(f"retry must be >= 1, got {retry}")
    nominal = min(max_backoff, backoff * 2.0 ** min(retry - 1, _MAX_EXPONENT))
    if not jitter or nominal == 0.0:
        return nominal
    source = rng if rng is not None else random
    return nominal * (0.5 + source.random() / 2.0)


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry a failed batch call with exponential backoff and jitter.

    ``attempts`` is the total number of calls (``Retry(attempts=3)``: one call and at most
    two retries). A call that raises an exception matching ``on`` (a timed-out call counts
    as :class:`~batchwork.errors.BatchTimeout`) is retried after :meth:`delay`; when the
    attempts run out the callers get the last exception itself, not wrapped. A batch
    function that *returns* the wrong shape is not retried: that is a bug, not bad luck.

    Example::

        Batcher(write, retry=Retry(attempts=5, backoff=0.2, on=(ConnectionError,)))
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 10.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0:
            raise ValueError(f"Retry backoff must be >= 0, got {self.backoff}")
        if self.max_backoff < 0:
            raise ValueError(f"Retry max_backoff must be >= 0, got {self.max_backoff}")
        on = self.on
        if isinstance(on, type):
            on = (on,)
            object.__setattr__(self, "on", on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise ValueError(f"Retry on must be exception classes, got {self.on!r}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the ``retry``-th retry (see :func:`backoff_delay`).

        Example::

            Retry(backoff=0.1, jitter=False).delay(2)  # 0.2
        """
        return backoff_delay(
            retry,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            jitter=self.jitter,
            rng=rng,
        )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a call that failed with ``exc`` on call number ``attempt`` is retried.

        Example::

            Retry(attempts=2).should_retry(OSError(), 1)  # True
        """
        return attempt < self.attempts and isinstance(exc, self.on)
