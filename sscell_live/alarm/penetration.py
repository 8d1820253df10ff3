"""Penetration channels: cracks and Li inside the SE, and the falling bulk resistance.

Hao-LPS: cracks cross the pellet early, the cell shorts only once Li fills a
connecting path. Siniscalchi-LLZTO: the bulk resistance (impedance
high-frequency intercept) falls as Li penetrates, then collapses at the
short; its relative fall is the share of the SE thickness Li already bridges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import Signal, binned_median, column, hysteretic, trend_to
from .levels import AlarmThresholds, Level


def _since_pristine(t: np.ndarray, x: np.ndarray, current: np.ndarray) -> np.ndarray:
    """A penetration fraction measured beyond what the pristine scan showed, rescaled to 0-1.

    A crack or 'Li' inside the SE on a scan taken before any current flowed
    is the cell's starting state (a pellet defect, or a segmentation bias of
    the imaging path): what announces failure is penetration beyond it,
    ``(x - x0) / (1 - x0)``. Without a pristine scan the values stand as
    measured.
    """
    m = np.isfinite(x)
    if not m.any():
        return x
    k = int(np.flatnonzero(m)[0])
    flowed = np.isfinite(current[: k + 1]) & (current[: k + 1] != 0)
    x0 = float(x[k]) if not flowed.any() else 0.0
    if x0 <= 0:
        return x
    if x0 >= 1:
        return np.where(m, 0.0, np.nan)  # already across: growth is invisible in this metric
    return np.where(m, np.clip((x - x0) / (1.0 - x0), 0.0, 1.0), np.nan)


def li_signal(df: pd.DataFrame, th: AlarmThresholds) -> Signal:
    """Li penetration fraction and its trend, a connecting Li path, deep cracks (beyond the pristine scan)."""
    sig = Signal("cracks_li")
    t = df["cell_time_s"].to_numpy()
    j = column(df, "current_mA_cm2")
    reasons = []
    pen = _since_pristine(t, column(df, "li_penetration_fraction"), j)
    m = np.isfinite(pen)
    if m.any():
        sig.level = hysteretic(pen[m], th.li_penetration_watch, th.li_penetration_imminent, th.hysteresis,
                               th.penetration_noise)
        idx = np.flatnonzero(m)
        recent = idx[t[idx] >= t[idx[-1]] - th.trend_span_s]
        pts = recent if recent.size >= th.trend_points else idx[-th.trend_points:]
        sig.ttf_s, sig.ttf_sigma_s, _ = trend_to(t[pts], pen[pts], 1.0, th.trend_significance,
                                                 th.penetration_noise, th.trend_min_points)
        if sig.level >= Level.WATCH:
            reasons.append(f"Li reaches {pen[m][-1]:.0%} of the way through the SE")
    connects = column(df, "li_path_connects")
    if np.isfinite(connects).any() and connects[np.isfinite(connects)][-1] > 0:
        sig.level = max(sig.level, Level.IMMINENT)
        reasons.append("a Li-filled path connects the electrodes in the last scan")
    crack = _since_pristine(t, column(df, "crack_penetration_fraction"), j)
    if np.isfinite(crack).any() and crack[np.isfinite(crack)][-1] >= th.crack_penetration_watch:
        sig.level = max(sig.level, Level.WATCH)
        reasons.append(f"a crack penetrates {crack[np.isfinite(crack)][-1]:.0%} of the SE")
    sig.reason = "; ".join(reasons)
    return sig


def bulk_signal(df: pd.DataFrame, th: AlarmThresholds) -> Signal:
    """Relative fall of the bulk resistance against its starting value, and its trend toward a short."""
    sig = Signal("bulk_resistance")
    t = df["cell_time_s"].to_numpy()
    r = column(df, "bulk_resistance_ohm")
    m = np.isfinite(r) & (r > 0)
    if m.sum() < 2:
        return sig
    t, r = t[m], r[m]
    # medians per smoothing window: impedance readings scatter by a few %
    t_b, r_b = binned_median(t, r, th.smoothing_s)
    base = float(np.median(r[t <= t[0] + th.bulk_baseline_s]))
    drop = 1.0 - r_b / base
    sig.level = hysteretic(drop, th.bulk_resistance_drop_watch, th.bulk_resistance_drop_imminent, th.hysteresis)
    recent = t_b >= t_b[-1] - th.trend_window_s
    if recent.sum() >= 3:
        sig.ttf_s, sig.ttf_sigma_s, _ = trend_to(t_b[recent], drop[recent], 1.0, th.trend_significance)
    sig.detail = {"bulk_resistance_drop": float(drop[-1]), "baseline_ohm": base}
    if sig.level >= Level.WATCH:
        sig.reason = f"bulk resistance fell {drop[-1]:.0%} (Li bridges that share of the SE)"
    return sig
