"""Writing documents to Tiled without making the RunEngine wait.

``TiledWriter`` writes synchronously on the thread that calls it: subscribed
to a RunEngine, every HTTP request is made on the RunEngine's thread. While
the server is unreachable the tiled client retries each failed request
(``TILED_RETRY_ATTEMPTS`` = 10 attempts within ``TILED_RETRY_TIMEOUT`` = 45 s
by default) before TiledWriter gives the run up to its backup directory;
measured here, a scan's run then stalled the plan for about 24 s.
:class:`BackgroundWriter` moves the writer onto its own thread so that
acquisition never waits on storage (DESIGN.md: raw data reaches Tiled
whatever happens, acquisition never waits): documents are queued in order
and written by one thread; an outage shorter than the client's retry window
is bridged by those retries; a longer one sends the affected runs to
TiledWriter's backup directory (JSON lines), from which
:func:`sscell_live.storage.replay_backup` writes them once the server is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

__all__ = ["BackgroundWriter"]

logger = logging.getLogger(__name__)

_FLUSH = object()
_STOP = object()


class BackgroundWriter:
    """Run a document callback (a ``TiledWriter``) on its own thread.

    Parameters
    ----------
    callback : callable
        ``callback(name, doc)``, called for every document in order, on the
        writer thread only (so it needs no locking of its own).
    name : str
        Thread name.

    Attributes
    ----------
    errors : list of dict
        Exceptions the callback raised (``name`` of the document, ``error``,
        ``wall``); a TiledWriter with a backup directory catches its own
        write errors and sends the run to the backup instead, so these are
        rare. Never raised into the caller.
    written : int
        Documents handed to the callback so far.

    Notes
    -----
    The queue is unbounded: documents are small (frames travel by
    reference), and dropping one would lose raw data. Documents are not
    copied: like every bluesky callback, none of the RunEngine's
    subscribers may modify them.
    """

    def __init__(self, callback, *, name: str = "sscell-tiled-writer"):
        self.callback = callback
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._queued = 0
        self.written = 0
        self.errors: list[dict] = []
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def __call__(self, name: str, doc: dict):
        """Queue a document (never blocks, never raises)."""
        with self._lock:
            if self._closed:
                self.errors.append({"name": name, "error": "writer closed: document not written",
                                    "wall": time.time()})
                logger.error("BackgroundWriter is closed: a %r document was not written", name)
                return
            self._queued += 1
        self._queue.put((name, doc))

    @property
    def pending(self) -> int:
        """Documents queued and not yet handed to the callback."""
        with self._lock:
            return self._queued - self.written

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every document queued so far has been handed to the callback.

        Returns
        -------
        bool
            False if ``timeout`` (s) passed first.
        """
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        return done.wait(timeout)

    def close(self, timeout: float | None = 60.0) -> bool:
        """Write what is queued, then stop the thread; True if it stopped within ``timeout`` s."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
        self._queue.put((_STOP, None))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _loop(self):
        while True:
            name, doc = self._queue.get()
            if name is _FLUSH:
                doc.set()
                continue
            if name is _STOP:
                return
            try:
                self.callback(name, doc)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any document
                logger.exception("BackgroundWriter: the callback failed on a %r document", name)
                self.errors.append({"name": name, "error": f"{type(exc).__name__}: {exc}", "wall": time.time()})
            finally:
                with self._lock:
                    self.written += 1
