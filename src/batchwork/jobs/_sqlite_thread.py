"""One thread that owns one SQLite connection, so the event loop never blocks on SQLite;
and the one exception, short writes run on the event loop when the write lock is free.

Calls are queued from any event loop and answered on that loop. For the writer thread,
write calls that are queued while a transaction runs are taken together into the next
one: each in its own SAVEPOINT (one call's error undoes only that call), one ``COMMIT``
for all, and every caller answered only after the commit. That is group commit without
a timer: a lone caller pays no extra wait, a crowd shares the transaction's cost.

:class:`InlineWriter` is the exception. A lone one-job enqueue costs SQLite ~40 µs, but
the hand-off to the writer thread and back (queue, thread wake-up, GIL switch,
``call_soon_threadsafe``, loop wake-up) cost ~150 µs more: one call at a time, in
sequence, reached ~8k jobs/s that way and ~18k/s inline. So, where a commit does not sync
to disk (``synchronous=NORMAL`` in WAL mode: a commit is an append to the WAL in the page
cache), such writes run on the event loop's thread, the calls of one turn of the loop in
one transaction, over a second connection whose ``busy_timeout`` is 0: if the write lock
is not free at once (another process, or our own writer thread, is in a transaction),
nothing has happened and the calls go to the writer thread as before; the loop never
waits on a lock. The same goes for any error:
the transaction is rolled back and the writer thread runs the call again, which reports
the error exactly as it always did. The connection never checkpoints
(``wal_autocheckpoint=0``, a checkpoint writes and syncs many pages); the store asks the
writer thread for one every :data:`CHECKPOINT_EVERY` inline calls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

from batchwork.errors import StoreError

from ._sqlite_schema import map_errors

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], Any]

MAX_GROUP = 256
CHECKPOINT_EVERY = 200  # inline calls, each ~5 WAL frames: SQLite's autocheckpoint is 1,000


class _Call:
    __slots__ = ("fn", "future", "loop", "notify", "write")

    def __init__(
        self,
        fn: Work,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
        *,
        write: bool,
        notify: bool,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.write = write
        self.notify = notify


_STOP = object()


class ConnectionThread:
    """A daemon thread running queued functions on its own SQLite connection.

    ``connect`` runs on the thread (sqlite3 connections stay on the thread that made them).
    ``on_commit`` is called on the thread after a transaction holding a call made with
    ``notify=True`` has committed.

    Example::

        thread = ConnectionThread("writer", lambda: sqlite3.connect("x.db"), on_commit=None)
        thread.start()
        rows = await thread.call(lambda conn: conn.execute("SELECT 1").fetchall())
        thread.stop()
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        on_commit: Callable[[], None] | None,
    ) -> None:
        self._name = name
        self._connect = connect
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Call | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Counters, written on the thread only (read from anywhere: ints are atomic).
        self.calls = 0
        self.transactions = 0
        self.failed_transactions = 0
        self.largest_group = 0

    def start(self) -> None:
        """Start the thread (it connects before taking the first call)."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish queued calls, close the connection and join the thread.

        A call made while stopping fails with :class:`StoreError` (never hangs).
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join()
        self._fail_queued()

    async def call(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False, notify: bool = False
    ) -> T:
        """Run ``fn(conn)`` on the thread; in a transaction when ``write``."""
        if self._thread is None:
            raise StoreError("the SQLite store is not open (call open() first)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(fn, loop, future, write=write, notify=notify))
        if self._thread is None:  # stopped meanwhile: make sure the call is answered
            self._fail_queued()
        return await future

    def post(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Queue ``fn(conn)`` outside any transaction; nobody waits for it, errors are
        dropped (housekeeping such as a checkpoint)."""
        if self._thread is not None:
            self._queue.put(_Call(fn, None, None, write=False, notify=False))

    def _fail_queued(self) -> None:
        late = StoreError("the SQLite store was closed")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Call):
                _answer([(item, False, late)])

    # -- on the thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            with map_errors("connect"):
                conn = self._connect()
        except BaseException as exc:
            self._fail_everything(exc)
            return
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _fail_everything(self, exc: BaseException) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, _Call)
            _answer([(item, False, exc)])

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Call)
            calls = [first]
            stop = False
            while len(calls) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Call)
                calls.append(item)
            self.calls += len(calls)
            self._run_group(conn, calls)
            if stop:
                return

    def _run_group(self, conn: sqlite3.Connection, calls: list[_Call]) -> None:
        if len(calls) > 1 and any(call.loop is None for call in calls):
            # Posted housekeeping runs after the group's transaction: SQLite refuses a
            # checkpoint inside one.
            self._run_group(conn, [call for call in calls if call.loop is not None])
            for call in calls:
                if call.loop is None:
                    _run_one(conn, call)
            return
        if not any(call.write for call in calls):
            _answer([_run_one(conn, call) for call in calls])
            return
        self.transactions += 1
        self.largest_group = max(self.largest_group, len(calls))
        try:
            with map_errors("begin transaction"):
                conn.execute("BEGIN IMMEDIATE")
            if len(calls) == 1:
                answers = [_run_alone(conn, calls[0])]
            else:
                answers = [_run_in_savepoint(conn, call) for call in calls]
            with map_errors("commit"):
                conn.execute("COMMIT")
        except BaseException as exc:
            self.failed_transactions += 1
            _rollback(conn)
            _answer([(call, False, exc) for call in calls])
            return
        if self._on_commit is not None and any(call.notify for call in calls):
            self._on_commit()
        _answer(answers)


def _run_one(conn: sqlite3.Connection, call: _Call) -> tuple[_Call, bool, Any]:
    try:
        with map_errors("query"):
            return call, True, call.fn(conn)
    except Exception as exc:
        return call, False, exc


def _run_alone(conn: sqlite3.Connection, call: _Call) -> tuple[_Call, bool, Any]:
    # Alone in its transaction: an error rolls the whole transaction back (re-raised).
    with map_errors("write"):
        return call, True, call.fn(conn)


def _run_in_savepoint(conn: sqlite3.Connection, call: _Call) -> tuple[_Call, bool, Any]:
    with map_errors("savepoint"):
        conn.execute("SAVEPOINT batchwork_call")
    try:
        with map_errors("write"):
            value = call.fn(conn)
    except Exception as exc:
        with map_errors("rollback to savepoint"):
            conn.execute("ROLLBACK TO batchwork_call")
            conn.execute("RELEASE batchwork_call")
        return call, False, exc
    with map_errors("release savepoint"):
        conn.execute("RELEASE batchwork_call")
    return call, True, value


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # The connection may have rolled back already (e.g. after a failed COMMIT).
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _cancelled(call: _Call) -> bool:
    return call.future is None or call.future.done()


def _answer(answers: list[tuple[_Call, bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]] = {}
    for answer in answers:
        loop = answer[0].loop
        if loop is not None:  # None: a posted call, nobody to answer
            by_loop.setdefault(loop, []).append(answer)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, group)


def _settle(answers: list[tuple[_Call, bool, Any]]) -> None:
    for call, ok, value in answers:
        future = call.future
        if future is None or future.done():
            continue  # the caller was cancelled
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class NotRun(enum.Enum):
    """The type of :data:`NOT_RUN`."""

    NOT_RUN = enum.auto()


NOT_RUN: Final = NotRun.NOT_RUN
"""What :meth:`InlineWriter.write` returns when the call must go to the writer thread."""


class InlineWriter:
    """Runs write calls on the event loop's thread when the write lock is free at once
    (see the module docstring); thread-safe.

    Calls made in one turn of a loop share one transaction, each in its own savepoint,
    as on the writer thread: a crowd of one-job enqueues (100 requests at once) commits
    once. ``conn`` must allow use from any thread and have ``busy_timeout`` 0.
    ``on_commit`` runs after each commit; ``checkpoint`` after every
    :data:`CHECKPOINT_EVERY` calls committed.

    Example::

        value = await inline.write(fn)
        if value is NOT_RUN:
            value = await writer.call(fn, write=True)
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        on_commit: Callable[[], None],
        checkpoint: Callable[[], None],
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._on_commit = on_commit
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._queued: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._uncheckpointed = 0
        self.commits = 0

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T | Literal[NotRun.NOT_RUN]:
        """``fn(conn)`` committed, or :data:`NOT_RUN` (nothing written by this call).

        Cancelled before its turn, the call writes nothing.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T | Literal[NotRun.NOT_RUN]] = loop.create_future()
        queued = self._queued.get(loop)
        if queued is None:
            queued = self._queued[loop] = []
            loop.call_soon(self._flush, loop)
        queued.append(_Call(fn, loop, future, write=True, notify=True))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        calls = [call for call in self._queued.pop(loop) if not _cancelled(call)]
        try:
            answers = self._run(calls) if calls else []
        except BaseException:
            _settle([(call, True, NOT_RUN) for call in calls])
            raise
        _settle(answers)

    def _run(self, calls: list[_Call]) -> list[tuple[_Call, bool, Any]]:
        not_run = [(call, True, NOT_RUN) for call in calls]
        if not self._lock.acquire(blocking=False):
            return not_run  # another thread is writing through this connection
        try:
            conn = self._conn
            if conn is None:
                return not_run  # closed
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return not_run  # busy: someone holds the write lock
            try:
                if len(calls) == 1:
                    answers = [_run_alone(conn, calls[0])]
                else:
                    answers = [_run_in_savepoint(conn, call) for call in calls]
                conn.execute("COMMIT")
            except Exception:
                _rollback(conn)
                return not_run
            except BaseException:
                _rollback(conn)
                raise
            self.commits += 1
            self._uncheckpointed += len(calls)
            checkpoint = self._uncheckpointed >= CHECKPOINT_EVERY
            if checkpoint:
                self._uncheckpointed = 0
        finally:
            self._lock.release()
        self._on_commit()
        if checkpoint:
            self._checkpoint()
        # A call that failed was undone: the writer thread runs it again and reports.
        return [(call, True, value if ok else NOT_RUN) for call, ok, value in answers]

    def close(self) -> None:
        """Close the connection (waits for a write in progress on another thread)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
