"""The monitor's queue policy and robustness, with fake (fast, gated or failing) analyses.

- drop-oldest when behind: counted, the dropped scans' statuses are ``skipped``,
  the newest scan is analysed, the plan never waits;
- an analysis that raises on one scan gives that scan an ``error`` status
  with its traceback; the next scan is analysed normally;
- malformed documents are recorded, never raised into the caller;
- analysis runs go to ``emit`` (one per scan, a failed analysis included);
  an ``emit`` that raises is recorded and the next scan goes on.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sscell_live.plans import Experiment, operando_cycling

from sscell_live.monitor import AnalysisWorker, Job, Monitor, ScanResult, load_scan

SCAN = {"num_angles": 12, "num_darks": 1, "num_flats": 1}


def fake_result(run, contact=0.9):
    """A ScanResult without reconstruction (frames still read from the files)."""
    scan = load_scan(run)
    metrics = {"contact_fraction_top": contact, "contact_fraction_bottom": contact, "crack_spans_pellet": False,
               "void_sizes_top_um3": [1.0], "notes": []}
    return ScanResult(run.uid, run.start["scan_index"], float(np.nanmean(scan["cell_time_s"])), metrics, 1.5,
                      (0, scan["projections"].shape[1]))


def test_drop_oldest_when_behind(RE, make_beamline):
    bl = make_beamline(seed=1)
    gate = threading.Event()

    def slow(run, state, options, charge_C):
        gate.wait(60)
        return fake_result(run)

    monitor = Monitor(alarm=bl.alarm, queue_size=1, analyse=slow, assess_steps=False)
    RE.subscribe(monitor)
    t0 = time.perf_counter()
    RE(operando_cycling(bl, 0.15, 1800.0, max_half_cycles=4, scan_kw=SCAN, experiment=Experiment()))
    plan_s = time.perf_counter() - t0
    assert not gate.is_set()  # the plan finished with the worker stuck on its first scan
    gate.set()
    assert monitor.wait_idle(60)
    states = [s.state for s in monitor.statuses]
    assert len(states) == 5
    # one scan in analysis, one waiting: the three in between were dropped, oldest first
    assert states == ["ok", "skipped", "skipped", "skipped", "ok"], states
    assert monitor.dropped == 3
    assert all("drop-oldest" in s.error for s in monitor.statuses if s.state == "skipped")
    assert list(monitor.scans["scan_index"]) == [0, 4]
    assert plan_s < 60
    monitor.close()


def _flaky_analysis(run, state, options, charge_C):
    """An analysis that fails on scan 1 (injected) and returns a fake result otherwise."""
    if run.start["scan_index"] == 1:
        raise RuntimeError("injected reconstruction failure")
    return fake_result(run, contact=0.9 - 0.01 * run.start["scan_index"])


def test_failing_analysis_is_recorded_and_the_next_scan_is_analysed(RE, make_beamline):
    bl = make_beamline(seed=1)

    monitor = Monitor(alarm=bl.alarm, analyse=_flaky_analysis)
    RE.subscribe(monitor)
    RE(operando_cycling(bl, 0.15, 1800.0, max_half_cycles=2, scan_kw=SCAN, experiment=Experiment()))
    assert monitor.wait_idle(60)
    st = monitor.statuses
    assert [s.state for s in st] == ["ok", "error", "ok"]
    assert st[1].error == "RuntimeError: injected reconstruction failure"
    assert "flaky" in st[1].traceback and st[1].level is None
    assert st[2].level in {"ok", "watch", "imminent", "failed"}
    scans = monitor.scans
    assert list(scans["scan_index"]) == [0, 2]
    assert scans["contact_fraction_top"].tolist() == pytest.approx([0.9, 0.88])
    # list and None metrics stay out of the history; bools become floats
    assert "void_sizes_top_um3" not in scans and scans["crack_spans_pellet"].tolist() == [0.0, 0.0]
    assert bl.alarm.get() == monitor.latest_assessment.level
    assert monitor.errors == []
    monitor.close()


def test_malformed_documents_are_recorded_not_raised():
    monitor = Monitor()
    monitor("stop", {})  # no run_start
    monitor("event", {"descriptor": "nobody", "data": {}})  # unknown descriptor: ignored
    monitor("start", {"uid": "u1", "experiment_uid": "e1", "run_kind": "tomo_scan", "scan_index": 0})
    monitor("descriptor", {"uid": "d1", "run_start": "u1", "name": "primary"})
    monitor("stream_datum", {"descriptor": "d1", "stream_resource": "missing"})
    monitor("stop", {"run_start": "u1", "uid": "s1"})  # a scan without frames: an analysis error
    assert monitor.wait_idle(30)
    assert len(monitor.errors) == 2 and all("Traceback" in e["traceback"] for e in monitor.errors)
    (status,) = monitor.statuses
    assert status.state == "error" and "no 'detector' frames" in status.error
    monitor.close()


class _Blocking(Job):
    def __init__(self, gate, log, name):
        self.gate, self.log, self.name = gate, log, name

    def run(self):
        self.gate.wait(10)
        self.log.append(("ran", self.name))

    def on_drop(self):
        self.log.append(("dropped", self.name))


def test_worker_never_blocks_the_producer():
    gate, log = threading.Event(), []
    w = AnalysisWorker(maxsize=2)
    t0 = time.perf_counter()
    for k in range(6):
        assert w.submit(_Blocking(gate, log, k))
        time.sleep(0.02)  # let the worker take job 0
    assert time.perf_counter() - t0 < 1.0
    assert w.backlog == 3 and not w.wait_idle(0.05)
    gate.set()
    assert w.wait_idle(10)
    assert sorted(n for kind, n in log if kind == "dropped") == [1, 2, 3]
    assert [n for kind, n in log if kind == "ran"] == [0, 4, 5]
    assert w.dropped == 3 and w.done == 3
    w.close()
    assert not w.submit(_Blocking(gate, log, 9))


def test_emit_publishes_analysis_runs_and_its_errors_are_recorded(RE, make_beamline):
    """One analysis run per scan (a failed analysis too); an emit that raises loses that run, nothing else."""
    bl = make_beamline(seed=1)

    emitted, broken = [], {"armed": True}

    def emit(name, doc):
        if name == "descriptor" and broken["armed"] and emitted[-1][1].get("scan_index") == 2:
            broken["armed"] = False
            raise ConnectionError("injected Tiled outage")
        emitted.append((name, doc))

    monitor = Monitor(alarm=bl.alarm, analyse=_flaky_analysis, emit=emit)
    RE.subscribe(monitor)
    RE(operando_cycling(bl, 0.15, 1800.0, max_half_cycles=3, scan_kw=SCAN, experiment=Experiment()))
    assert monitor.wait_idle(60)
    st = monitor.statuses
    assert [s.state for s in st] == ["ok", "error", "ok", "ok"]  # the emit failure did not touch the analysis
    (err,) = monitor.errors
    assert err["where"] == f"emit of the analysis run of {st[2].run_uid}" and "injected Tiled outage" in err["error"]
    starts = [d for n, d in emitted if n == "start"]
    assert [d["raw_run_uid"] for d in starts] == [s.run_uid for s in st]  # scan 2's start went out before the outage
    assert [d["analysis_state"] for d in starts] == ["ok", "error", "ok", "ok"]
    assert set(monitor.analysis_runs) == {st[0].run_uid, st[1].run_uid, st[3].run_uid}
    stops = {d["run_start"]: d for n, d in emitted if n == "stop"}
    failed = stops[monitor.analysis_runs[st[1].run_uid]]
    assert failed["exit_status"] == "fail" and "injected reconstruction failure" in failed["reason"]
    # the published scalars are the history's, the alarm the scan's
    last = [d for n, d in emitted if n == "event" and "scan_index" in d["data"]][-1]["data"]
    assert last["contact_fraction_top"] == pytest.approx(0.87) and last["scan_index"] == 3
    assert last["alarm_level"] == st[3].level
    monitor.close()


def test_wait_room_is_the_back_pressure_replay_uses():
    gate, log = threading.Event(), []
    w = AnalysisWorker(maxsize=1)
    assert w.wait_room(0.01)  # empty
    w.submit(_Blocking(gate, log, 0))
    time.sleep(0.05)  # the worker takes job 0: the queue is empty again
    assert w.wait_room(0.01)
    w.submit(_Blocking(gate, log, 1))  # waits: a third submission would drop it
    assert not w.wait_room(0.05)
    gate.set()
    assert w.wait_room(10) and w.wait_idle(10)
    assert w.dropped == 0 and [n for _, n in log] == [0, 1]
    w.close()
