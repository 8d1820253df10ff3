"""The failure alarm: real voltage data, synthetic signals with known answers, twin histories."""

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sscell_live.alarm import AlarmThresholds, Level, assess
from sscell_live.twin.history import PROTOCOLS, simulate_history

LILI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lili_ecLab"


def _voltage_history(t, v, j):
    return {"cell_time_s": t, "voltage_V": v, "current_mA_cm2": np.broadcast_to(j, np.shape(t))}


@pytest.mark.skipif(not LILI.is_dir(), reason="../shared/data/lili_ecLab is absent")
def test_real_45_hour_lili_record_never_goes_past_watch():
    # a real Li|Li cell (liquid electrolyte) plated for 45 h at 0.4 mA without failing:
    # spikes to 0.66 V and dips to 4 mV, polarization drifting 0.05-0.13 V
    path = glob.glob(str(LILI / "*_03_GCPL_C05.txt"))[0]
    data = np.loadtxt(path, skiprows=1)
    t, v = data[:, 0], data[:, 1]
    hist = pd.DataFrame(_voltage_history(t, v, 0.4))
    worst = Level.OK
    for end_h in np.arange(0.5, 45.5, 0.5):  # the monitor assesses after every scan
        a = assess(hist[hist.cell_time_s <= t[0] + end_h * 3600])
        worst = max(worst, Level[a.level.upper()])
    assert worst <= Level.WATCH
    # and the raw record does contain what a naive rule would trip on
    assert v.max() > 0.5 and v.min() < 0.01


def test_voltage_only_history_is_valid_and_steady_cell_is_ok():
    t = np.arange(0, 6 * 3600, 60.0)
    rng = np.random.default_rng(0)
    a = assess(_voltage_history(t, 0.05 + rng.normal(0, 0.002, t.size), 0.5))
    assert a.level == "ok" and a.time_to_failure_s is None


def test_a_single_spike_is_smoothed_away_but_a_sustained_collapse_is_a_short():
    t = np.arange(0, 4 * 3600, 30.0)
    v = np.full(t.size, 0.2)
    v[200] = 0.001  # one glitch
    assert assess(_voltage_history(t, v, 0.15)).level == "ok"
    v[300:] = 0.003  # the last 50 min at 3 mV under current
    a = assess(_voltage_history(t, v, 0.15))
    assert a.level == "failed" and "short" in a.reasons[0]
    # at open circuit a near-zero voltage is no short
    j = np.full(t.size, 0.15)
    j[300:] = 0.0
    assert assess({"cell_time_s": t, "voltage_V": v, "current_mA_cm2": j}).level == "ok"


def test_cutoff_is_failed_and_growing_polarization_escalates():
    t = np.arange(0, 8 * 3600, 60.0)
    v = 0.2 * np.exp(t / (8 * 3600) * np.log(4.0))  # x4 over 8 h
    a = assess(_voltage_history(t, v, 1.0), {"cutoff_V": 5.0})
    assert a.level == "imminent" and "polarization" in a.reasons[0]
    halfway = t <= 4 * 3600  # x2 by then: watch, with a projected time to the cut-off
    b = assess(_voltage_history(t[halfway], v[halfway], 1.0), {"cutoff_V": 5.0, "area_cm2": 0.03})
    assert b.level == "watch"
    expected = np.log(5.0 / v[halfway][-1]) / (np.log(4.0) / (8 * 3600))  # exponential growth to 5 V
    assert b.time_to_failure_s == pytest.approx(expected, rel=0.1)
    assert b.charge_to_failure_C == pytest.approx(1e-3 * 0.03 * b.time_to_failure_s)
    v2 = v.copy()
    v2[-3:] = 5.0
    assert assess(_voltage_history(t, v2, 1.0), {"cutoff_V": 5.0}).level == "failed"


def _contact_history(losses, side="bottom", j=-1.0, first=0.25, dt=900.0):
    rows = [{"cell_time_s": 0.0, "current_mA_cm2": j, f"contact_fraction_{side}": first}]
    for k, loss in enumerate(losses, start=1):
        rows.append({"cell_time_s": k * dt, "current_mA_cm2": j, f"contact_fraction_{side}": first * (1 - loss)})
    return pd.DataFrame(rows)


def test_contact_loss_of_the_stripping_interface():
    # negative current strips the bottom interface
    assert assess(_contact_history([0.02, 0.05, 0.04])).level == "ok"
    assert assess(_contact_history([0.05, 0.16, 0.18])).level == "watch"
    a = assess(_contact_history([0.1, 0.2, 0.27, 0.3]))
    assert a.level == "imminent" and "bottom interface lost 30%" in a.reasons[0]
    # the same loss at the interface being plated (reduced) is only a watch (Lewis-LSPS)
    assert assess(_contact_history([0.1, 0.2, 0.27, 0.3], j=+1.0)).level == "watch"


def test_contact_trend_gives_time_to_failure_with_uncertainty():
    losses = [0.04, 0.08, 0.12, 0.16, 0.20]  # 4 points per hour: 16 % per hour
    a = assess(_contact_history(losses))
    assert a.level == "watch"
    # 0.20 -> 0.50 (the failure loss) at 0.16 per hour: 1.875 h
    assert a.time_to_failure_s == pytest.approx(1.875 * 3600, rel=0.01)
    assert a.time_to_failure_uncertainty_s == pytest.approx(0.0, abs=1.0)  # exactly linear
    faster = assess(_contact_history([0.05, 0.12, 0.19, 0.24]))  # 0.26 to go at 0.27 per h: < 1 h
    assert faster.level == "imminent" and any("projects failure" in r for r in faster.reasons)


def test_hysteresis_keeps_a_noisy_signal_from_flickering():
    th = AlarmThresholds()
    # enters watch (two scans at >= 15 %), then noise dips below 15 % but not below 0.8 x 15 %
    series = [0.10, 0.16, 0.17, 0.14, 0.165, 0.13, 0.16, 0.125]
    levels = [assess(_contact_history(series[: k + 1])).level for k in range(len(series))]
    assert levels[:2] == ["ok", "ok"] and set(levels[2:]) == {"watch"}
    assert min(series[2:]) > th.hysteresis * th.contact_loss_watch
    # a real recovery (below the hysteresis band) drops it back
    assert assess(_contact_history(series + [0.05])).level == "ok"
    # noise around the threshold without two consecutive crossings never enters
    around = [0.13, 0.16, 0.14, 0.17, 0.135, 0.165, 0.14]
    assert {assess(_contact_history(around[: k + 1])).level for k in range(len(around))} == {"ok"}


def test_critical_current_density_channel():
    hist = _contact_history([0.0, 0.0], first=0.25, j=-1.0)  # j_eff = 4 mA/cm2
    assert assess(hist).level == "ok"
    assert assess(hist, {"critical_current_density_mA_cm2": 7.0}).level == "watch"  # 57 % of the CCD
    assert assess(hist, {"critical_current_density_mA_cm2": 4.5}).level == "imminent"  # 89 %


def test_li_penetration_channel_and_connected_path():
    t = np.arange(6) * 1800.0
    pen = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    a = assess({"cell_time_s": t, "li_penetration_fraction": pen})
    assert a.level == "watch"  # half way
    # 0.1 per 30 min from 0.5 -> reaches 1.0 in 2.5 h
    assert a.time_to_failure_s == pytest.approx(2.5 * 3600, rel=1e-6)
    b = assess({"cell_time_s": t, "li_penetration_fraction": pen, "li_path_connects": [0, 0, 0, 0, 0, 1]})
    assert b.level == "imminent"


def test_bad_history_gives_clear_errors():
    with pytest.raises(ValueError, match="cell_time_s"):
        assess({"voltage_V": [0.1, 0.2]})
    with pytest.raises(ValueError, match="equal lengths"):
        assess({"cell_time_s": [0, 1, 2], "voltage_V": [0.1]})
    with pytest.raises(ValueError, match="DataFrame or a mapping"):
        assess([1, 2, 3])
    with pytest.raises(ValueError, match="cutoff_V"):
        assess({"cell_time_s": [0.0], "voltage_V": [0.1]}, {"cutoff_V": -1})
    assert assess({"cell_time_s": []}).level == "ok"


@pytest.mark.parametrize("chem, j, seed", [("lsps", 1.0, 1), ("llzo", 0.035, 0)])
def test_twin_failure_is_announced_at_least_one_scan_ahead(chem, j, seed):
    eh = simulate_history(chem, seed, j, 30 * 3600)
    assert eh.failed
    first = None
    for ts in eh.scan_times_s:
        if ts >= eh.failure_time_s:
            break
        if assess(eh.history[eh.history.cell_time_s <= ts], eh.cell).level in ("imminent", "failed"):
            first = ts
            break
    assert first is not None, "no warning before the failure"
    assert eh.failure_time_s - first >= PROTOCOLS[chem].scan_every_s
    # after the failure the alarm says so
    assert assess(eh.history, eh.cell).level == "failed"


@pytest.mark.parametrize("chem, j", [("lsps", 0.1), ("llzo", 0.006)])
def test_low_current_twin_control_never_passes_watch(chem, j):
    eh = simulate_history(chem, 0, j, 20 * 3600)
    assert not eh.failed
    worst = max(Level[assess(eh.history[eh.history.cell_time_s <= ts], eh.cell).level.upper()] for ts in eh.scan_times_s)
    assert worst <= Level.WATCH
