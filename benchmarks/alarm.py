"""Failure-alarm benchmark: lead time and false alarms on an ensemble of twin cells.

Fast path: twin bookkeeping plus the measurement noise of the imaging path
(``sscell_live.twin.history``), no imaging. Three presets, random seeds,
current densities from safe to aggressive. Every cell is assessed after each
scan, as the live monitor does; the same cells are scored with two simple
rules for comparison:

- voltage-only: ``imminent`` once the smoothed polarization exceeds
  ``k`` times its baseline (k = 2, a typical hand-set threshold);
- charge-only: ``imminent`` once the charge passed exceeds a per-preset
  threshold (the 25th percentile of the charge-to-failure of the failing
  cells of that preset in this very ensemble: an oracle, which flatters it).

A failing cell is a *hit* when ``imminent`` came at least one scan interval
before the failure; the lead time is failure time minus first ``imminent``.
A cell unfailed at the horizon counts as non-failing only if it stays
unfailed for a further margin (50 % of the horizon); a false alarm is
``imminent`` on such a cell.

    python benchmarks/alarm.py            # >= 60 failing + 60 non-failing cells (about 15 min on 2 cores)
    python benchmarks/alarm.py --quick    # a dozen cells, about a minute

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from sscell_live.alarm import assess
from sscell_live.twin.history import PROTOCOLS, simulate_history

#: |j| in mA/cm2 from safe to aggressive, per preset, and the horizon in hours.
CURRENTS = {
    "lsps": ([0.1, 0.3, 0.6, 1.0, 1.3], 24.0),
    "lps": ([0.02, 0.05, 0.15, 0.25, 0.35], 30.0),
    "llzo": ([0.006, 0.012, 0.02, 0.03, 0.04], 24.0),
}


def _smoothed_polarization(df: pd.DataFrame, window_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    on = df["voltage_V"].notna() & (df["current_mA_cm2"].abs() > 0)
    t = df.loc[on, "cell_time_s"].to_numpy()
    v = df.loc[on, "voltage_V"].abs()
    v.index = pd.to_timedelta(t, unit="s")
    return t, v.rolling(f"{int(window_s)}s").median().to_numpy()


def score_cell(chem: str, seed: int, j: float, horizon_h: float) -> dict:
    margin_h = 0.5 * horizon_h
    eh = simulate_history(chem, seed, j, (horizon_h + margin_h) * 3600)
    fail_t = eh.failure_time_s
    status = "failing" if eh.failed and fail_t <= horizon_h * 3600 else ("ambiguous" if eh.failed else "non-failing")
    df = eh.history
    interval = PROTOCOLS[chem].scan_every_s
    scans = [t for t in eh.scan_times_s if t <= horizon_h * 3600 and (fail_t is None or t < fail_t)]
    first_imm = None
    for ts in scans:
        if assess(df[df.cell_time_s <= ts], eh.cell).level in ("imminent", "failed"):
            first_imm = ts
            break
    # voltage-only rule on the same scan schedule
    t_v, pol = _smoothed_polarization(df)
    base = np.median(pol[t_v <= t_v[0] + 1800]) if t_v.size else np.nan
    first_v = None
    for ts in scans:
        m = t_v <= ts
        if m.any() and pol[m][-1] > 2.0 * base:
            first_v = ts
            break
    charge = np.concatenate([[0.0], np.cumsum(np.abs(df["current_mA_cm2"].fillna(0).to_numpy()[1:]) * np.diff(df["cell_time_s"].to_numpy()))])
    return {"chem": chem, "seed": seed, "j": j, "status": status, "failure_s": fail_t, "interval_s": interval,
            "imminent_s": first_imm, "voltage_rule_s": first_v, "scans_s": scans,
            "charge_at": (df["cell_time_s"].to_numpy(), charge)}


def _rates(cells: list[dict], key: str) -> dict:
    failing = [c for c in cells if c["status"] == "failing"]
    safe = [c for c in cells if c["status"] == "non-failing"]
    leads = [c["failure_s"] - c[key] for c in failing if c[key] is not None]
    hits = [c for c in failing if c[key] is not None and c["failure_s"] - c[key] >= c["interval_s"]]
    false = [c for c in safe if c[key] is not None]
    return {
        "hit_rate": len(hits) / len(failing) if failing else None,
        "false_alarm_rate": len(false) / len(safe) if safe else None,
        "median_lead_time_s": float(np.median(leads)) if leads else None,
    }


def _charge_rule(cells: list[dict]) -> None:
    """Adds ``charge_rule_s``: first scan at which the charge passed exceeds the preset's threshold."""
    for chem in CURRENTS:
        fails = [c for c in cells if c["chem"] == chem and c["status"] == "failing"]
        q_fail = [np.interp(c["failure_s"], *c["charge_at"]) for c in fails]
        q_thr = np.percentile(q_fail, 25) if q_fail else np.inf
        for c in (c for c in cells if c["chem"] == chem):
            t, q = c["charge_at"]
            c["charge_rule_s"] = next((ts for ts in c["scans_s"] if np.interp(ts, t, q) >= q_thr), None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a dozen cells, about a minute")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per (preset, current); default 9, quick 1")
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 9)
    t0 = time.perf_counter()
    cells = []
    for chem, (currents, horizon_h) in CURRENTS.items():
        chosen = currents[::2] if args.quick else currents  # quick: safe, middle, aggressive
        for j in chosen:
            for seed in range(seeds):
                cells.append(score_cell(chem, seed, j, horizon_h))
    _charge_rule(cells)
    res = {"monitor": _rates(cells, "imminent_s"), "voltage_only": _rates(cells, "voltage_rule_s"),
           "charge_only": _rates(cells, "charge_rule_s")}
    counts = {s: sum(c["status"] == s for c in cells) for s in ("failing", "non-failing", "ambiguous")}
    print(f"{len(cells)} cells: {counts}; {time.perf_counter() - t0:.0f} s")
    print(f"{'rule':<14}{'hit rate':>10}{'false alarms':>14}{'median lead':>14}")
    for name, r in res.items():
        lead = "n/a" if r["median_lead_time_s"] is None else f"{r['median_lead_time_s'] / 60:.0f} min"
        hit = "n/a" if r["hit_rate"] is None else f"{r['hit_rate']:.0%}"
        fa = "n/a" if r["false_alarm_rate"] is None else f"{r['false_alarm_rate']:.0%}"
        print(f"{name:<14}{hit:>10}{fa:>14}{lead:>14}")
    for chem in CURRENTS:
        sub = [c for c in cells if c["chem"] == chem]
        r = _rates(sub, "imminent_s")
        print(f"  {chem}: {sum(c['status'] == 'failing' for c in sub)} failing, hit {r['hit_rate']}, false {r['false_alarm_rate']}")
    out = {**res["monitor"], "voltage_only_hit_rate": res["voltage_only"]["hit_rate"],
           "voltage_only_false_alarm_rate": res["voltage_only"]["false_alarm_rate"],
           "voltage_only_median_lead_time_s": res["voltage_only"]["median_lead_time_s"],
           "charge_only_hit_rate": res["charge_only"]["hit_rate"],
           "charge_only_false_alarm_rate": res["charge_only"]["false_alarm_rate"],
           "charge_only_median_lead_time_s": res["charge_only"]["median_lead_time_s"],
           "cells": counts, "imaging_path_cells": 0, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
