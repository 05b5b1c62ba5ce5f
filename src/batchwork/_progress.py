"""Progress of a task run: the :class:`Progress` snapshot and the live terminal bar.

``rich`` is imported only inside :func:`open_bar`, which the runner calls when a run with
``progress_bar=True`` starts, so ``import batchwork`` stays standard-library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console

    from ._taskrunner import TaskHandle


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a task run stands, passed to ``on_progress`` each time a task ends.

    ``done`` is ``succeeded + failed + skipped`` and counts ``1 .. total`` over a run's
    events. ``total`` is every task of the runner that will end (tasks cancelled by
    ``fail_fast`` are not counted), so it grows when tasks are pushed while running.
    ``elapsed`` is seconds since the run started, ``rate`` tasks ended per second in this
    run (``0.0`` until time has passed), ``eta`` the estimated seconds left (``None`` while
    the rate is unknown). ``task`` is the handle whose end this reports.

    Example::

        def show(p: Progress) -> None:
            print(f"{p.done}/{p.total} ({p.percent:.0f}%), {p.rate:.1f}/s, eta {p.eta}")

        TaskRunner(on_progress=show)
    """

    total: int
    done: int
    succeeded: int
    failed: int
    skipped: int
    running: int
    elapsed: float
    rate: float
    eta: float | None
    task: TaskHandle[Any] | None = None

    @property
    def percent(self) -> float:
        """``done`` as a percentage of ``total`` (100.0 for an empty run)."""
        return 100.0 * self.done / self.total if self.total else 100.0


class Bar(Protocol):
    """What the runner needs from a progress display."""

    def update(self, progress: Progress) -> None: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, progress: Progress) -> None:
        pass

    def close(self) -> None:
        pass


class _RichBar:
    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]tasks"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bar.add_task("tasks", total=None, counts="")
        self._bar.start()

    def update(self, progress: Progress) -> None:
        counts = f"{progress.done}/{progress.total} {progress.rate:.1f}/s"
        if progress.failed:
            counts += f" {progress.failed} failed"
        if progress.eta is not None:
            counts += f" eta {progress.eta:.0f}s"
        self._bar.update(self._task, total=progress.total, completed=progress.done, counts=counts)

    def close(self) -> None:
        self._bar.stop()


def open_bar(console: Console | None = None) -> Bar:
    """Start a live progress bar on ``console`` (default: standard error).

    Off a terminal (a pipe, a file, CI logs) the bar draws nothing at all.

    Example::

        bar = open_bar()
        bar.update(progress)
        bar.close()
    """
    from rich.console import Console

    console = console if console is not None else Console(stderr=True)
    if not console.is_terminal:
        return _NoBar()
    return _RichBar(console)
