"""Out-of-process live monitor: documents in over 0MQ, the alarm level back over 0MQ.

The same :class:`~sscell_live.monitor.Monitor` runs in another process (or
on another machine) fed by bluesky's own 0MQ machinery, and its alarm level
travels back to the acquisition process, where the plans read it::

    acquisition process                    proxy                analysis process
    RE ── bluesky Publisher ──▶ in ┌────────────────┐ out ──▶ RemoteDispatcher ──▶ Monitor
                                   │ bluesky Proxy  │                               │
                                   └────────────────┘                               │ put(level)
    beamline.alarm (ophyd Signal) ◀── AlarmListener ◀──── 0MQ PUB ◀── AlarmPublisher ┘

- Documents: :class:`bluesky.callbacks.zmq.Publisher` subscribed to the
  RunEngine, bluesky's 0MQ proxy (``bluesky-0MQ-proxy --in-address HOST:IN
  --out-address HOST:OUT``, a service of its own), and a
  :class:`bluesky.callbacks.zmq.RemoteDispatcher` in the analysis process
  (:func:`serve`). Frames still travel by reference: the analysis process
  reads the detector files, which must be reachable from its machine.
- Alarm: :class:`AlarmPublisher` is the remote monitor's ``alarm`` (it has
  the Signal's ``put(level)``); it publishes, on a 0MQ PUB socket it binds,
  topic ``alarm`` (the level, reasons, time to failure, a sequence number)
  after every assessment *and* again every ``heartbeat_s`` (a late
  subscriber learns the current level; a silent publisher is detectable),
  and topic ``scan`` once per finished scan (its status and scalar
  metrics). :class:`AlarmListener`, in the acquisition process, subscribes
  from a background thread and ``put``\\ s each new level into the Signal the
  plans read (``beamline.alarm``; ``cycle_until_failure`` stops on it).

Messages are two 0MQ frames: the topic (``b"alarm"`` or ``b"scan"``) and a
UTF-8 JSON object (NaN allowed, as Python's json writes it).

0MQ PUB/SUB is lossy by design: a subscriber that connects late misses what
was sent before it joined, and a subscriber that falls more than the
high-water mark (1000 messages) behind loses messages. Start the proxy and
the analysis process first, wait for :meth:`AlarmListener.wait_ready` (the
analysis process is up), and give the Publisher's own connection to the
proxy a moment before the first run (documents published before it is up
are dropped). The ``documents`` count in every ``alarm`` message says how
many documents the remote monitor has received: compare it with what the
RunEngine emitted to see that none was lost (``tests/test_remote.py`` does).

Command line (the analysis process)::

    python -m sscell_live.monitor.remote --zmq PROXY_HOST:OUT_PORT --alarm-port 5579 [--threads 4]

Acquisition side::

    from bluesky.callbacks.zmq import Publisher
    RE.subscribe(Publisher("proxy-host:IN_PORT"))
    listener = AlarmListener("tcp://analysis-host:5579", beamline.alarm)
    listener.wait_ready(60)
    RE(cycle_until_failure(beamline, ...))
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time

__all__ = ["AlarmListener", "AlarmPublisher", "main", "register", "run", "serve"]

logger = logging.getLogger(__name__)

#: Alarm levels the listener accepts (in order of severity).
LEVELS = ("ok", "watch", "imminent", "failed")
ALARM_TOPIC = b"alarm"
SCAN_TOPIC = b"scan"


def _jsonable(v):
    if v is None or isinstance(v, (str, bool, int)):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f


def _tcp(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


# ---------------------------------------------------------------------------------------------
# analysis side
# ---------------------------------------------------------------------------------------------
class AlarmPublisher:
    """The remote monitor's ``alarm``: publishes levels and per-scan results on a 0MQ PUB socket.

    Parameters
    ----------
    address : str
        Where to bind, e.g. ``tcp://*:5579`` (every interface) or
        ``tcp://127.0.0.1:5579``; ``host:port`` means tcp.
    heartbeat_s : float
        Period of the repeated ``alarm`` message (and of the scan-result poll), s.

    Notes
    -----
    ``put`` is called by the monitor's worker thread, the heartbeat by this
    object's own thread; one lock serialises the socket (0MQ sockets are not
    thread-safe).
    """

    def __init__(self, address: str, *, heartbeat_s: float = 1.0):
        import zmq

        if not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0, got {heartbeat_s!r}")
        self.address = _tcp(address)
        self.heartbeat_s = float(heartbeat_s)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 1000)
        self._sock.bind(self.address)
        self._lock = threading.Lock()
        self.level: str | None = None
        self.seq = 0
        self.monitor = None
        self._sent_scans: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, monitor) -> None:
        """Publish this monitor's assessments (reasons, time to failure) and finished scans."""
        self.monitor = monitor

    def start_heartbeat(self) -> None:
        """Start the thread that repeats the level and publishes finished scans."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="sscell-alarm-heartbeat", daemon=True)
            self._thread.start()

    # the Signal interface the Monitor uses
    def put(self, level, **kwargs) -> None:
        """A new assessment's level: remembered and published at once (topic ``alarm``)."""
        with self._lock:
            self.level = str(level)
            self.seq += 1
        self._send_alarm()

    def get(self):
        return self.level

    def _alarm_payload(self) -> dict:
        payload = {"level": self.level, "seq": self.seq, "wall": time.time(), "reasons": [],
                   "time_to_failure_s": None, "experiment_uid": None, "documents": None}
        m = self.monitor
        if m is not None:
            a = m.latest_assessment
            if a is not None:
                payload["reasons"] = list(a.reasons)
                payload["time_to_failure_s"] = _jsonable(a.time_to_failure_s)
            latest = getattr(m, "_latest", None)
            payload["experiment_uid"] = getattr(latest, "uid", None)
            payload["documents"] = int(m.documents)
        return payload

    def _send(self, topic: bytes, payload: dict) -> None:
        data = json.dumps(payload).encode()
        with self._lock:
            if not self._sock.closed:
                self._sock.send_multipart([topic, data])

    def _send_alarm(self) -> None:
        self._send(ALARM_TOPIC, self._alarm_payload())

    def publish_finished_scans(self) -> int:
        """Publish every finished scan not yet published (topic ``scan``); returns how many."""
        m = self.monitor
        if m is None:
            return 0
        from .analysis import scalar_metrics

        n = 0
        for st in m.statuses:
            if st.state not in ("ok", "error", "skipped", "aborted") or st.run_uid in self._sent_scans:
                continue
            result = m.results.get(st.run_uid)
            payload = {"run_uid": st.run_uid, "experiment_uid": st.experiment_uid, "scan_index": st.scan_index,
                       "state": st.state, "error": st.error, "level": st.level,
                       "warnings": list(getattr(result, "warnings", []) or []),
                       "cell_time_s": _jsonable(getattr(result, "cell_time_s", None)),
                       "metrics": {k: _jsonable(v) for k, v in scalar_metrics(result.metrics).items()}
                       if result is not None else {}}
            self._send(SCAN_TOPIC, payload)
            self._sent_scans.add(st.run_uid)
            n += 1
        return n

    def _beat(self):
        next_alarm = 0.0
        poll = min(0.2, self.heartbeat_s)
        while not self._stop.wait(poll):
            try:
                self.publish_finished_scans()
                if time.monotonic() >= next_alarm:
                    self._send_alarm()
                    next_alarm = time.monotonic() + self.heartbeat_s
            except Exception:  # noqa: BLE001 - the heartbeat outlives a bad message
                logger.exception("alarm heartbeat failed")

    def close(self) -> None:
        """Publish what is left, stop the heartbeat, close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.publish_finished_scans()
            self._send_alarm()
        finally:
            with self._lock:
                self._sock.close()
            self._ctx.term()


def serve(zmq_address: str, alarm_address: str, *, options=None, queue_size: int = 8,
          experiment_uid: str | None = None, prefix: bytes = b"", heartbeat_s: float = 1.0,
          monitor_kw: dict | None = None) -> None:
    """Run a Monitor on a 0MQ document stream until interrupted (SIGINT or SIGTERM).

    Parameters
    ----------
    zmq_address : str
        The proxy's *out* address (``host:port``), where RemoteDispatcher subscribes.
    alarm_address : str
        Where :class:`AlarmPublisher` binds (``tcp://*:5579``).
    options : AnalysisOptions, optional
    queue_size, experiment_uid
        As :class:`~sscell_live.monitor.Monitor`.
    prefix : bytes
        Only documents published with this 0MQ prefix (default: all).
    heartbeat_s : float
        Alarm heartbeat period, s.
    monitor_kw : dict, optional
        Further :class:`~sscell_live.monitor.Monitor` keyword arguments.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    from .monitor import Monitor

    publisher = AlarmPublisher(alarm_address, heartbeat_s=heartbeat_s)
    monitor = Monitor(alarm=publisher, options=options, queue_size=queue_size, experiment_uid=experiment_uid,
                      **(monitor_kw or {}))
    publisher.attach(monitor)
    dispatcher = RemoteDispatcher(zmq_address, prefix=prefix)
    dispatcher.subscribe(monitor)
    # the dispatcher connects when its loop starts: the heartbeat ("ready") begins after that
    dispatcher.loop.call_soon(publisher.start_heartbeat)

    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    logger.info("remote monitor: documents from %s, alarm on %s", zmq_address, alarm_address)
    try:
        dispatcher.start()
    except KeyboardInterrupt:
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        monitor.close(timeout=60.0, drain=True)
        publisher.close()


# ---------------------------------------------------------------------------------------------
# acquisition side
# ---------------------------------------------------------------------------------------------
class AlarmListener:
    """Subscribes to an :class:`AlarmPublisher` and writes each new level into a Signal.

    Parameters
    ----------
    address : str
        The publisher's address (``tcp://analysis-host:5579`` or ``host:port``).
    signal : ophyd Signal, optional
        Where levels are ``put`` (``beamline.alarm``; the plans read it).
        Only a *new* assessment (a new sequence number) is put, heartbeats
        are not.

    Attributes
    ----------
    last : dict or None
        The latest ``alarm`` message (``level``, ``reasons``,
        ``time_to_failure_s``, ``seq``, ``documents``: documents the remote
        monitor has received).
    scans : list of dict
        ``scan`` messages, in arrival order.
    errors : list of str
        Messages that could not be decoded or levels that are not one of
        ``ok``, ``watch``, ``imminent``, ``failed``.
    """

    def __init__(self, address: str, signal=None):
        import zmq

        self.address = _tcp(address)
        self.signal = signal
        self.last: dict | None = None
        self.last_wall = math.nan
        self.scans: list[dict] = []
        self.errors: list[str] = []
        self._put_seq = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, ALARM_TOPIC)
        self._sock.setsockopt(zmq.SUBSCRIBE, SCAN_TOPIC)
        self._sock.connect(self.address)
        self._thread = threading.Thread(target=self._loop, name="sscell-alarm-listener", daemon=True)
        self._thread.start()

    @property
    def age_s(self) -> float:
        """Seconds since the last ``alarm`` message (inf before any): a stale link shows here."""
        return time.time() - self.last_wall if self.last is not None else math.inf

    def wait_for(self, predicate, timeout: float | None = None) -> bool:
        """Block until ``predicate(self)`` holds (checked at each message); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.5))
            return True

    def wait_ready(self, timeout: float | None = 60.0) -> bool:
        """Block until the first message from the remote monitor (it is up and connected)."""
        return self.wait_for(lambda s: s.last is not None, timeout)

    def _loop(self):
        import zmq

        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                topic, data = self._sock.recv_multipart()
                payload = json.loads(data)
            except Exception as exc:  # noqa: BLE001 - a bad message is recorded, the link goes on
                self.errors.append(f"undecodable message: {type(exc).__name__}: {exc}")
                continue
            put = None
            with self._cond:
                if topic == SCAN_TOPIC:
                    self.scans.append(payload)
                elif topic == ALARM_TOPIC:
                    self.last, self.last_wall = payload, time.time()
                    level, seq = payload.get("level"), payload.get("seq")
                    if level is not None and seq != self._put_seq:
                        if level in LEVELS:
                            put, self._put_seq = level, seq
                        else:
                            self.errors.append(f"unknown alarm level {level!r} (seq {seq})")
                            self._put_seq = seq
                self._cond.notify_all()
            if put is not None and self.signal is not None:
                try:
                    self.signal.put(put)
                except Exception as exc:  # noqa: BLE001 - recorded; the listener keeps listening
                    self.errors.append(f"signal put of {put!r} failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zmq", required=True, metavar="HOST:PORT",
                   help="the 0MQ proxy's out address (bluesky-0MQ-proxy --out-address)")
    p.add_argument("--alarm-port", required=True, type=int, metavar="N",
                   help="TCP port where the alarm publisher binds")
    p.add_argument("--alarm-host", default="*",
                   help="interface the alarm publisher binds (default every interface; 127.0.0.1 for local use)")
    p.add_argument("--prefix", default="", help="only documents published with this 0MQ prefix")
    p.add_argument("--experiment", default=None, metavar="UID", help="follow only this experiment_uid")
    p.add_argument("--threads", type=int, default=None, help="reconstruction threads (default: all cores)")
    p.add_argument("--rows", choices=("all", "slabs"), default="all",
                   help="detector rows to reconstruct: all, or the interface slabs")
    p.add_argument("--queue-size", type=int, default=8, help="scans that may wait for analysis (drop-oldest)")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="alarm heartbeat period, s")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


_DESCRIPTION = ("Run the live monitor in this process on a bluesky 0MQ document stream; publish its alarm level "
                "(and per-scan metrics) on a 0MQ PUB socket for the acquisition process (AlarmListener).")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sscell_live.monitor.remote", description=_DESCRIPTION)
    _add_arguments(p)
    return p


def register(subparsers) -> None:
    """Add ``sscell-live monitor --zmq HOST:PORT --alarm-port N`` to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("monitor", help="run the live monitor on a 0MQ document stream (another process "
                                              "or machine than the RunEngine)", description=_DESCRIPTION)
    _add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Execute parsed arguments (see :func:`main`); returns an exit code (0 after SIGINT/SIGTERM, 2 bad input)."""
    if not 0 < args.alarm_port < 65536:
        print(f"error: --alarm-port must be a TCP port (1-65535), got {args.alarm_port}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if not args.heartbeat_s > 0:
        print(f"error: --heartbeat-s must be > 0, got {args.heartbeat_s}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from .analysis import AnalysisOptions

    options = AnalysisOptions(rows=None if args.rows == "all" else "slabs", threads=args.threads)
    try:
        serve(args.zmq, f"tcp://{args.alarm_host}:{args.alarm_port}", options=options, queue_size=args.queue_size,
              experiment_uid=args.experiment, prefix=args.prefix.encode(), heartbeat_s=args.heartbeat_s)
    except Exception as exc:  # zmq: address in use, bad address
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m sscell_live.monitor.remote``."""
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
