"""The live monitor on a real RunEngine: operando_cycling (lps mini, seed 1, 24-angle scans) analysed live.

One module-scoped experiment: 4 paused half cycles, 5 scans. The third
scan's frame files are deleted at its stop document (by a callback
subscribed before the monitor, so the worker never sees them); every other
scan must be analysed normally. Twin truth is used here only, recorded at
each scan's start (the current is off during paused-style scans).

The analysis (the real one) is gated: the worker waits until the plan has
returned, which proves the RunEngine never waits on it (if it did, the plan
would never finish; the gate's 120 s timeout would show).
"""

from __future__ import annotations

import math
import os
import threading
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from sscell_live.plans import Experiment, operando_cycling

from sscell_live.monitor import Monitor, analyse_scan

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}
CORRUPT_SCAN = 2
LEVELS = {"ok", "watch", "imminent", "failed"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline

    RE = RunEngine({}, call_returns_result=True)
    bl = SimBeamline.create("lps", "mini", 1, n_lateral=96, time_scale=math.inf,
                            write_directory=tmp_path_factory.mktemp("frames_monitor"))
    truth, files, deleted = {}, {}, []

    def test_side(name, doc):  # truth and corruption: test-only, subscribed before the monitor
        if name == "start" and doc["run_kind"] == "tomo_scan":
            t = bl.twin.truth()
            truth[doc["scan_index"]] = {s: t[f"contact_fraction_{s}"] for s in ("top", "bottom")}
            files[doc["uid"]] = (doc["scan_index"], [])
        elif name == "stream_resource" and doc["run_start"] in files:
            files[doc["run_start"]][1].append(urlparse(doc["uri"]).path)
        elif name == "stop" and doc["run_start"] in files:
            index, paths = files[doc["run_start"]]
            if index == CORRUPT_SCAN:
                for p in set(paths):
                    os.remove(p)
                    deleted.append(p)

    bl.alarm.put("unset")  # so that an update is visible
    puts = []
    bl.alarm.subscribe(lambda value, **kw: puts.append(value), run=False)
    gate, gate_timed_out = threading.Event(), []

    def gated_analysis(run, state, options, charge_C):
        if not gate.wait(120):
            gate_timed_out.append(run.uid)
        return analyse_scan(run, state, options, charge_C)

    monitor = Monitor(alarm=bl.alarm, queue_size=16, analyse=gated_analysis)
    RE.subscribe(test_side)
    RE.subscribe(monitor)
    t0 = time.time()
    result = RE(operando_cycling(bl, 0.15, 1800.0, max_half_cycles=4, scan_kw=SCAN,
                                 experiment=Experiment())).plan_result
    t_plan_end = time.time()
    backlog_at_end = monitor.backlog
    statuses_at_end = [st.state for st in monitor.statuses]
    gate.set()
    assert monitor.wait_idle(180), "analysis did not finish"
    t_idle = time.time()
    yield {"bl": bl, "monitor": monitor, "result": result, "truth": truth, "deleted": deleted, "puts": puts,
           "t0": t0, "t_plan_end": t_plan_end, "backlog_at_end": backlog_at_end, "t_idle": t_idle,
           "statuses_at_end": statuses_at_end, "gate_timed_out": gate_timed_out}
    monitor.close()


def test_every_scan_has_a_status_and_a_metrics_row(live):
    m, result = live["monitor"], live["result"]
    assert result["scans"] == 5 and result["stop_reason"] == "max_half_cycles"
    st = m.statuses
    assert [s.scan_index for s in st] == list(range(5))
    assert [s.state for s in st] == ["ok" if i != CORRUPT_SCAN else "error" for i in range(5)]
    scans = m.scans
    assert list(scans["scan_index"]) == [i for i in range(5) if i != CORRUPT_SCAN]
    for col in ("contact_fraction_top", "contact_fraction_bottom", "se_thickness_um", "void_volume_top_um3"):
        assert np.isfinite(scans[col]).all(), col
    # scan rows sit in the history among the potentiostat samples, by cell time
    h = m.history
    assert set(h["row_kind"]) == {"potentiostat", "scan"}
    assert (np.diff(h["cell_time_s"].to_numpy()) >= 0).all()
    assert (h.loc[h.row_kind == "potentiostat", "charge_passed_abs_C"].diff().dropna() >= -1e-15).all()
    assert m.errors == []


def test_contact_fractions_match_the_twin(live):
    scans, truth = live["monitor"].scans, live["truth"]
    for _, row in scans.iterrows():
        for side in ("top", "bottom"):
            measured, true = row[f"contact_fraction_{side}"], truth[int(row["scan_index"])][side]
            assert abs(measured - true) < 0.1, (int(row["scan_index"]), side, measured, true)


def test_alarm_signal_updated(live):
    m, bl, puts = live["monitor"], live["bl"], live["puts"]
    a = m.latest_assessment
    assert a is not None and a.level in LEVELS
    assert bl.alarm.get() == a.level
    # one put per analysed scan and per galvanostatic step re-assessment
    assert len(puts) >= 4 + 4 and set(puts) <= LEVELS
    assert all(s.level in LEVELS for s in m.statuses if s.state == "ok")


def test_corrupted_scan_is_an_error_and_the_next_is_analysed(live):
    m = live["monitor"]
    assert live["deleted"], "the test did not delete any frame file"
    bad = next(s for s in m.statuses if s.scan_index == CORRUPT_SCAN)
    assert bad.state == "error"
    assert "Traceback" in bad.traceback and ("FileNotFoundError" in bad.error or "OSError" in bad.error
                                             or "Unable" in bad.error), bad.error
    after = next(s for s in m.statuses if s.scan_index == CORRUPT_SCAN + 1)
    assert after.state == "ok" and after.finished_wall > bad.finished_wall


def test_runengine_never_waited_on_analysis(live):
    m = live["monitor"]
    # the whole plan ran while the gated worker had not finished a single scan:
    # 5 scans, 4 re-assessments at the steps' first readings (a new current) and 4 at their stops
    # were waiting when it returned
    assert not live["gate_timed_out"]
    assert live["statuses_at_end"] == ["running"] + ["queued"] * 4
    assert live["backlog_at_end"] == 5 + 4 + 4
    assert min(s.started_wall for s in m.statuses) < live["t_plan_end"] < min(s.finished_wall for s in m.statuses)
    # no document spent more than 50 ms in the callback on the RunEngine thread
    assert m.max_dispatch_s < 0.05, m.max_dispatch_s
    assert m.dropped == 0 and m.max_backlog == 5 + 4 + 4
