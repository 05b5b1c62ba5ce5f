"""Run N worker processes under one supervisor that restarts a child that dies.

The supervisor is deliberately dumb: each child is a whole ``batchwork worker`` process
(its own event loop, store connection and heartbeats), so a child that segfaults, runs out
of memory or is SIGKILLed takes nothing else down. Correctness after a crash is the job
system's business (leases and recovery by the surviving workers); the supervisor only puts
the process count back.

Example::

    supervisor = Supervisor(
        [sys.executable, "-m", "batchwork", "worker", "app:processor"], processes=2
    )
    supervisor.run()      # blocks until SIGINT/SIGTERM, then stops the children
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

from batchwork._retry import backoff_delay

__all__ = ["ChildEvent", "Supervisor", "restart_delay"]


@dataclass(frozen=True, slots=True)
class ChildEvent:
    """Something that happened to a child: ``started``, ``exited`` or ``stopped``.

    ``returncode`` is negative for a child killed by a signal (``-9`` for SIGKILL).
    """

    kind: str
    slot: int
    pid: int
    returncode: int | None = None


def restart_delay(quick_failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait before restarting a child that died ``quick_failures`` times in a row.

    The first restart is immediate-ish (``base``); a child that keeps dying right after its
    start backs off exponentially up to ``cap`` so a broken deployment does not fork-bomb.

    Example::

        restart_delay(0, base=0.5, cap=30)   # 0.5
        restart_delay(3, base=0.5, cap=30)   # 4.0
    """
    # The core's backoff clamps its exponent: a child failing for days never overflows.
    return backoff_delay(quick_failures + 1, backoff=base, max_backoff=cap, jitter=False)


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    quick_failures: int = 0
    restarts: int = 0
    history: list[int] = field(default_factory=list)


class Supervisor:
    """Keep ``processes`` copies of a command running; restart any that exits.

    ``argv`` is the child command (each child gets ``BATCHWORK_WORKER_SLOT`` in its
    environment; ``output``, when given, receives its stdout and stderr). A child
    exiting while the supervisor runs is restarted after :func:`restart_delay`; a child
    that ran longer than ``stable_after`` seconds resets its backoff. :meth:`stop` (or
    SIGINT/SIGTERM while :meth:`run` blocks in the main thread) sends SIGTERM to every
    child, so each shuts down gracefully, and SIGKILLs those still alive after
    ``stop_timeout`` seconds.

    Example::

        sup = Supervisor([sys.executable, "-m", "batchwork", "worker", "app:p"], processes=2)
        thread = threading.Thread(target=sup.run)
        thread.start()
        ...
        sup.stop()
        thread.join()
    """

    def __init__(
        self,
        argv: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        restart_base: float = 0.5,
        restart_cap: float = 30.0,
        stable_after: float = 10.0,
        stop_timeout: float = 60.0,
        poll_interval: float = 0.1,
        on_event: Callable[[ChildEvent], None] | None = None,
        output: IO[Any] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes!r}")
        self.argv = list(argv)
        self.processes = processes
        self._env = dict(os.environ if env is None else env)
        self._restart_base = restart_base
        self._restart_cap = restart_cap
        self._stable_after = stable_after
        self._stop_timeout = stop_timeout
        self._poll = poll_interval
        self._on_event = on_event
        self._output = output
        self._slots = [_Slot(i) for i in range(processes)]
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # -- observing -------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        """Process ids of the children alive now, by slot."""
        with self._lock:
            return [
                s.process.pid
                for s in self._slots
                if s.process is not None and s.process.poll() is None
            ]

    @property
    def restarts(self) -> int:
        """How many times a child was restarted since :meth:`run` began."""
        return sum(s.restarts for s in self._slots)

    # -- running ---------------------------------------------------------------------
    def start(self) -> None:
        """Start every child now (non-blocking); :meth:`run` calls it."""
        with self._lock:
            for slot in self._slots:
                if slot.process is None:
                    self._spawn(slot)

    def run(self) -> int:
        """Start the children and supervise them until :meth:`stop` or SIGINT/SIGTERM.

        Returns 0 once every child has exited. Signal handlers are installed only when
        called from the main thread.
        """
        restore = self._install_signals()
        try:
            self.start()
            while not self._stopping.wait(self._poll):
                self.check()
        finally:
            self._shutdown()
            restore()
        return 0

    def check(self, now: float | None = None) -> None:
        """One supervision pass: notice exited children and restart those that are due."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for slot in self._slots:
                if self._stopping.is_set():
                    return
                self._check_slot(slot, now)

    def stop(self) -> None:
        """Ask :meth:`run` to stop the children and return (safe from any thread)."""
        self._stopping.set()

    # -- internals -------------------------------------------------------------------
    def _check_slot(self, slot: _Slot, now: float) -> None:
        proc = slot.process
        if proc is not None:
            code = proc.poll()
            if code is None:
                return
            slot.process = None
            slot.history.append(code)
            quick = now - slot.started_at < self._stable_after
            slot.quick_failures = slot.quick_failures + 1 if quick else 0
            delay = restart_delay(
                max(0, slot.quick_failures - 1), base=self._restart_base, cap=self._restart_cap
            )
            slot.restart_at = now + delay
            self._emit(ChildEvent("exited", slot.index, proc.pid, code))
        if slot.restart_at is not None and now >= slot.restart_at:
            slot.restarts += 1
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        env = {**self._env, "BATCHWORK_WORKER_SLOT": str(slot.index)}
        slot.process = subprocess.Popen(
            self.argv,
            env=env,
            stdout=self._output,
            stderr=self._output,
            # Own process group: a terminal's Ctrl-C reaches only the supervisor, which
            # forwards one SIGTERM, instead of every child getting SIGINT and SIGTERM.
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        slot.started_at = time.monotonic()
        slot.restart_at = None
        self._emit(ChildEvent("started", slot.index, slot.process.pid))

    def _shutdown(self) -> None:
        with self._lock:
            procs = [(s.index, s.process) for s in self._slots if s.process is not None]
            for _, proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self._stop_timeout
            for index, proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self._emit(ChildEvent("stopped", index, proc.pid, proc.returncode))
            for slot in self._slots:
                slot.process = None

    def _emit(self, event: ChildEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handle(signum: int, frame: FrameType | None) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _die_with_parent() -> None:
    # A SIGKILLed supervisor cannot forward anything; ask Linux to SIGTERM the children
    # then, so no orphaned worker keeps running unsupervised.
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
