"""Concurrency-limited task runs with dependencies: :class:`TaskRunner` and :func:`map`.

The pure decisions (which task is ready, what a failure does downstream, where a cycle is)
live in :mod:`._taskgraph`; this module only starts tasks and reacts to their ends. There
is no polling: each task's future calls back when it ends, and that callback starts the
next ready tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import inspect
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar, overload

from ._progress import Bar, Progress, open_bar
from ._taskgraph import (
    CANCELLED,
    FAIL,
    FAILED,
    FALLBACK,
    RUNNING,
    SKIP,
    SKIPPED,
    STATE_NAMES,
    SUCCEEDED,
    Event,
    TaskGraph,
    find_cycle,
)
from .errors import CycleError, DependencyFailed

__all__ = ["Skipped", "TaskHandle", "TaskRunner", "map"]

R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("batchwork")

_NO_KWARGS: Final[dict[str, Any]] = {}
_ENDED_HOW: Final = {FAILED: "failed", SKIPPED: "was skipped", CANCELLED: "was cancelled"}

TaskStatus: TypeAlias = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
NeedsFailedPolicy: TypeAlias = Literal["fail", "skip"] | Callable[[BaseException], Any]
Need: TypeAlias = "TaskHandle[Any] | str"


class SkippedType(enum.Enum):
    """The type of :data:`Skipped`, the result of a task skipped by ``on_needs_failed="skip"``.

    There is exactly one value; compare with ``is``.

    Example::

        handle = runner.push(report, needs=[fetch], on_needs_failed="skip")
        await runner.start(return_exceptions=True)
        if handle.result() is Skipped:
            print("no report: fetch failed")
    """

    SKIPPED = "Skipped"

    def __repr__(self) -> str:
        return "Skipped"

    __str__ = __repr__


Skipped: Final = SkippedType.SKIPPED


class TaskHandle(Generic[R]):
    """One task pushed on a :class:`TaskRunner`: its name, status and outcome.

    ``status`` is ``"pending"``, ``"running"``, ``"succeeded"``, ``"failed"``,
    ``"skipped"`` or ``"cancelled"``. ``result()`` returns the value (:data:`Skipped` for
    a skipped task) or raises the task's error; ``exception()`` returns the error or
    ``None``. Both raise :class:`asyncio.InvalidStateError` before the task ended and
    :class:`asyncio.CancelledError` for a cancelled task, as :class:`asyncio.Future` does.

    Example::

        page = runner.push(fetch, url, name="page")
        await runner.start()
        print(page.name, page.status, page.result())
    """

    __slots__ = (
        "_args",
        "_exception",
        "_fallback",
        "_fn",
        "_future",
        "_index",
        "_is_async",
        "_kwargs",
        "_name",
        "_needs",
        "_policy",
        "_refs",
        "_result",
        "_runner",
    )

    def __init__(
        self,
        runner: TaskRunner,
        index: int,
        fn: Callable[..., Any],
        is_async: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        refs: tuple[TaskHandle[Any] | str, ...],
        policy: int,
        fallback: Callable[[BaseException], Any] | None,
        name: str | None,
    ) -> None:
        self._runner = runner
        self._index = index
        self._fn = fn
        self._is_async = is_async
        self._args = args
        self._kwargs = kwargs
        self._refs = refs
        # ``refs`` resolved to push indices when the task joins a run.
        self._needs: tuple[int, ...] = ()
        self._policy = policy
        self._fallback = fallback
        self._name = name
        self._result: Any = None
        self._exception: BaseException | None = None
        self._future: asyncio.Future[Any] | None = None

    @property
    def name(self) -> str:
        """The ``name=`` given to ``push``, else ``"<function name>#<push index>"``."""
        if self._name is None:
            fn_name = getattr(self._fn, "__name__", None) or type(self._fn).__name__
            self._name = f"{fn_name}#{self._index}"
        return self._name

    @property
    def status(self) -> TaskStatus:
        """Where the task stands; see the class docstring for the values."""
        state = self._runner._graph.state
        return STATE_NAMES[state[self._index]] if self._index < len(state) else "pending"

    def done(self) -> bool:
        """``True`` once the task succeeded, failed, was skipped or was cancelled."""
        return self.status not in ("pending", "running")

    def result(self) -> R:
        """The task's value; raises its error if it failed (see the class docstring)."""
        status = self._check_ended()
        if status == "failed":
            assert self._exception is not None
            raise self._exception
        if status == "skipped":
            return Skipped  # type: ignore[return-value]
        return self._result  # type: ignore[no-any-return]

    def exception(self) -> BaseException | None:
        """The task's error, or ``None`` if it succeeded or was skipped."""
        return self._exception if self._check_ended() == "failed" else None

    def _check_ended(self) -> TaskStatus:
        status = self.status
        if status in ("pending", "running"):
            raise asyncio.InvalidStateError(f"task {self.name!r} has not ended (it is {status})")
        if status == "cancelled":
            raise asyncio.CancelledError(f"task {self.name!r} was cancelled")
        return status

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name!r} {self.status}>"


class _Run:
    """State of one ``start()``: lives from the first task start to ``on_end``."""

    __slots__ = (
        "completed",
        "done",
        "ended",
        "executor",
        "finished",
        "loop",
        "next_start",
        "started_at",
        "stopped_at",
        "thread",
        "timer",
        "waiters",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.started_at = loop.time()
        self.stopped_at: float | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self.finished = False
        self.ended = 0
        self.completed: list[TaskHandle[Any]] = []
        # One future per as_completed() consumer waiting for the next end: a shared one
        # would be cancelled for all of them when one consumer is cancelled.
        self.waiters: list[asyncio.Future[None]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.next_start = self.started_at
        self.executor: ThreadPoolExecutor | None = None


class TaskRunner:
    """Run tasks with a concurrency limit, dependencies, fallbacks and progress events.

    ``concurrency`` bounds how many tasks run at once (and is reached whenever that many
    are ready). ``rate_limit`` spaces task starts evenly, at most that many per second.
    ``fail_fast`` cancels everything left at the first failure. ``on_progress(Progress)``
    is called once per task end, ``on_end(error, results)`` once per run.
    ``progress_bar=True`` shows a live terminal bar (``rich``, imported when a run starts;
    nothing is drawn off a terminal). An exception raised by a callback is logged on the
    ``batchwork`` logger and does not disturb the run.

    Example::

        runner = TaskRunner(concurrency=4)
        page = runner.push(fetch, "https://example.org")
        text = runner.push(parse, needs=[page])                # parse(page_result)
        safe = runner.push(parse, needs=[page], on_needs_failed=lambda exc: "")
        results = await runner.start()                         # in push order
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        on_progress: Callable[[Progress], object] | None = None,
        on_end: Callable[[BaseExceptionGroup[BaseException] | None, list[Any]], object]
        | None = None,
        fail_fast: bool = False,
        rate_limit: float | None = None,
        progress_bar: bool = False,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 task starts per second, got {rate_limit!r}")
        self._concurrency = concurrency
        self._interval = 1.0 / rate_limit if rate_limit is not None else 0.0
        self._on_progress = on_progress
        self._on_end = on_end
        self._fail_fast = fail_fast
        self._progress_bar = progress_bar
        self._bar: Bar | None = None
        self._handles: list[TaskHandle[Any]] = []
        self._names: dict[str, TaskHandle[Any]] = {}
        # push() is called once per task, often with the same function: inspect it once.
        self._async_fns: dict[Callable[..., Any], bool] = {}
        self._graph = TaskGraph()
        self._run: _Run | None = None
        self._aborting = False
        self._running = 0
        self._unended = 0
        self._succeeded = self._failed = self._skipped = self._cancelled = 0

    # -- pushing -------------------------------------------------------------------------

    # A task skipped by its policy has the result ``Skipped``: the "skip" overloads say so.
    @overload
    def push(
        self,
        fn: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        needs: Need | Iterable[Need] = (),
        on_needs_failed: Literal["skip"],
        name: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[R | SkippedType]: ...

    @overload
    def push(
        self,
        fn: Callable[..., R],
        /,
        *args: Any,
        needs: Need | Iterable[Need] = (),
        on_needs_failed: Literal["skip"],
        name: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[R | SkippedType]: ...

    @overload
    def push(
        self,
        fn: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        needs: Need | Iterable[Need] = (),
        on_needs_failed: Literal["fail"] | Callable[[BaseException], Any] = "fail",
        name: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[R]: ...

    @overload
    def push(
        self,
        fn: Callable[..., R],
        /,
        *args: Any,
        needs: Need | Iterable[Need] = (),
        on_needs_failed: Literal["fail"] | Callable[[BaseException], Any] = "fail",
        name: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[R]: ...

    def push(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        needs: Need | Iterable[Need] = (),
        on_needs_failed: NeedsFailedPolicy = "fail",
        name: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[Any]:
        """Add a task: ``fn(*needs_results, *args, **kwargs)``; return its handle.

        ``fn`` is an ``async def`` or a plain callable (run in a thread). ``needs`` lists
        handles of this runner, or ``name=`` values of its tasks (also of tasks pushed
        later); the task starts once all of them succeeded and gets their results first,
        positionally, in that order. When one does not succeed, ``on_needs_failed``
        decides: ``"fail"`` (the task fails with ``DependencyFailed``, ``__cause__`` the
        original error), ``"skip"`` (its result is :data:`Skipped`) or a callable given
        that need's exception, whose return value (awaited if awaitable) is the result.

        A task pushed while the runner runs joins that run. A handle of another runner in
        ``needs``, a duplicate ``name`` or a bad ``on_needs_failed`` raise ``ValueError``.

        Example::

            a = runner.push(download, url, name="a")
            b = runner.push(unzip, needs="a", on_needs_failed="skip")
        """
        # Fast paths for the common push (no needs, default policy): push is per task.
        policy, fallback = (
            (FAIL, None) if on_needs_failed == "fail" else _parse_policy(on_needs_failed)
        )
        refs = needs if needs == () else self._check_needs(needs)
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a str, got {name!r}")
            if name in self._names:
                raise ValueError(f"a task named {name!r} was already pushed on this runner")
        run = self._run
        live = run is not None and not run.finished
        if live:
            assert run is not None
            if threading.get_ident() != run.thread:
                raise RuntimeError(
                    "TaskRunner.push() while running must be called from the event loop's"
                    " thread (from a sync task, return a value and push from async code)"
                )
            if name is not None and name in refs:
                raise CycleError([name])
            resolved = self._resolve(refs)
        handle: TaskHandle[Any] = TaskHandle(
            self,
            len(self._handles),
            fn,
            self._is_async(fn),
            args,
            kwargs or _NO_KWARGS,
            refs,
            policy,
            fallback,
            name,
        )
        self._handles.append(handle)
        if name is not None:
            self._names[name] = handle
        if live:
            handle._needs = resolved
            self._register([handle])
            self._advance()
        return handle

    def _is_async(self, fn: Callable[..., Any]) -> bool:
        try:
            return self._async_fns[fn]
        except KeyError:
            is_async = self._async_fns[fn] = _is_async(fn)
        except TypeError:  # an unhashable callable
            is_async = _is_async(fn)
        return is_async

    def _check_needs(self, needs: Need | Iterable[Need]) -> tuple[TaskHandle[Any] | str, ...]:
        refs = (needs,) if isinstance(needs, (TaskHandle, str)) else tuple(needs)
        for ref in refs:
            if isinstance(ref, TaskHandle):
                if ref._runner is not self:
                    raise ValueError(f"needs: {ref!r} belongs to another TaskRunner")
            elif not isinstance(ref, str):
                raise TypeError(f"needs takes TaskHandles or task names, got {ref!r}")
        return refs

    def _resolve(self, refs: tuple[TaskHandle[Any] | str, ...]) -> tuple[int, ...]:
        indices = []
        for ref in refs:
            handle = ref if isinstance(ref, TaskHandle) else self._names.get(ref)
            if handle is None:
                raise ValueError(f"needs: no task named {ref!r} was pushed on this runner")
            indices.append(handle._index)
        return tuple(indices)

    # -- running -------------------------------------------------------------------------

    async def start(self, *, return_exceptions: bool = False) -> list[Any]:
        """Run every task not yet run; return the results of all tasks in push order.

        Tasks that ended in an earlier run are not run again. If tasks failed, an
        ``ExceptionGroup`` of their errors (push order) is raised once every other task
        ended -- or, with ``fail_fast``, once the rest is cancelled. With
        ``return_exceptions=True`` the errors stand in the list instead (a skipped task's
        entry is :data:`Skipped`, a cancelled one's an ``asyncio.CancelledError``).
        ``on_end(error, results)`` is called once before this returns, with those
        entries.

        Raises, before any task runs: ``CycleError`` if ``needs`` form a cycle (its
        ``cycle`` lists the tasks, each needing the next), ``ValueError`` for a need
        naming no task, ``RuntimeError`` if a run is already in progress. If the caller
        is cancelled, every task is cancelled and ``on_end`` is not called.

        Example::

            try:
                results = await runner.start()
            except* ValueError as group:
                ...
        """
        return await self._complete(self._begin(), return_exceptions)

    async def as_completed(self) -> AsyncGenerator[TaskHandle[Any], None]:
        """Yield the handles of the current run as their tasks end (cancelled ones too).

        Starts the run if ``start()`` was not called; breaking out of the loop then
        cancels the tasks left. Failures do not raise here: call ``handle.result()``.

        Example::

            async for handle in runner.as_completed():
                print(handle.name, handle.status)
        """
        run = self._run
        owner: asyncio.Task[list[Any]] | None = None
        if run is None or run.finished:
            run = self._begin()
            owner = asyncio.ensure_future(self._complete(run, return_exceptions=True))
        seen = 0
        try:
            while True:
                while seen < len(run.completed):
                    seen += 1
                    yield run.completed[seen - 1]
                if run.finished:
                    break
                waiter = run.loop.create_future()
                run.waiters.append(waiter)
                await waiter
            if owner is not None:
                await owner
        finally:
            if owner is not None and not owner.done():
                owner.cancel()
                await asyncio.wait([owner])

    def _begin(self) -> _Run:
        if self._run is not None and not self._run.finished:
            raise RuntimeError(
                "TaskRunner.start() called while a run is in progress; await that run"
                " (or iterate as_completed()) instead"
            )
        loop = asyncio.get_running_loop()
        new = self._handles[len(self._graph) :]
        needs = [self._resolve(h._refs) for h in new]
        cycle = find_cycle(needs, len(self._graph))
        if cycle is not None:
            raise CycleError([self._handles[i].name for i in cycle])
        for handle, resolved in zip(new, needs, strict=True):
            handle._needs = resolved
        run = self._run = _Run(loop)
        self._aborting = False
        if self._progress_bar:
            self._bar = open_bar()
        self._register(new)
        self._advance()
        return run

    def _register(self, handles: list[TaskHandle[Any]]) -> None:
        self._unended += len(handles)
        events = self._graph.extend([h._needs for h in handles], [h._policy for h in handles])
        if self._aborting:
            for node in self._graph.cancel_pending():
                self._cancelled_end(self._handles[node])
        self._apply(events)

    async def _complete(self, run: _Run, return_exceptions: bool) -> list[Any]:
        try:
            await run.done
        except asyncio.CancelledError:
            self._abort()
            await self._wait_cancelled()
            raise
        finally:
            self._close_run(run)
        results = [self._outcome(h) for h in self._handles]
        failures = [
            h._exception
            for h in self._handles
            if h._exception is not None and self._graph.state[h._index] == FAILED
        ]
        error = (
            BaseExceptionGroup(f"{len(failures)} of {len(self._handles)} tasks failed", failures)
            if failures
            else None
        )
        if self._on_end is not None:
            _call_safely(self._on_end, error, results)
        if error is not None and not return_exceptions:
            raise error
        return results

    def _close_run(self, run: _Run) -> None:
        run.finished = True
        run.stopped_at = run.loop.time()
        if run.timer is not None:
            run.timer.cancel()
        if run.executor is not None:
            run.executor.shutdown(wait=False)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._wake(run)

    async def _wait_cancelled(self) -> None:
        futures = [h._future for h in self._handles if h._future is not None]
        if futures:
            await asyncio.wait(futures)

    def _outcome(self, handle: TaskHandle[Any]) -> Any:
        state = self._graph.state[handle._index]
        if state == SUCCEEDED:
            return handle._result
        if state == SKIPPED:
            return Skipped
        return handle._exception

    # -- the scheduler: called back when something ended -------------------------------

    def _advance(self) -> None:
        if not self._aborting:
            self._pump()
        run = self._run
        if self._unended == 0 and run is not None and not run.done.done():
            run.done.set_result(None)

    def _pump(self) -> None:
        graph, handles, ready = self._graph, self._handles, self._graph.ready
        limit, rated = self._concurrency, self._interval > 0
        while ready and self._running < limit:
            if rated and not self._rate_allows():
                return
            self._launch(handles[graph.take()])

    def _rate_allows(self) -> bool:
        run = self._run
        assert run is not None
        now = run.loop.time()
        if now < run.next_start:
            if run.timer is None:
                run.timer = run.loop.call_at(run.next_start, self._on_timer)
            return False
        # Keep the even grid when a timer fires a little late, but never let an idle
        # stretch build up credit for a burst.
        base = run.next_start if now - run.next_start < self._interval else now
        run.next_start = base + self._interval
        return True

    def _on_timer(self) -> None:
        assert self._run is not None
        self._run.timer = None
        self._advance()

    def _launch(self, handle: TaskHandle[Any]) -> None:
        fn, args, kwargs = handle._fn, handle._args, handle._kwargs
        if handle._needs:
            args = (*[self._handles[i]._result for i in handle._needs], *args)
        # The arguments may be large (the items of a map); the handle need not keep them.
        handle._args, handle._kwargs = (), _NO_KWARGS
        run = self._run
        assert run is not None
        try:
            if handle._is_async:
                future: asyncio.Future[Any] = run.loop.create_task(fn(*args, **kwargs))
            else:
                if run.executor is None:
                    run.executor = ThreadPoolExecutor(
                        self._concurrency, thread_name_prefix="batchwork-task"
                    )
                call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                future = run.loop.run_in_executor(run.executor, call)
        except Exception as exc:
            # Calling an async function can raise before any await (wrong arguments);
            # that fails this task only, right away.
            self._apply(self._fail(handle, exc))
            return
        self._running += 1
        handle._future = future
        future.add_done_callback(functools.partial(self._on_task_done, handle))

    def _on_task_done(self, handle: TaskHandle[Any], future: asyncio.Future[Any]) -> None:
        self._running -= 1
        self._settle(handle, future)
        self._advance()

    def _on_fallback_done(self, handle: TaskHandle[Any], future: asyncio.Future[Any]) -> None:
        self._settle(handle, future)
        self._advance()

    def _settle(self, handle: TaskHandle[Any], future: asyncio.Future[Any]) -> None:
        handle._future = None
        try:
            value = future.result()
        except asyncio.CancelledError:
            events = self._graph.fail(handle._index, CANCELLED)
            self._cancelled_end(handle)
            self._apply(events)
        except BaseException as exc:
            self._apply(self._fail(handle, exc))
        else:
            self._succeed(handle, value)

    def _succeed(self, handle: TaskHandle[Any], value: Any) -> None:
        handle._result = value
        self._graph.succeed(handle._index)
        self._succeeded += 1
        self._ended(handle)

    def _fail(self, handle: TaskHandle[Any], exc: BaseException) -> list[Event]:
        handle._exception = exc
        self._failed += 1
        abort = self._fail_fast and not self._aborting
        events = self._graph.fail(handle._index, cascade=not abort)
        self._ended(handle)
        if abort:
            self._abort()
        return events

    def _apply(self, events: list[Event]) -> None:
        """End the tasks that cannot run because a need did not succeed, by policy."""
        todo = deque(events)
        while todo:
            node, outcome, need = todo.popleft()
            handle = self._handles[node]
            cause = self._handles[need]._exception
            assert cause is not None
            if outcome == RUNNING:
                todo.extend(self._run_fallback(handle, cause))
                continue
            exc = DependencyFailed(
                f"task {handle.name!r} did not run: it needs {self._handles[need].name!r},"
                f" which {_ENDED_HOW[self._graph.state[need]]}"
            )
            # Down a chain, every DependencyFailed points at the original error.
            root = cause.__cause__ if isinstance(cause, DependencyFailed) else None
            exc.__cause__ = root or cause
            handle._exception = exc
            if outcome == SKIPPED:
                self._skipped += 1
                self._ended(handle)
            else:
                self._failed += 1
                self._ended(handle)
                if self._fail_fast and not self._aborting:
                    self._abort()

    def _run_fallback(self, handle: TaskHandle[Any], cause: BaseException) -> list[Event]:
        assert handle._fallback is not None
        if self._aborting:
            events = self._graph.fail(handle._index, CANCELLED)
            self._cancelled_end(handle)
            return events
        try:
            value = handle._fallback(cause)
        except Exception as exc:
            return self._fail(handle, exc)
        if inspect.isawaitable(value):
            future = asyncio.ensure_future(value)
            handle._future = future
            future.add_done_callback(functools.partial(self._on_fallback_done, handle))
            return []
        self._succeed(handle, value)
        return []

    def _abort(self) -> None:
        """``fail_fast`` or a cancelled ``start()``: cancel everything that has not ended."""
        self._aborting = True
        run = self._run
        if run is not None and run.timer is not None:
            run.timer.cancel()
            run.timer = None
        for node in self._graph.cancel_pending():
            self._cancelled_end(self._handles[node])
        for handle in self._handles:
            if handle._future is not None:
                handle._future.cancel()

    # -- reporting -----------------------------------------------------------------------

    def _ended(self, handle: TaskHandle[Any]) -> None:
        self._unended -= 1
        run = self._run
        assert run is not None
        run.ended += 1
        run.completed.append(handle)
        if run.waiters:
            self._wake(run)
        if self._on_progress is not None or self._bar is not None:
            progress = self._snapshot(handle)
            if self._on_progress is not None:
                _call_safely(self._on_progress, progress)
            if self._bar is not None:
                self._bar.update(progress)

    def _cancelled_end(self, handle: TaskHandle[Any]) -> None:
        handle._exception = asyncio.CancelledError(f"task {handle.name!r} was cancelled")
        self._unended -= 1
        self._cancelled += 1
        run = self._run
        assert run is not None
        run.completed.append(handle)
        if run.waiters:
            self._wake(run)

    @staticmethod
    def _wake(run: _Run) -> None:
        waiters, run.waiters = run.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def progress(self) -> Progress:
        """A snapshot of the counters now, as ``on_progress`` would get it (``task=None``).

        Example::

            print(runner.progress.done, "of", runner.progress.total)
        """
        return self._snapshot(None)

    def _snapshot(self, handle: TaskHandle[Any] | None) -> Progress:
        run = self._run
        done = self._succeeded + self._failed + self._skipped
        total = len(self._handles) - self._cancelled
        if run is None:
            elapsed = 0.0
        else:
            now = run.stopped_at if run.stopped_at is not None else run.loop.time()
            elapsed = now - run.started_at
        ended = run.ended if run is not None else 0
        rate = ended / elapsed if elapsed > 0 else 0.0
        left = total - done
        eta = 0.0 if left == 0 else (left / rate if rate > 0 else None)
        return Progress(
            total=total,
            done=done,
            succeeded=self._succeeded,
            failed=self._failed,
            skipped=self._skipped,
            running=self._running,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            task=handle,
        )


@overload
async def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    concurrency: int = 8,
    progress_bar: bool = False,
) -> list[R]: ...


@overload
async def map(
    fn: Callable[[T], R],
    items: Iterable[T],
    concurrency: int = 8,
    progress_bar: bool = False,
) -> list[R]: ...


# Shadows the builtin on purpose: DESIGN.md names it ``batchwork.map``.
async def map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    concurrency: int = 8,
    progress_bar: bool = False,
) -> list[Any]:
    """Call ``fn(item)`` for every item, at most ``concurrency`` at a time; results in order.

    ``fn`` is async or a plain function (run in threads). Failures raise an
    ``ExceptionGroup`` once every call ended, as :meth:`TaskRunner.start` does.

    Example::

        pages = await batchwork.map(fetch, urls, concurrency=16)
    """
    runner = TaskRunner(concurrency=concurrency, progress_bar=progress_bar)
    for item in items:
        runner.push(fn, item)
    return await runner.start()


def _parse_policy(
    on_needs_failed: NeedsFailedPolicy,
) -> tuple[int, Callable[[BaseException], Any] | None]:
    if on_needs_failed == "fail":
        return FAIL, None
    if on_needs_failed == "skip":
        return SKIP, None
    if callable(on_needs_failed):
        return FALLBACK, on_needs_failed
    raise ValueError(
        f'on_needs_failed must be "fail", "skip" or a callable, got {on_needs_failed!r}'
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def _call_safely(callback: Callable[..., object], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("TaskRunner callback %r raised", callback)
