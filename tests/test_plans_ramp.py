"""current_ramp and cycle_until_failure on mini cells, checked from the documents.

The twin's cells, as used here (paused style, 1-min potentiostat samples):

- lps seed 0, ladder 1.2 -> 1.8 -> 2.4 mA/cm2, 30-min half cycles: the
  stripping voids under the top electrode drive ``|V|`` to the 10 V cut-off
  part way through the +1.8 half cycle; the protocol moves on to 2.4, which
  cuts off at once (the top electrode is still voided), and the ladder ends;
- llzo seed 0, ladder 6 -> 25 -> 50 -> 100 uA/cm2, 1-h half cycles: shorts
  in the +50 uA/cm2 half cycle (above its critical current density), so
  100 uA/cm2 never starts;
- lps seed 2 at +-0.6 mA/cm2 shorts in its fourth half cycle; lps seed 0 at
  +-0.15 mA/cm2 does not fail for hours.
"""

from __future__ import annotations

import pytest
from sscell_live.plans import (
    RAMP_PRESETS,
    Experiment,
    current_ramp,
    cycle_until_failure,
)

SCAN = {"num_angles": 8, "num_darks": 1, "num_flats": 1}


def _ordered_runs(docs, resolve_runs):
    runs = resolve_runs(docs)
    order = [d["uid"] for n, d in docs if n == "start"]
    return [runs[u] for u in order]


def _potentiostat_rows(runs):
    rows = []
    for r in runs:
        s = r["streams"].get("potentiostat")
        if s is None:
            continue
        rows += zip(*(s[f"potentiostat-{k}"].tolist() for k in ("cell_time_s", "voltage_V", "current_mA_cm2", "mode")))
    return sorted(rows)


def _expected_ladder(ladder, cycles_per_step, step_reasons):
    """Step currents the protocol should have run, given why each step ended."""
    expected, reasons = [], iter(step_reasons)
    for c in ladder:
        for k in range(2 * cycles_per_step):
            expected.append(c if k % 2 == 0 else -c)
            r = next(reasons, None)
            if r is None or r == "short":
                return expected
            if r in ("cutoff", "compliance"):
                break
    return expected


def _check_common(runs, bl, exp):
    """Every run of the experiment, all succeeded, paused-style scans at open circuit, final state open circuit."""
    assert {r["start"]["experiment_uid"] for r in runs} == {exp.uid}
    assert all(r["stop"]["exit_status"] == "success" for r in runs)
    steps = [r for r in runs if r["start"]["run_kind"] == "galvanostatic_step"]
    scans = [r for r in runs if r["start"]["run_kind"] == "tomo_scan"]
    assert all(s["start"]["current_mA_cm2"] == 0.0 for s in scans)
    for s in scans:
        n = s["start"]["angles_deg"][2]
        assert n == (12 if s["start"].get("final_scan") else SCAN["num_angles"])
        assert s["streams"]["primary"]["detector"].shape == (n, *s["start"]["detector_shape"])
    rows = _potentiostat_rows(runs)
    assert rows[-1][3] == "open_circuit" and rows[-1][2] == 0.0
    assert bl.binding.mode == "open_circuit"
    return steps, scans


@pytest.mark.parametrize("case", ["lps_cutoff", "llzo_short"])
def test_current_ramp_moves_on_at_cutoff_and_ends_at_first_short(RE, make_beamline, resolve_runs, case):
    if case == "lps_cutoff":
        bl, preset, ladder, half, cycles = make_beamline("lps", seed=0), "dixit_lps_insitu", (1.2, 1.8, 2.4), 1800.0, 1
    else:
        bl, preset, ladder, half, cycles = make_beamline("llzo", seed=0), "llzo_low_current", (0.006, 0.025, 0.05, 0.1), 3600.0, 1
    cutoff_V = RAMP_PRESETS[preset].cutoff_V
    exp = Experiment()
    result = RE(current_ramp(bl, preset, currents_mA_cm2=ladder, half_cycle_s=half, cycles_per_step=cycles,
                             scan_kw=SCAN, experiment=exp)).plan_result
    runs = _ordered_runs(RE.docs, resolve_runs)
    steps, scans = _check_common(runs, bl, exp)
    currents = [s["start"]["current_mA_cm2"] for s in steps]
    reasons = [s["stop"]["reason"] for s in steps]

    # the protocol is in every start document
    proto = runs[0]["start"]["protocol"]
    assert proto["plan"] == "current_ramp" and proto["preset"] == preset
    assert proto["currents_mA_cm2"] == list(ladder) and proto["cutoff_V"] == cutoff_V == 10.0

    # the step currents follow the ladder, moving on at each cut-off
    assert currents == _expected_ladder(ladder, cycles, reasons), (currents, reasons)
    # paused style: the pristine scan, then one scan after every step
    assert len(scans) == len(steps) + 1 and runs[0]["start"]["run_kind"] == "tomo_scan"
    assert [r["start"]["run_kind"] for r in runs[1:]] == ["galvanostatic_step", "tomo_scan"] * len(steps)
    assert result["steps"] == len(steps) and result["scans"] == len(scans)

    if case == "lps_cutoff":
        assert result["stop_reason"] == "end_of_ramp"
        cut = [i for i, r in enumerate(reasons) if r in ("cutoff", "compliance")]
        assert cut and cut[0] < len(steps) - 1 and reasons[cut[0]] == "cutoff"  # the ladder went on after it
        assert abs(currents[cut[0] + 1]) > abs(currents[cut[0]])
        assert result["cutoff_steps"] == [abs(currents[i]) for i in cut]
        # the cut-off shows in the cut step's voltage record: |V| reaches 10 V, then open circuit
        first = steps[cut[0]]["streams"]["potentiostat"]
        modes = list(first["potentiostat-mode"])
        k = modes.index("open_circuit")
        assert k > 1 and abs(first["potentiostat-voltage_V"][k - 1]) >= cutoff_V
        assert all(m == "galvanostatic" for m in modes[:k])
        assert steps[cut[0]]["start"]["duration_s"] == half
        assert "short" not in reasons
    else:
        assert result["stop_reason"] == "short"
        assert reasons[-1] == "short" and reasons[:-1] == ["duration"] * (len(steps) - 1)
        assert currents == [0.006, -0.006, 0.025, -0.025, 0.05]
        assert result["last_current_mA_cm2"] == 0.05
        assert all(abs(c) < 0.1 for c in currents)  # the ladder ended at the first short
        # the short shows as a voltage collapse in the last step's record
        v = steps[-1]["streams"]["potentiostat"]["potentiostat-voltage_V"]
        assert abs(v[-2]) < 0.1 * abs(steps[-2]["streams"]["potentiostat"]["potentiostat-voltage_V"][-2])


def _set_alarm_after_scan(RE, bl, scan_index):
    """The monitor's decision: after analysing scan ``scan_index`` it writes ``imminent`` into the alarm."""
    starts = {}

    def monitor(name, doc):
        if name == "start":
            starts[doc["uid"]] = doc
        elif name == "stop":
            s = starts[doc["run_start"]]
            if s["run_kind"] == "tomo_scan" and s["scan_index"] == scan_index:
                bl.alarm.put("imminent")

    RE.subscribe(monitor)


def _set_alarm_at_cell_time(bl, t_s):
    """The monitor writes ``imminent`` when it sees the first potentiostat sample at or after ``t_s``."""
    fired = []

    def listener(sample):
        if not fired and sample.cell_time_s >= t_s:
            fired.append(sample.cell_time_s)
            bl.alarm.put("imminent")

    bl.binding.subscribe(listener)
    return fired


@pytest.mark.parametrize("when", ["after_scan", "mid_step"])
def test_cycle_until_failure_stops_on_alarm_with_one_final_scan(RE, make_beamline, resolve_runs, when):
    bl = make_beamline("lps", seed=0)
    exp = Experiment()
    if when == "after_scan":
        _set_alarm_after_scan(RE, bl, scan_index=2)  # after the second half cycle's scan
    else:
        fired = _set_alarm_at_cell_time(bl, 2700.0)  # half way through the second half cycle
    result = RE(cycle_until_failure(bl, 0.15, 1800.0, max_half_cycles=20, scan_kw=SCAN,
                                    final_scan_kw={**SCAN, "num_angles": 12}, experiment=exp)).plan_result
    assert result["stop_reason"] == "alarm:imminent"
    assert bl.alarm.get() == "imminent"
    runs = _ordered_runs(RE.docs, resolve_runs)
    steps, scans = _check_common(runs, bl, exp)
    # two half cycles ran (their steps and scans), then exactly one final scan, the last run
    assert result["half_cycles"] == 2 and [s["start"]["current_mA_cm2"] for s in steps] == [0.15, -0.15]
    assert all(r["stop"]["reason"] == "duration" for r in steps)
    finals = [r for r in runs if r["start"].get("final_scan")]
    assert len(finals) == 1 and finals[0] is runs[-1]
    final = finals[0]
    assert final["start"]["run_kind"] == "tomo_scan" and final["start"]["current_mA_cm2"] == 0.0
    assert final["streams"]["primary"]["detector"].shape[0] == 12
    assert [r["start"]["run_kind"] for r in runs] == ["tomo_scan"] + ["galvanostatic_step", "tomo_scan"] * 2 + [
        "tomo_scan"]
    assert final["start"]["protocol"]["stop_levels"] == ["imminent", "failed"]
    # no current flowed after the alarm
    t_alarm = fired[0] if when == "mid_step" else scans[2]["streams"]["primary"]["detector-cell_time_s"].max()
    after = [row for row in _potentiostat_rows(runs) if row[0] > t_alarm + 1e-6]
    if when == "after_scan":
        assert after and all(m == "open_circuit" for _, _, _, m in after)
    else:  # the step in progress completes (the plan reads the alarm between runs), nothing new starts
        assert steps[-1]["streams"]["potentiostat"]["potentiostat-cell_time_s"][0] < t_alarm
        assert all(m == "open_circuit" for t, _, _, m in after if t > steps[-1]["streams"]["potentiostat"][
            "potentiostat-cell_time_s"].max())
    assert final["streams"]["primary"]["detector-cell_time_s"].min() > t_alarm


def test_cycle_until_failure_with_alarm_ok_stops_at_short(RE, make_beamline, resolve_runs):
    bl = make_beamline("lps", seed=2)
    exp = Experiment()
    result = RE(cycle_until_failure(bl, 0.6, 1800.0, max_half_cycles=20, scan_kw=SCAN, experiment=exp)).plan_result
    assert result["stop_reason"] == "short" and bl.alarm.get() == "ok"
    runs = _ordered_runs(RE.docs, resolve_runs)
    steps, scans = _check_common(runs, bl, exp)
    assert [r["stop"]["reason"] for r in steps][-1] == "short"
    assert all(r["stop"]["reason"] == "duration" for r in steps[:-1])
    assert [s["start"]["current_mA_cm2"] for s in steps] == [0.6 * (-1) ** k for k in range(len(steps))]
    assert not any(r["start"].get("final_scan") for r in runs)
    assert runs[-1]["start"]["run_kind"] == "tomo_scan" and len(scans) == len(steps) + 1


def test_flowing_half_cycle_stops_between_its_scans_on_alarm(RE, make_beamline, resolve_runs):
    """Flowing style (scans while current flows): the alarm is read after every scan, not only at the
    end of a half cycle, so a 2-hour half cycle with a scan every 30 min stops after its first scan."""
    bl = make_beamline("lps", seed=0)
    exp = Experiment()
    _set_alarm_after_scan(RE, bl, scan_index=1)  # the first scan inside the first half cycle
    result = RE(cycle_until_failure(bl, 0.15, 7200.0, style="flowing", scan_interval_s=1800.0, max_half_cycles=4,
                                    scan_kw=SCAN, final_scan_kw={**SCAN, "num_angles": 12},
                                    experiment=exp)).plan_result
    assert result["stop_reason"] == "alarm:imminent"
    runs = _ordered_runs(RE.docs, resolve_runs)
    kinds = [r["start"]["run_kind"] for r in runs]
    # initial scan, one 30-min step, its scan (alarm), then only the final scan: the other 90 min never ran
    assert kinds == ["tomo_scan", "galvanostatic_step", "tomo_scan", "tomo_scan"]
    assert runs[-1]["start"].get("final_scan") and runs[-1]["streams"]["primary"]["detector"].shape[0] == 12
    assert runs[-1]["start"]["current_mA_cm2"] == 0.0
    step_t = runs[1]["streams"]["potentiostat"]["potentiostat-cell_time_s"]
    assert step_t.max() - step_t.min() <= 1800.0 + 1e-6
