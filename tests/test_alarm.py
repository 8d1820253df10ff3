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
    slow = assess(_voltage_history(t, v, 1.0), {"cutoff_V": 5.0})
    assert slow.level == "watch"  # slow growth (an interphase) is no runaway: 10.6 h to the cut-off
    assert slow.time_to_failure_s == pytest.approx(np.log(5.0 / v[-1]) / (np.log(4.0) / (8 * 3600)), rel=0.1)
    v6 = 0.2 * np.exp(t / (8 * 3600) * np.log(6.0))  # x6 over 8 h: past the 5x level
    a = assess(_voltage_history(t, v6, 1.0), {"cutoff_V": 5.0})
    assert a.level == "imminent" and "polarization" in a.reasons[0]
    # a runaway: flat for 6 h, then doubling every 15 min; 30 min into it (x4, 0.8 V) the
    # exponential trend projects the 5 V cut-off within the hour
    run = 0.2 * np.where(t < 6 * 3600, 1.0, 2.0 ** ((t - 6 * 3600) / 900.0))
    m = t <= 6.5 * 3600
    b = assess(_voltage_history(t[m], run[m], 1.0), {"cutoff_V": 5.0})
    assert b.level == "imminent" and any("voltage trend projects failure" in r for r in b.reasons)
    assert b.time_to_failure_s < 3600
    halfway = t <= 4 * 3600  # x2 by then: watch, with a projected time to the cut-off
    b = assess(_voltage_history(t[halfway], v[halfway], 1.0), {"cutoff_V": 5.0, "area_cm2": 0.03})
    assert b.level == "watch"
    expected = np.log(5.0 / v[halfway][-1]) / (np.log(4.0) / (8 * 3600))  # exponential growth to 5 V
    assert b.time_to_failure_s == pytest.approx(expected, rel=0.1)
    assert b.charge_to_failure_C == pytest.approx(1e-3 * 0.03 * b.time_to_failure_s)
    v2 = v.copy()
    v2[-3:] = 5.0
    assert assess(_voltage_history(t, v2, 1.0), {"cutoff_V": 5.0}).level == "failed"


def _contact_history(losses, side="bottom", j=-1.0, first=0.25, dt=900.0, other=None):
    """Three baseline scans at ``first`` (the baseline is their median), then one scan per loss.

    ``other``: contact of the other interface, constant (None: not measured).
    """
    losses = [0.0, 0.0, 0.0] + list(losses)
    rows = []
    for k, loss in enumerate(losses):
        row = {"cell_time_s": k * dt, "current_mA_cm2": j, f"contact_fraction_{side}": first * (1 - loss)}
        if other is not None:
            row[f"contact_fraction_{'top' if side == 'bottom' else 'bottom'}"] = other
        rows.append(row)
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
    # exactly linear: the uncertainty is the contact noise's alone (1 % absolute = 4 % of 0.25),
    # through the slope of a fit over the last 4 scans (45 min)
    th = AlarmThresholds()
    t = np.arange(4) * 900.0
    sigma_slope = th.contact_noise / 0.25 / np.sqrt(np.sum((t - t.mean()) ** 2))
    slope = 0.16 / 3600
    assert a.time_to_failure_uncertainty_s == pytest.approx(0.30 / slope**2 * sigma_slope, rel=0.01)
    # 10-min scans: 0.25 to go at 0.38 per h: 40 +- 11 min, within the hour even at one sigma
    faster = assess(_contact_history([0.05, 0.12, 0.19, 0.24], dt=600.0))
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
    # nominal |j| against a known nominal CCD, raised by the contact lost since the baseline
    hist = _contact_history([0.0, 0.0], first=0.25, j=-1.0, other=0.25)
    assert assess(hist).level == "ok"
    assert assess(hist, {"critical_current_density_mA_cm2": 7.0}).level == "ok"  # 14 % of the CCD
    assert assess(hist, {"critical_current_density_mA_cm2": 1.8}).level == "watch"  # 56 %
    a = assess(hist, {"critical_current_density_mA_cm2": 1.05})  # 95 %
    assert a.level == "imminent" and "95% of the 1050 uA/cm2" in a.reasons[0]
    # 80 % of the CCD is a watch until the plated (top) interface loses 15 % of its
    # contact: 0.8 / 0.85 = 94 % (the loss alone, on the plated side, is only a watch)
    plated_loss = _contact_history([0.0, 0.0], side="top", j=-1.0, other=0.25)
    assert assess(plated_loss, {"critical_current_density_mA_cm2": 1.25}).level == "watch"
    plated_loss = _contact_history([0.15, 0.15], side="top", j=-1.0, other=0.25)
    assert assess(plated_loss).level == "watch"
    assert assess(plated_loss, {"critical_current_density_mA_cm2": 1.25}).level == "imminent"
    with pytest.raises(ValueError, match="critical_current_density_mA_cm2"):
        assess(hist, {"critical_current_density_mA_cm2": -1.0})


def test_effective_current_density_against_the_stripping_limit():
    # |j| / contact of the stripping interface against the limit (Lewis-LSPS: about 9 mA/cm2)
    steady = _contact_history([0.0, 0.0], first=0.25, j=-1.0, other=0.25)  # 4 mA/cm2 effective: 44 %
    a = assess(steady, {"stripping_limit_mA_cm2": 9.0})
    assert a.level == "watch" and "4.0 mA/cm2 per contact area while stripping, 44%" in a.reasons[0]
    # the chemistry's literature value is the same 9 mA/cm2
    assert assess(steady, {"chemistry": "lsps"}).level == "watch"
    assert assess(steady, {"chemistry": "lps"}).level == "ok"  # no literature limit
    harder = _contact_history([0.0, 0.0], first=0.25, j=-1.2, other=0.25)  # 4.8 mA/cm2: 53 %
    assert assess(harder, {"chemistry": "lsps"}).level == "imminent"
    # the plated interface is stripped after the next reversal: 1 / 0.19 = 5.3 mA/cm2 (58 %)
    # while the bottom strips at 4 mA/cm2 (44 %)
    reduced = _contact_history([0.0, 0.0], first=0.25, j=-1.0, other=0.19)
    a = assess(reduced, {"chemistry": "lsps"})
    assert a.level == "imminent" and any("top interface carries 5.3 mA/cm2" in r and "once the current reverses" in r
                                         for r in a.reasons)
    # the contact trend projects failure where the limit is reached: contact 0.9 / 9 = 0.1
    falling = _contact_history([0.0, 0.04, 0.08, 0.12], first=0.25, j=-0.9, other=0.25)  # 0.16 loss/h
    b = assess(falling, {"stripping_limit_mA_cm2": 9.0})
    assert b.level == "watch"  # 0.9 / 0.22 = 4.1 mA/cm2: 45 % of the limit
    target_loss = 1 - 0.9 / 9.0 / 0.25  # 0.6: 3 h to go at 0.16 per hour
    assert b.time_to_failure_s == pytest.approx((target_loss - 0.12) / 0.16 * 3600, rel=0.01)


def test_planned_current_above_the_ccd_warns_before_it_flows():
    # only the pristine scan so far (current off); the protocol's current is known
    pristine = pd.DataFrame([{"cell_time_s": 0.0, "current_mA_cm2": 0.0, "contact_fraction_top": 0.8,
                              "contact_fraction_bottom": 0.8}])
    assert assess(pristine, {"chemistry": "llzo"}).level == "ok"
    # against the literature CCD (Dixit-LLZO, 26 uA/cm2) the plan alone is a pre-flight warning
    a = assess(pristine, {"chemistry": "llzo", "current_mA_cm2": 0.04})  # 154 %
    assert a.level == "watch" and a.reasons[0].startswith("planned current density is 154%")
    # against a CCD given for this cell the plan alone is imminent
    own = assess(pristine, {"critical_current_density_mA_cm2": 0.026, "current_mA_cm2": 0.04})
    assert own.level == "imminent" and own.reasons[0].startswith("planned current density is 154%")
    assert assess(pristine, {"chemistry": "llzo", "current_mA_cm2": 0.006}).level == "ok"  # 23 %
    # once the potentiostat drives it, the literature CCD is enough
    flowing = pd.concat([pristine, pd.DataFrame([{"cell_time_s": 60.0, "current_mA_cm2": 0.04}])],
                        ignore_index=True)
    b = assess(flowing, {"chemistry": "llzo", "current_mA_cm2": 0.04})
    assert b.level == "imminent" and b.reasons[0].startswith("applied current density is 154%")


def test_bulk_resistance_fall_and_its_trend():
    t = np.arange(0, 10 * 3600, 60.0)
    rng = np.random.default_rng(1)
    drop = np.clip((t - 3600) / (9 * 3600), 0, None) * 0.95  # 0 for 1 h, then 0.95 over 9 h
    r = 1000.0 * (1 - drop) * (1 + rng.normal(0, 0.02, t.size))

    def at(hours):
        m = t <= hours * 3600
        return assess({"cell_time_s": t[m], "bulk_resistance_ohm": r[m]})

    assert at(2.0).level == "ok"  # 11 % bridged
    mid = at(6.0)  # 53 % bridged, 10.6 % per hour: 4.5 h to go
    assert mid.level == "watch" and "bulk resistance fell 5" in mid.reasons[0]
    assert mid.time_to_failure_s == pytest.approx((1 - 0.95 * 5 / 9) / (0.95 / 9) * 3600, rel=0.1)
    assert at(9.6).level == "imminent"  # 91 % bridged
def test_li_penetration_channel_and_connected_path():
    t = np.arange(6) * 1800.0
    pen = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    a = assess({"cell_time_s": t, "li_penetration_fraction": pen})
    assert a.level == "watch"  # half way
    # 0.1 per 30 min from 0.5 -> reaches 1.0 in 2.5 h
    assert a.time_to_failure_s == pytest.approx(2.5 * 3600, rel=1e-6)
    b = assess({"cell_time_s": t, "li_penetration_fraction": pen, "li_path_connects": [0, 0, 0, 0, 0, 1]})
    assert b.level == "imminent"


def test_penetration_counts_beyond_the_pristine_scan():
    # a pristine scan (no current yet) that already shows a crack across the SE and 17 % "Li"
    # (a pellet defect or an imaging bias) sets the starting point: growth beyond it counts
    t = np.arange(4) * 1800.0
    j = [0.0, 0.035, 0.035, 0.035]
    crack = [1.0, 1.0, 1.0, 1.0]
    pen = [0.17, 0.30, 0.40, 0.40]  # (0.4 - 0.17) / 0.83 = 0.28 beyond it: below the 0.3 watch
    a = assess({"cell_time_s": t, "current_mA_cm2": j, "crack_penetration_fraction": crack,
                "li_penetration_fraction": pen})
    assert a.level == "ok", a.reasons
    pen2 = [0.17, 0.35, 0.45, 0.50]  # 0.40 beyond it: watch
    b = assess({"cell_time_s": t, "current_mA_cm2": j, "li_penetration_fraction": pen2})
    assert b.level == "watch" and "Li reaches 40%" in b.reasons[0]
    # without a pristine scan (current flowed before the first one) the values stand as measured
    j_on = [0.035] * 4
    c = assess({"cell_time_s": t, "current_mA_cm2": j_on, "crack_penetration_fraction": crack,
                "li_penetration_fraction": pen})
    assert c.level == "watch" and "a crack penetrates 100%" in c.reasons[0]


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


# lsps 1.3 mA/cm2, seed 0: the weak case of the old alarm, the runaway comes 35 min after
# the first reversal (two 15-min scans). Measured from the pristine scan on: 1.3 mA/cm2 on
# 25 % contact is 5.2 mA/cm2 per contact area, 58 % of Lewis-LSPS's 9 mA/cm2 stripping limit
@pytest.mark.parametrize("chem, j, seed", [("lsps", 1.0, 1), ("lsps", 1.3, 0), ("llzo", 0.035, 0)])
def test_twin_failure_is_announced_at_least_one_scan_ahead(chem, j, seed):
    eh = simulate_history(chem, seed, j, 30 * 3600)
    assert eh.failed
    assert eh.cell["chemistry"] == chem and eh.cell["current_mA_cm2"] == j
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
    if (chem, j) == ("lsps", 1.3):
        # without the literature limit the contact loss after the reversal comes too late
        # for 15-min scans: imminent less than one scan interval ahead
        blind = {**eh.cell, "chemistry": None}
        first_blind = next(ts for ts in eh.scan_times_s
                           if assess(eh.history[eh.history.cell_time_s <= ts], blind).level == "imminent")
        assert 0 < eh.failure_time_s - first_blind < PROTOCOLS[chem].scan_every_s


@pytest.mark.parametrize("chem, j", [("lsps", 0.1), ("llzo", 0.006)])
def test_low_current_twin_control_never_passes_watch(chem, j):
    eh = simulate_history(chem, 0, j, 20 * 3600)
    assert not eh.failed
    worst = max(Level[assess(eh.history[eh.history.cell_time_s <= ts], eh.cell).level.upper()] for ts in eh.scan_times_s)
    assert worst <= Level.WATCH


def test_fast_path_truth_and_imaging_hook():
    # the fast path's lean truth equals the twin's full bookkeeping on a cracked lps cell
    from sscell_live.twin import CellTwin
    from sscell_live.twin.history import scan_truth

    twin = CellTwin.create("lps", "mini", seed=3, n_lateral=48)
    for k in range(4):
        twin.run(0.3 if k % 2 == 0 else -0.3, 1800.0, sample_period_s=600.0)
    full, lean = twin.truth(), scan_truth(twin)
    assert full["crack_penetration_fraction"] > 0  # the comparison covers cracks
    for key, value in lean.items():
        assert value == full[key], key
    # an imaging hook replaces the scan metrics and leaves the potentiostat record as it was
    seen = []

    def hook(tw):
        seen.append(tw.time_s)
        return {"contact_fraction_top": 0.5, "contact_fraction_bottom": None}

    plain = simulate_history("lps", 3, 0.3, 2 * 3600, n_lateral=48)
    imaged = simulate_history("lps", 3, 0.3, 2 * 3600, n_lateral=48, measure_scan=hook)
    assert seen == imaged.scan_times_s == plain.scan_times_s
    pot = ["cell_time_s", "voltage_V", "current_mA_cm2", "bulk_resistance_ohm"]
    pd.testing.assert_frame_equal(plain.history[pot], imaged.history[pot])
    scans = imaged.history[imaged.history.contact_fraction_top.notna()]
    assert (scans.contact_fraction_top == 0.5).all() and scans.li_penetration_fraction.isna().all()
