"""The live monitor: a document callback that analyses every scan off the RunEngine thread.

Subscribe it to a RunEngine (``RE.subscribe(monitor)``), a 0MQ
RemoteDispatcher, or feed it replayed documents: it only sees documents.

On the caller's thread (the RunEngine's) it only files documents: runs of an
experiment are followed by ``experiment_uid``, potentiostat events become
history rows, a tomo_scan run's StreamResource/StreamDatum documents are kept
(frames stay in their files). A scan's stop document submits the scan to the
:class:`~sscell_live.monitor.worker.AnalysisWorker`; a galvanostatic step's
stop submits a cheap re-assessment (the voltage channel between scans).
Nothing on this path blocks or raises: an error is recorded in
:attr:`Monitor.errors`.

On the worker thread, per scan: frames read from the files, normalised and
reconstructed, segmented (calibration fitted on the experiment's first
analysed scan, then held), measured; a metrics row is appended to the
experiment's history, :func:`sscell_live.alarm.assess` runs on the history as
of the scan's stop, the level is ``put`` on the alarm Signal, the scan's
analysis run (:mod:`sscell_live.monitor.publish`: metrics, maps, slabs,
alarm) is handed to ``emit`` (a TiledWriter, for example), and the scan's
:class:`ScanStatus` says ``ok`` or ``error`` (with the traceback).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
from event_model import DocumentRouter

from .analysis import AnalysisOptions, ExperimentState, analyse_scan, scalar_metrics
from .frames import RunData
from .publish import Publisher
from .worker import AnalysisWorker, Job

__all__ = ["Monitor", "ScanStatus"]

#: potentiostat data keys (``<device>-<suffix>``) -> history columns (registry names)
_POT_COLUMNS = ("voltage_V", "current_mA_cm2", "current_mA", "charge_passed_C", "bulk_resistance_ohm",
                "cell_time_s")


@dataclass
class ScanStatus:
    """Analysis status of one scan.

    ``state``: ``queued``, ``running``, ``ok``, ``error`` (``error`` and
    ``traceback`` set) or ``skipped`` (dropped by the queue policy).
    Wall times are ``time.time()`` values; ``timings_s`` splits the analysis.
    """

    run_uid: str
    experiment_uid: str
    scan_index: int
    state: str = "queued"
    error: str | None = None
    traceback: str | None = None
    stop_wall: float = float("nan")
    started_wall: float = float("nan")
    finished_wall: float = float("nan")
    level: str | None = None
    timings_s: dict = field(default_factory=dict)
    #: Problems with the data that did not stop the analysis (dropped frames, named).
    warnings: list = field(default_factory=list)


class _Experiment:
    """History and state of one followed experiment (guarded by the monitor's lock)."""

    def __init__(self, uid: str, start: dict):
        self.uid = uid
        self.state = ExperimentState(uid)
        self.pot_rows: list[dict] = []
        self.scan_rows: list[dict] = []
        cell = start.get("cell") or {}
        protocol = start.get("protocol") or {}
        # what the alarm may know of the cell: its chemistry selects the literature limits,
        # the protocol's current gives the effective current density over the contact area
        self.cell = {"area_cm2": cell.get("area_cm2"), "cutoff_V": protocol.get("cutoff_V"),
                     "chemistry": cell.get("chemistry"), "current_mA_cm2": protocol.get("current_mA_cm2")}
        self.assessment = None

    def frame(self, n_pot: int | None = None, n_scan: int | None = None) -> pd.DataFrame:
        pot = pd.DataFrame(self.pot_rows[:n_pot] if n_pot is not None else self.pot_rows)
        if len(pot):
            q = pot["charge_passed_C"].to_numpy(dtype=float) if "charge_passed_C" in pot else np.zeros(len(pot))
            dq = np.abs(np.diff(np.nan_to_num(q), prepend=0.0))
            pot["charge_passed_abs_C"] = np.cumsum(dq)
            if "voltage_V" in pot and "current_mA_cm2" in pot:
                on = pot["current_mA_cm2"].to_numpy(dtype=float) != 0
                pot["polarization_V"] = np.where(on, np.abs(pot["voltage_V"].to_numpy(dtype=float)), np.nan)
        scans = pd.DataFrame(self.scan_rows[:n_scan] if n_scan is not None else self.scan_rows)
        if not len(pot) and not len(scans):
            return pd.DataFrame({"cell_time_s": pd.Series(dtype=float), "row_kind": pd.Series(dtype=object)})
        df = pd.concat([pot, scans], ignore_index=True, sort=False)
        return df.sort_values("cell_time_s", kind="stable").reset_index(drop=True)


class _ScanJob(Job):
    def __init__(self, monitor, exp, run, status, n_pot):
        self.monitor, self.exp, self.run_data, self.status = monitor, exp, run, status
        self.n_pot = n_pot  # potentiostat rows received before the scan's stop: the history it is assessed on

    def run(self):
        self.monitor._analyse(self)

    def on_drop(self):
        with self.monitor._lock:
            self.status.state = "skipped"
            self.status.error = "dropped: analysis fell behind (drop-oldest policy)"
            self.status.finished_wall = time.time()

    def on_error(self, exc, tb):
        with self.monitor._lock:
            self.status.state = "error"
            self.status.error = f"{type(exc).__name__}: {exc}"
            self.status.traceback = tb
            self.status.finished_wall = time.time()
        self.monitor._publish_failed(self)


class _AssessJob(Job):
    def __init__(self, monitor, exp, n_pot):
        self.monitor, self.exp, self.n_pot = monitor, exp, n_pot

    def run(self):
        self.monitor._assess(self.exp, self.n_pot, None)

    def on_error(self, exc, tb):
        self.monitor._record_error(f"assessment of experiment {self.exp.uid}", exc, tb)


class Monitor(DocumentRouter):
    """Live analysis of an operando experiment's documents.

    Parameters
    ----------
    alarm : ophyd Signal, optional
        Where the alarm level (``ok``, ``watch``, ``imminent``, ``failed``) is
        ``put`` after every assessment (``beamline.alarm``; the plans read it).
    options : AnalysisOptions, optional
        Reconstruction rows, Paganin delta/beta, ring removal, threads, preset.
    queue_size : int
        Scans (and re-assessments) that may wait for the worker; beyond it the
        oldest waiting job is dropped (a dropped scan's status is ``skipped``;
        :attr:`dropped` counts them). The RunEngine never waits.
    experiment_uid : str, optional
        Follow only this experiment (default: every experiment seen; the
        latest is the one :attr:`history` and :attr:`latest_assessment` show).
    analyse : callable, optional
        ``analyse(run_data, experiment_state, options, charge_C) -> ScanResult``;
        default :func:`sscell_live.monitor.analysis.analyse_scan` (tests inject
        slow or failing ones).
    assess_steps : bool
        Also re-assess at each galvanostatic step's stop and at the first
        potentiostat reading of each new current setting.
    emit : callable, optional
        ``emit(name, doc)`` receives the documents of one analysis run per
        analysed scan (:mod:`sscell_live.monitor.publish`), on the worker
        thread (give it its own TiledWriter, not the RunEngine's: a
        TiledWriter is not thread-safe). An exception in ``emit`` is recorded
        in :attr:`errors`; the analysis and the next scan go on.
    frames : callable, optional
        ``frames(start_doc) -> frame source`` (see
        :mod:`sscell_live.monitor.frames`) for each scan run; default: read
        the files its StreamResources name. Replay uses Tiled arrays.
    slab_directory : path, optional
        Where the reconstructed interface slabs are written (HDF5) for the
        analysis runs' ``slabs`` stream; a folder the Tiled server can read.
        None: no slabs published.
    analysis_md : dict, optional
        Extra start metadata of every analysis run (``replay`` uses it).

    Attributes
    ----------
    errors : list of dict
        Problems outside a scan's analysis (a malformed document, a failed
        assessment or alarm put): ``where``, ``error``, ``traceback``.
    results : dict
        run uid -> :class:`~sscell_live.monitor.analysis.ScanResult` (full
        metrics, maps included) of every scan analysed.
    max_dispatch_s : float
        Longest time a document spent in this callback on the caller's thread.
    analysis_runs : dict
        raw scan run uid -> uid of the analysis run emitted for it.
    """

    def __init__(self, alarm=None, *, options: AnalysisOptions | None = None, queue_size: int = 8,
                 experiment_uid: str | None = None, analyse=None, assess_steps: bool = True, emit=None,
                 frames=None, slab_directory=None, analysis_md: dict | None = None):
        super().__init__()
        self.alarm = alarm
        self.options = options or AnalysisOptions()
        self.follow = experiment_uid
        self._analyse_fn = analyse or analyse_scan
        self.assess_steps = bool(assess_steps)
        self._lock = threading.RLock()
        self._experiments: dict[str, _Experiment] = {}
        self._latest: _Experiment | None = None
        self._runs: dict[str, tuple[RunData, _Experiment]] = {}
        self._desc_run: dict[str, str] = {}
        self._statuses: dict[str, ScanStatus] = {}
        self.results: dict = {}
        self.errors: list[dict] = []
        self.documents = 0
        self.max_dispatch_s = 0.0
        self.emit = emit
        self.frames = frames
        self.publisher = Publisher(slab_directory, md=analysis_md)
        self.analysis_runs: dict[str, str] = {}
        self._worker = AnalysisWorker(queue_size)

    # -- document side (caller's thread: cheap, never raises) --------------------------
    def __call__(self, name, doc, validate=False):
        t0 = time.perf_counter()
        try:
            return super().__call__(name, doc, validate)
        except Exception as exc:  # noqa: BLE001 - never into the RunEngine
            import traceback

            self._record_error(f"{name} document", exc, traceback.format_exc())
            return name, doc
        finally:
            self.documents += 1
            self.max_dispatch_s = max(self.max_dispatch_s, time.perf_counter() - t0)

    def start(self, doc):
        exp_uid = doc.get("experiment_uid")
        if exp_uid is None or (self.follow is not None and exp_uid != self.follow):
            return
        if doc.get("run_kind") not in ("tomo_scan", "galvanostatic_step"):
            return
        with self._lock:
            exp = self._experiments.get(exp_uid)
            if exp is None:
                exp = self._experiments[exp_uid] = _Experiment(exp_uid, doc)
            self._latest = exp
            source = self.frames(doc) if self.frames is not None and doc["run_kind"] == "tomo_scan" else None
            self._runs[doc["uid"]] = (RunData(doc, source), exp)

    def descriptor(self, doc):
        entry = self._runs.get(doc["run_start"])
        if entry is not None:
            self._desc_run[doc["uid"]] = doc["run_start"]
            entry[0].add("descriptor", doc)

    def event(self, doc):
        run_uid = self._desc_run.get(doc["descriptor"])
        if run_uid is None:
            return
        run, exp = self._runs[run_uid]
        stream = run.descriptors[doc["descriptor"]]
        pot_stream = run.start.get("potentiostat_stream", "potentiostat")
        if stream == pot_stream:
            row = {"row_kind": "potentiostat", "run_uid": run_uid}
            for k, v in doc["data"].items():
                suffix = k.split("-", 1)[-1]
                if suffix in _POT_COLUMNS:
                    row[suffix] = float(v)
            if "cell_time_s" in row:
                with self._lock:
                    prev = exp.pot_rows[-1].get("current_mA_cm2", 0.0) if exp.pot_rows else 0.0
                    exp.pot_rows.append(row)
                    n_pot = len(exp.pot_rows)
                j = row.get("current_mA_cm2", 0.0)
                if self.assess_steps and j != 0 and j != prev:
                    # a new current setting is a reading the current limits act on at once
                    # (a cell far above its CCD may short before the next scan)
                    self._worker.submit(_AssessJob(self, exp, n_pot))
            return
        if run.start.get("run_kind") == "tomo_scan":
            run.add("event", doc)

    def stream_resource(self, doc):
        entry = self._runs.get(doc.get("run_start"))
        if entry is not None:
            entry[0].add("stream_resource", doc)

    def stream_datum(self, doc):
        run_uid = self._desc_run.get(doc["descriptor"])
        if run_uid is not None:
            self._runs[run_uid][0].add("stream_datum", doc)

    def stop(self, doc):
        entry = self._runs.pop(doc["run_start"], None)
        if entry is None:
            return
        run, exp = entry
        run.add("stop", doc)
        for d in [d for d, r in self._desc_run.items() if r == run.uid]:
            del self._desc_run[d]
        with self._lock:
            n_pot = len(exp.pot_rows)
        if run.start.get("run_kind") == "tomo_scan":
            status = ScanStatus(run.uid, exp.uid, int(run.start.get("scan_index", -1)), stop_wall=time.time())
            exit_status = doc.get("exit_status", "success")
            if exit_status != "success":
                # a partial scan would put a false point into the alarm's history: recorded, not analysed
                status.state, status.finished_wall = "aborted", time.time()
                status.error = (f"run ended with exit_status {exit_status!r} ({doc.get('reason') or 'no reason'}): "
                                "a partial scan is not analysed")
                with self._lock:
                    self._statuses[run.uid] = status
                return
            with self._lock:
                self._statuses[run.uid] = status
            self._worker.submit(_ScanJob(self, exp, run, status, n_pot))
        elif self.assess_steps:
            self._worker.submit(_AssessJob(self, exp, n_pot))

    # -- worker side -----------------------------------------------------------------
    def _analyse(self, job: _ScanJob):
        exp, run, status = job.exp, job.run_data, job.status
        with self._lock:
            status.state, status.started_wall = "running", time.time()
            hist = exp.frame(n_pot=job.n_pot)
        charge = float(hist["charge_passed_abs_C"].iloc[-1]) if "charge_passed_abs_C" in hist and len(hist) else None
        result = self._analyse_fn(run, exp.state, self.options, charge)
        row = {"row_kind": "scan", "run_uid": run.uid, "scan_index": result.scan_index,
               "cell_time_s": result.cell_time_s, "current_mA_cm2": float(run.start.get("current_mA_cm2") or 0.0),
               **scalar_metrics(result.metrics)}
        if charge is not None:
            row["charge_passed_abs_C"] = charge
        with self._lock:
            exp.scan_rows.append(row)
            self.results[run.uid] = _without_volumes(result)
            status.timings_s = dict(result.timings_s)
            status.warnings = list(getattr(result, "warnings", []))
            n_scan = len(exp.scan_rows)
        assessment = self._assess(exp, job.n_pot, n_scan)
        if self.emit is not None:
            t0 = time.perf_counter()
            self._emit(lambda: self.publisher.documents(
                run.start, result, assessment=assessment, options=self.options,
                calibration_run_uid=exp.state.calibration_run_uid, charge_C=charge), run.uid)
            with self._lock:
                status.timings_s["publish"] = time.perf_counter() - t0
        with self._lock:
            status.level = None if assessment is None else assessment.level
            status.state, status.finished_wall = "ok", time.time()

    def _publish_failed(self, job: _ScanJob):
        if self.emit is None:
            return
        self._emit(lambda: self.publisher.failed_run(job.run_data.start, job.status.error, options=self.options,
                                                     calibration_run_uid=job.exp.state.calibration_run_uid),
                   job.run_data.uid)

    def _emit(self, compose, raw_uid: str) -> None:
        """Compose an analysis run and hand its documents to ``emit``; a failure is recorded, never raised."""
        import traceback

        try:
            docs = compose()
        except Exception as exc:  # noqa: BLE001 - publishing never stops the analysis
            self._record_error(f"composing the analysis run of {raw_uid}", exc, traceback.format_exc())
            return
        try:
            for name, doc in docs:
                self.emit(name, doc)
        except Exception as exc:  # noqa: BLE001
            self._record_error(f"emit of the analysis run of {raw_uid}", exc, traceback.format_exc())
            return
        with self._lock:
            self.analysis_runs[raw_uid] = docs[0][1]["uid"]

    def _assess(self, exp: _Experiment, n_pot: int, n_scan: int | None):
        from sscell_live.alarm import assess

        with self._lock:
            hist = exp.frame(n_pot=n_pot, n_scan=n_scan)
        if not len(hist):
            return None
        a = assess(hist, cell={k: v for k, v in exp.cell.items() if v is not None})
        with self._lock:
            exp.assessment = a
        if self.alarm is not None:
            try:
                self.alarm.put(a.level)
            except Exception as exc:  # noqa: BLE001 - a failed put is recorded, analysis goes on
                import traceback

                self._record_error("alarm put", exc, traceback.format_exc())
        return a

    def _record_error(self, where, exc, tb):
        with self._lock:
            self.errors.append({"where": where, "error": f"{type(exc).__name__}: {exc}", "traceback": tb,
                                "wall": time.time()})

    # -- public ------------------------------------------------------------------------
    def _exp(self, experiment_uid):
        if experiment_uid is None:
            return self._latest
        return self._experiments.get(experiment_uid)

    def history_of(self, experiment_uid: str | None = None) -> pd.DataFrame:
        """History of an experiment (default the latest): potentiostat rows and scan rows, by cell time.

        Columns: ``row_kind`` (``potentiostat`` or ``scan``), ``run_uid``,
        ``cell_time_s``, potentiostat readings (``voltage_V``,
        ``current_mA_cm2``, ``charge_passed_C``, ``charge_passed_abs_C``,
        ``polarization_V``, ``bulk_resistance_ohm``), and per scan
        ``scan_index`` and the scalar registry metrics (NaN elsewhere).
        """
        with self._lock:
            exp = self._exp(experiment_uid)
            if exp is None:
                return _Experiment("", {}).frame()
            return exp.frame()

    @property
    def history(self) -> pd.DataFrame:
        """History of the latest experiment (see :meth:`history_of`)."""
        return self.history_of()

    @property
    def scans(self) -> pd.DataFrame:
        """The scan rows of the latest experiment's history, by scan index."""
        h = self.history
        if "row_kind" not in h:
            return h
        s = h[h["row_kind"] == "scan"]
        return s.sort_values("scan_index").reset_index(drop=True) if len(s) else s

    @property
    def statuses(self) -> list[ScanStatus]:
        """Analysis status of every scan handed over, in stop order (copies)."""
        with self._lock:
            return [replace(s, timings_s=dict(s.timings_s)) for s in self._statuses.values()]

    @property
    def latest_assessment(self):
        """The latest experiment's last :class:`sscell_live.alarm.Assessment` (None before any)."""
        with self._lock:
            exp = self._latest
            return None if exp is None else exp.assessment

    def calibration(self, experiment_uid: str | None = None):
        """The held segmentation calibration of an experiment (None before its first scan)."""
        exp = self._exp(experiment_uid)
        return None if exp is None else exp.state.calibration

    @property
    def backlog(self) -> int:
        """Jobs waiting or running on the worker."""
        return self._worker.backlog

    @property
    def dropped(self) -> int:
        """Jobs dropped by the drop-oldest policy."""
        return self._worker.dropped

    @property
    def queue_size(self) -> int:
        """Jobs that may wait before the oldest is dropped."""
        return self._worker.maxsize

    def wait_room(self, timeout: float | None = None) -> bool:
        """Block until a submission would not drop a job; True if so, False on timeout (replay's back-pressure)."""
        return self._worker.wait_room(timeout)

    @property
    def max_backlog(self) -> int:
        """Largest backlog seen at a submission."""
        return self._worker.max_backlog

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job is done; True if idle, False on timeout.

        For tests and lockstep use (``binding.add_lockstep_waiter(monitor.wait_idle)``);
        never call it from a live RunEngine callback.
        """
        return self._worker.wait_idle(timeout)

    def close(self, timeout: float | None = 60.0, drain: bool = True) -> None:
        """Stop the worker (after the queued scans if ``drain``)."""
        self._worker.close(timeout, drain=drain)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _without_volumes(result):
    """The result without its volume arrays (kept in :attr:`Monitor.results` for every scan: memory)."""
    names = {f.name for f in fields(result)} if hasattr(result, "__dataclass_fields__") else set()
    drop = {k: None for k in ("volume", "labels") if k in names}
    return replace(result, **drop) if drop else result
