"""A bounded, never-blocking job queue served by one analysis thread.

Policy when analysis falls behind (DESIGN.md: acquisition never waits):
``submit`` never blocks. When the queue already holds ``maxsize`` jobs the
*oldest queued* job is dropped (skip towards the newest scan), its
``on_drop`` callback is told, and :attr:`AnalysisWorker.dropped` counts it.
The job in progress is never interrupted. A job that raises is caught; the
thread carries on with the next one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback

__all__ = ["AnalysisWorker", "Job"]

logger = logging.getLogger(__name__)


class Job:
    """A unit of work: ``run()`` on the worker thread, ``on_drop()`` if dropped, ``on_error(exc, tb)`` if it raises."""

    def run(self):  # pragma: no cover - interface
        raise NotImplementedError

    def on_drop(self):
        pass

    def on_error(self, exc: BaseException, tb: str):
        pass


class AnalysisWorker:
    """One daemon thread serving a bounded deque of :class:`Job`.

    Parameters
    ----------
    maxsize : int
        Jobs that may wait (>= 1); beyond it the oldest waiting job is dropped.
    name : str
        Thread name.
    """

    def __init__(self, maxsize: int = 8, name: str = "sscell-monitor"):
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        self.maxsize = int(maxsize)
        self._jobs = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self.dropped = 0
        self.done = 0
        self.failed = 0
        self.max_backlog = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- producer side (RunEngine thread) -------------------------------------------
    def submit(self, job: Job) -> bool:
        """Queue a job without blocking; returns False if the worker is closed."""
        dropped = None
        with self._cond:
            if self._closed:
                return False
            if len(self._jobs) >= self.maxsize:
                dropped = self._jobs.popleft()
                self.dropped += 1
            self._jobs.append(job)
            self.max_backlog = max(self.max_backlog, len(self._jobs) + self._busy)
            self._cond.notify_all()
        if dropped is not None:
            try:
                dropped.on_drop()
            except Exception:
                logger.exception("on_drop of a dropped job failed")
        return True

    @property
    def backlog(self) -> int:
        """Jobs waiting plus the one in progress."""
        with self._cond:
            return len(self._jobs) + int(self._busy)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job waits or runs; True if idle, False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_room(self, timeout: float | None = None) -> bool:
        """Block until fewer than ``maxsize`` jobs wait (a submission would drop none); True if so, False on timeout.

        For producers that may wait (replay at full speed), never for the RunEngine.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._jobs) >= self.maxsize and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float | None = 30.0, drain: bool = True) -> None:
        """Stop the thread (after the queued jobs if ``drain``, else dropping them)."""
        with self._cond:
            if not drain:
                while self._jobs:
                    job = self._jobs.popleft()
                    self.dropped += 1
                    try:
                        job.on_drop()
                    except Exception:
                        logger.exception("on_drop of a dropped job failed")
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- consumer side ---------------------------------------------------------------
    def _loop(self):
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs and self._closed:
                    return
                job = self._jobs.popleft()
                self._busy = True
                self._cond.notify_all()  # room in the queue (wait_room)
            try:
                job.run()
                self.done += 1
            except BaseException as exc:  # noqa: BLE001 - a job never kills the thread
                self.failed += 1
                try:
                    job.on_error(exc, traceback.format_exc())
                except Exception:
                    logger.exception("on_error of a failed job failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
