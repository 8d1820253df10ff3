"""Closing the loop: cycle_until_failure stopped by the monitor's alarm (lps mini, seed 1, lockstep).

In lockstep mode the plan waits at each run boundary for ``monitor.wait_idle``
(the deterministic mode of DESIGN.md; the live default never waits), so every
scan is assessed before the plan reads the alarm. Seed 1 at 0.15 mA/cm2 shorts
after about 18 half cycles (test_plans_cycling); measured here: the alarm
reaches ``imminent`` at scan 12 (bulk resistance fallen ~70 %, a crack across
the SE) and the plan stops after 12 half cycles with a final scan, before
the short.
"""

from __future__ import annotations

import itertools

from sscell_live.plans import Experiment, cycle_until_failure

from sscell_live.monitor import Monitor

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}


def test_alarm_stops_cycle_until_failure_before_the_short(RE, make_beamline):
    bl = make_beamline(seed=1, lockstep=True)
    monitor = Monitor(alarm=bl.alarm)
    bl.binding.add_lockstep_waiter(lambda: monitor.wait_idle(120))
    RE.subscribe(monitor)
    result = RE(cycle_until_failure(bl, 0.15, 1800.0, scan_kw=SCAN, experiment=Experiment())).plan_result
    assert result["stop_reason"] == "alarm:imminent"
    assert result["half_cycles"] < 18
    assert not bl.twin.truth()["shorted"]  # truth, test-only: stopped before the cell failed
    starts = [d for n, d in RE.docs if n == "start" and d["run_kind"] == "tomo_scan"]
    assert starts[-1].get("final_scan") is True
    assert monitor.wait_idle(60)
    st = monitor.statuses
    assert len(st) == result["scans"] and all(s.state == "ok" for s in st)
    # lockstep: each scan was analysed before the next scan's run ended
    assert all(a.finished_wall <= b.stop_wall for a, b in itertools.pairwise(st))
    levels = [s.level for s in st]
    assert levels[0] == "ok" and "imminent" in levels
    first = levels.index("imminent")
    assert set(levels[first:]) <= {"imminent", "failed"}
    assert monitor.latest_assessment.level == bl.alarm.get() == "imminent"
    monitor.close()
