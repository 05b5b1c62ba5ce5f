"""Pure decisions of the job runtime: how a run ended, when to retry, how to word errors.

Nothing here does I/O or reads a clock: every function takes ``now`` (or a delay) from its
caller, so each rule is tested with plain tables.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from batchwork._retry import backoff_delay
from batchwork.errors import PayloadError

from ._model import JobStatus, dump_json
from ._signal import SignalReason

# A retry never waits longer than this, however many attempts came before.
MAX_RETRY_DELAY = 24 * 3600.0


class RunEnd(Enum):
    """How the handler's call ended, as the runner saw it."""

    RETURNED = "returned"  # it returned a value
    RAISED = "raised"  # it raised an exception
    STOPPED = "stopped"  # still running after the grace: cancelled or abandoned
    NO_HANDLER = "no_handler"  # no handler is registered for the job's name


@dataclass(frozen=True, slots=True)
class RunReport:
    """What happened during one run: the facts a decision needs, nothing decided yet."""

    end: RunEnd
    reason: SignalReason | None = None
    value: Any = None
    error: BaseException | None = None
    max_runtime: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to store for one run. ``write=False``: store nothing (the lease was lost)."""

    status: JobStatus
    result_json: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    write: bool = True


_FINISHED_NULL = Decision(JobStatus.FINISHED, result_json="null")


def retry_delay(attempt: int, backoff: float, *, rng: random.Random | None = None) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1 = the first run).

    Exponential (``backoff * 2 ** (attempt - 1)``) with equal jitter: a random factor in
    ``[0.5, 1.0)``, so jobs failing together spread out; capped at one day.

    Example::

        0.5 <= retry_delay(1, 1.0) < 1.0
        2.0 <= retry_delay(3, 1.0) < 4.0
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # The same math as the micro-batching core's Retry: one rule for the whole library.
    return backoff_delay(
        attempt, backoff=backoff, max_backoff=MAX_RETRY_DELAY, jitter=True, rng=rng
    )


def format_error(exc: BaseException) -> str:
    """The stored error text: ``Type: message`` on the first line, then the traceback
    with its ``__cause__`` / ``__context__`` chain.

    Example::

        format_error(ValueError("bad")).splitlines()[0]  # 'ValueError: bad'
    """
    head = f"{type(exc).__name__}: {exc}"
    return head + "\n" + "".join(traceback.format_exception(exc)).rstrip("\n")


def decide(
    report: RunReport,
    *,
    resumable: bool,
    attempts: int,
    retries: int,
    backoff: float,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """Turn what happened in one run into what the store records.

    A signal decides first: ``lease_lost`` writes nothing (another worker owns the job
    now), ``cancelled`` ends ``cancelled`` and ``max_runtime`` ends ``timed_out`` even if
    the handler then returned, ``shutdown`` pauses a resumable job and interrupts a
    non-resumable one still running. Otherwise the handler's own end counts: a value
    (strict JSON, or ``errored`` saying why not), or an exception, retried while
    ``attempts <= retries``.

    Example::

        decide(RunReport(RunEnd.RETURNED, value=3), resumable=False, attempts=1,
               retries=0, backoff=1.0, now=now).status  # JobStatus.FINISHED
    """
    reason = report.reason
    if reason is None and report.end is RunEnd.RETURNED and report.value is None:
        return _FINISHED_NULL  # the common case, checked first
    if report.end is RunEnd.NO_HANDLER:
        return Decision(JobStatus.ERRORED, error=str(report.value))
    if reason == "lease_lost":
        return Decision(JobStatus.RUNNING, write=False)
    if reason == "cancelled":
        return Decision(JobStatus.CANCELLED, error="cancelled: processor.cancel() was called")
    if reason == "max_runtime":
        return Decision(JobStatus.TIMED_OUT, error=_timed_out_text(report.max_runtime))
    if reason == "shutdown":
        if resumable:
            return Decision(JobStatus.PAUSED)
        if report.end is RunEnd.STOPPED:
            return Decision(JobStatus.ERRORED, error="interrupted: the worker shut down")
    return _decide_own_end(
        report, attempts=attempts, retries=retries, backoff=backoff, now=now, rng=rng
    )


def _decide_own_end(
    report: RunReport,
    *,
    attempts: int,
    retries: int,
    backoff: float,
    now: datetime,
    rng: random.Random | None,
) -> Decision:
    if report.end is RunEnd.RETURNED:
        if report.value is None:  # the common case, without a JSON encoder round trip
            return Decision(JobStatus.FINISHED, result_json="null")
        try:
            return Decision(JobStatus.FINISHED, result_json=dump_json(report.value, what="result"))
        except PayloadError as exc:
            return Decision(JobStatus.ERRORED, error=f"the handler's {exc}")
    if report.end is RunEnd.STOPPED:  # only reachable without a signal: defensive
        return Decision(JobStatus.ERRORED, error="interrupted")
    assert report.error is not None
    error = format_error(report.error)
    if attempts <= retries:
        delay = retry_delay(attempts, backoff, rng=rng)
        return Decision(JobStatus.PENDING, error=error, retry_at=now + timedelta(seconds=delay))
    return Decision(JobStatus.ERRORED, error=error)


def _timed_out_text(max_runtime: float | None) -> str:
    limit = "its max_runtime" if max_runtime is None else f"max_runtime of {max_runtime:g} s"
    return f"timed out: the run exceeded {limit}"


def unknown_job_error(name: str, known: list[str]) -> str:
    """The error of a job no handler is registered for in the worker that took it."""
    listed = ", ".join(sorted(known)) or "none"
    return (
        f"LookupError: no handler is registered for job {name!r} in the worker that "
        f"took it (registered: {listed})"
    )
