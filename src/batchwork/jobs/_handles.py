"""What registration returns (job and cron handles) and the processor's stats record."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._defs import CronHandler, ExitHook, JobDef, JobHandler

if TYPE_CHECKING:
    from ._processor import JobProcessor


@dataclass(frozen=True, slots=True)
class JobStats:
    """Job counts per status and per name (``by_name[name][status]``).

    Example::

        stats = await processor.stats()
        print(stats.total, stats.by_status.get("errored", 0), stats.by_name["send"])
    """

    total: int
    by_status: Mapping[str, int] = field(default_factory=dict)
    by_name: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class _Registered:
    """A registered handler that still calls like the function it wraps."""

    def __init__(self, processor: JobProcessor, name: str, handler: Callable[..., Any]) -> None:
        self.processor = processor
        self.name = name
        self.handler = handler
        functools.update_wrapper(self, handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)


class RegisteredJob(_Registered):
    """What ``@processor.job`` returns: the handler, plus ``.enqueue`` and ``.on_exit``.

    Calling it calls the handler itself (handy in unit tests).

    Example::

        @processor.job(retries=2)
        async def send(job: Job, signal: Signal) -> None: ...

        job_id = await send.enqueue({"to": "a@example.org"}, priority=5)
    """

    def __init__(self, processor: JobProcessor, name: str, handler: JobHandler) -> None:
        super().__init__(processor, name, handler)

    @property
    def definition(self) -> JobDef:
        """The registered :class:`JobDef` (options included)."""
        return self.processor.jobs[self.name]

    async def enqueue(
        self,
        payload: Any = None,
        *,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        tag: str | None = None,
        connection: Any = None,
    ) -> int:
        """``processor.enqueue(name, payload, ...)`` for this job; returns the job id."""
        return await self.processor.enqueue(
            self.name,
            payload,
            run_at=run_at,
            priority=priority,
            unique_key=unique_key,
            tag=tag,
            connection=connection,
        )

    def on_exit(self, hook: ExitHook) -> ExitHook:
        """Register ``hook(job)``, called once each time a job of this name ends."""
        self.processor._set_exit_hook(self.name, hook, cron=False)
        return hook


class RegisteredCron(_Registered):
    """What ``@processor.cron`` returns: the handler, plus ``.on_exit``."""

    def __init__(self, processor: JobProcessor, name: str, handler: CronHandler) -> None:
        super().__init__(processor, name, handler)

    def on_exit(self, hook: ExitHook) -> ExitHook:
        """Register ``hook(job)``, called once each time a tick of this cron ends."""
        self.processor._set_exit_hook(self.name, hook, cron=True)
        return hook
