"""Voltage channel: short, cut-off, polarization growth and its trend toward the cut-off."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ._common import Signal, binned_median, column, hysteretic, trend_to
from .levels import AlarmThresholds, Level


def voltage_signal(df: pd.DataFrame, cutoff_V: float, th: AlarmThresholds) -> Signal:
    """Short (sustained collapse under current), cut-off, and area-specific resistance against its baseline."""
    sig = Signal("voltage")
    t = df["cell_time_s"].to_numpy()
    v = column(df, "voltage_V")
    j = column(df, "current_mA_cm2")
    on = np.isfinite(v) & np.isfinite(j) & (np.abs(j) > 0)
    if not on.any():
        return sig
    t_on, v_on, j_on = t[on], np.abs(v[on]), np.abs(j[on])
    if np.any(v_on >= 0.98 * cutoff_V):
        k = int(np.argmax(v_on >= 0.98 * cutoff_V))
        sig.level, sig.reason = Level.FAILED, f"voltage reached the {cutoff_V:g} V cut-off at t = {t_on[k] / 3600:.2f} h"
        return sig
    # medians on a uniform time grid first: potentiostats log bursts (pulses,
    # impedance) at kHz between 1-per-minute samples, and a rolling median
    # over samples would let a one-second burst outvote an hour
    bin_s = th.smoothing_s / 30.0
    t_b, v_b = binned_median(t_on, v_on, bin_s)
    _, j_b = binned_median(t_on, j_on, bin_s)
    t_on, v_on, j_on = t_b, v_b, j_b
    idx = pd.to_timedelta(t_on, unit="s")
    v_s = pd.Series(v_on, index=idx).rolling(f"{int(th.smoothing_s)}s").median().to_numpy()
    asr = v_s / j_on  # V per mA/cm2 = kOhm cm2
    base_mask = t_on <= t_on[0] + th.baseline_s
    baseline = float(np.median(asr[base_mask]))
    v_base = float(np.median(v_s[base_mask]))
    # short: a sustained collapse of the smoothed voltage under current
    low = (v_s < th.short_voltage_V) & (v_s < th.short_fraction_of_baseline * v_base)
    if low[-1]:
        start = len(low) - np.argmin(low[::-1]) if not low.all() else 0
        span = t_on[-1] - t_on[start]
        n = len(low) - start
        if n >= 2 and span >= th.short_persistence_s:
            sig.level = Level.FAILED
            sig.reason = (f"voltage collapsed to {v_s[-1] * 1e3:.1f} mV under {j_on[-1]:.3g} mA/cm2 "
                          f"for {span / 60:.0f} min (short circuit)")
            return sig
    factor = asr / baseline if baseline > 0 else np.full_like(asr, np.nan)
    sig.level = hysteretic(factor, th.polarization_watch_factor, th.polarization_imminent_factor, th.hysteresis)
    recent = t_on >= t_on[-1] - max(3 * th.smoothing_s, 1800.0)
    ttf, sigma, rate = None, None, None
    if recent.sum() >= 3 and np.all(asr[recent] > 0):
        # exponential growth of the polarization toward the cut-off
        ttf, sigma, rate = trend_to(t_on[recent], np.log(asr[recent]), math.log(cutoff_V / j_on[-1]))
    sig.ttf_s, sig.ttf_sigma_s = ttf, sigma
    sig.detail = {"polarization_V": float(v_s[-1]), "asr_factor": float(factor[-1]), "baseline_V": v_base,
                  "log_growth_per_h": None if rate is None else rate * 3600}
    if sig.level >= Level.WATCH:
        sig.reason = (f"polarization {v_s[-1] * 1e3:.0f} mV is {factor[-1]:.1f}x its baseline "
                      f"({v_base * 1e3:.0f} mV at the start)")
    return sig
