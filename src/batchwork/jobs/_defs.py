"""Job and cron definitions: what a handler is and the options it runs with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ._model import Job
from ._signal import Signal

JobHandler = Callable[[Job, Signal], Awaitable[Any] | Any]
CronHandler = Callable[[Signal], Awaitable[Any] | Any]
ExitHook = Callable[[Job], Awaitable[None] | None]
Duration = float | timedelta


def seconds(value: Duration | None, option: str, *, allow_zero: bool = False) -> float | None:
    """A duration option as float seconds; ``ValueError`` naming ``option`` if negative.

    Example::

        seconds(timedelta(minutes=2), "max_runtime")  # 120.0
    """
    if value is None:
        return None
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if result < 0 or (result == 0 and not allow_zero) or result != result:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{option} must be {bound} seconds, got {value!r}")
    return result


@dataclass(frozen=True)
class JobDef:
    """A job handler and its options (the dict style of registration).

    The same options as ``@processor.job``. ``handler(job, signal)`` may be ``async def``
    or a plain ``def`` (run in a thread).

    Example::

        processor = JobProcessor(
            "sqlite:///jobs.db",
            jobs={"import_file": JobDef(import_file, resumable=True, retries=3)},
        )
    """

    handler: JobHandler
    on_exit: ExitHook | None = None
    resumable: bool = False
    tag: str | None = None
    retries: int = 0
    backoff: Duration = 1.0
    max_runtime: Duration | None = None
    exclusive: bool = False
    max_crashes: int = 3
    name: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError(f"handler must be callable, got {self.handler!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")
        if self.max_crashes < 0:
            raise ValueError(f"max_crashes must be >= 0, got {self.max_crashes!r}")
        object.__setattr__(self, "backoff", seconds(self.backoff, "backoff", allow_zero=True))
        object.__setattr__(self, "max_runtime", seconds(self.max_runtime, "max_runtime"))


@dataclass(frozen=True)
class CronDef:
    """A cron schedule, its handler ``handler(signal)`` and options.

    The same options as ``@processor.cron``. ``exclusive`` defaults to ``True``: a tick
    whose previous run is still active is recorded ``skipped``. ``timezone=None`` uses the
    processor's. The expression is checked at construction (:class:`InvalidCron`).

    Example::

        processor = JobProcessor(
            "sqlite:///jobs.db",
            crons={"refresh": CronDef("*/5 * * * *", refresh_stats, checkin_margin=120)},
        )
    """

    cron: str
    handler: CronHandler
    on_exit: ExitHook | None = None
    resumable: bool = False
    checkin_margin: Duration | None = None
    max_runtime: Duration | None = None
    tag: str | None = None
    exclusive: bool = True
    timezone: str | None = None
    name: str | None = None
    max_crashes: int = 3
    expression: str = field(init=False, default="")

    def __post_init__(self) -> None:
        from ._cron import normalize_cron  # the cron engine's parser; raises InvalidCron

        if not callable(self.handler):
            raise TypeError(f"handler must be callable, got {self.handler!r}")
        object.__setattr__(self, "expression", normalize_cron(self.cron))
        margin = seconds(self.checkin_margin, "checkin_margin", allow_zero=True)
        object.__setattr__(self, "checkin_margin", margin)
        object.__setattr__(self, "max_runtime", seconds(self.max_runtime, "max_runtime"))
