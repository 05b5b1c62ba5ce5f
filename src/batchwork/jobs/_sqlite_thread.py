"""One thread that owns one SQLite connection, so the event loop never blocks on SQLite.

Calls are queued from any event loop and answered on that loop. For the writer thread,
write calls that are queued while a transaction runs are taken together into the next
one: each in its own SAVEPOINT (one call's error undoes only that call), one ``COMMIT``
for all, and every caller answered only after the commit. That is group commit without
a timer: a lone caller pays no extra wait, a crowd shares the transaction's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from batchwork.errors import StoreError

from ._sqlite_schema import map_errors

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], Any]

MAX_GROUP = 256


class _Call:
    __slots__ = ("fn", "future", "loop", "notify", "write")

    def __init__(
        self,
        fn: Work,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
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
            self._run_group(conn, calls)
            if stop:
                return

    def _run_group(self, conn: sqlite3.Connection, calls: list[_Call]) -> None:
        self.calls += len(calls)
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


def _answer(answers: list[tuple[_Call, bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]] = {}
    for answer in answers:
        by_loop.setdefault(answer[0].loop, []).append(answer)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, group)


def _settle(answers: list[tuple[_Call, bool, Any]]) -> None:
    for call, ok, value in answers:
        if call.future.done():
            continue  # the caller was cancelled
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
