"""The failure alarm: from measured metrics and potentiostat readings to a level.

``assess(history, cell)`` is a pure function (the live monitor calls it after
every scan). It never sees twin truth: only the columns a real experiment
has. Each channel of SCIENCE.md section 4 gives a level with hysteresis and,
where it has a trend, a time to failure:

- voltage: a sustained collapse to near 0 V under current (short) or the
  protocol cut-off -> ``failed``; area-specific resistance |V|/|j| growing
  against its baseline, and its exponential trend toward the cut-off;
- contact: relative contact loss of the stripping interface (Lewis-LSPS) and
  its rate, effective current density against the cell's CCD;
- cracks and Li: crack penetration (early and not fatal alone, Hao-LPS), Li
  penetrating the SE toward the counter electrode and its rate, a Li path
  connecting the electrodes;
- bulk resistance falling as Li penetrates (Siniscalchi-LLZTO).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .levels import AlarmThresholds, Assessment, Level

__all__ = ["assess"]

_REQUIRED = ("cell_time_s",)


@dataclass
class _Signal:
    name: str
    level: Level = Level.OK
    reason: str = ""
    ttf_s: float | None = None
    ttf_sigma_s: float | None = None
    detail: dict | None = None


# ---------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------
def _as_frame(history) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        df = history.copy()
    elif isinstance(history, Mapping):
        lengths = {k: len(np.atleast_1d(v)) for k, v in history.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"history columns must have equal lengths, got {lengths}")
        df = pd.DataFrame({k: np.atleast_1d(v) for k, v in history.items()})
    else:
        raise ValueError(f"history must be a pandas DataFrame or a mapping of equal-length arrays, got {type(history).__name__}")
    missing = [c for c in _REQUIRED if c not in df]
    if missing:
        raise ValueError(f"history lacks the column(s) {missing}; it needs cell_time_s (s) on every row")
    t = pd.to_numeric(df["cell_time_s"], errors="coerce")
    if t.isna().any():
        raise ValueError("history column cell_time_s has missing or non-numeric values")
    df["cell_time_s"] = t.astype(float)
    return df.sort_values("cell_time_s", kind="stable").reset_index(drop=True)


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _hysteretic(values: np.ndarray, watch: float, imminent: float, hysteresis: float, noise: float = 0.0) -> Level:
    """Final level of a 'higher is worse' signal run through a hysteresis state machine.

    A level is entered when two consecutive values reach its threshold, or a
    single value reaches it by more than two noise sigmas (a clear jump need
    not wait for the next scan); it is left only when a value falls below
    ``hysteresis`` times the threshold, so noise near a threshold does not
    flicker.
    """
    level = Level.OK
    prev = None
    for v in values:
        if not np.isfinite(v):
            continue
        confirmed = max(v if prev is None else min(v, prev), v - 2.0 * noise)
        if confirmed >= imminent:
            level = max(level, Level.IMMINENT)
        elif confirmed >= watch:
            level = max(level, Level.WATCH)
        if level == Level.IMMINENT and v < hysteresis * imminent:
            level = Level.WATCH
        if level == Level.WATCH and v < hysteresis * watch:
            level = Level.OK
        prev = v
    return level


def _trend_to(t: np.ndarray, y: np.ndarray, target: float) -> tuple[float | None, float | None, float | None]:
    """Linear fit y(t); time from the last point until y reaches ``target``, its 1-sigma, and the slope."""
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size < 2 or np.ptp(t) <= 0:
        return None, None, None
    A = np.vstack([t - t[-1], np.ones_like(t)]).T
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    slope, intercept = coef
    if slope <= 0:
        return None, None, float(slope)
    dof = max(t.size - 2, 1)
    resid = y - A @ coef
    s2 = float(resid @ resid) / dof if t.size > 2 else 0.0
    cov = s2 * np.linalg.pinv(A.T @ A)
    sigma_slope = math.sqrt(max(cov[0, 0], 0.0))
    remaining = target - intercept
    ttf = max(remaining / slope, 0.0)
    sigma = abs(remaining) / slope**2 * sigma_slope if sigma_slope > 0 else 0.0
    return float(ttf), float(sigma), float(slope)


def _stripping_side(current: np.ndarray) -> np.ndarray:
    """'top' / 'bottom' per row from the sign of the latest non-zero current (scans may pause it)."""
    signed = pd.Series(np.where(np.isfinite(current) & (current != 0), np.sign(current), np.nan)).ffill()
    return np.where(signed.to_numpy() > 0, "top", np.where(signed.to_numpy() < 0, "bottom", ""))


# ---------------------------------------------------------------------------
# channels
# ---------------------------------------------------------------------------
def _voltage_signal(df: pd.DataFrame, cutoff_V: float, th: AlarmThresholds) -> _Signal:
    sig = _Signal("voltage")
    t = df["cell_time_s"].to_numpy()
    v = _column(df, "voltage_V")
    j = _column(df, "current_mA_cm2")
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
    grid = pd.DataFrame({"bin": np.floor((t_on - t_on[0]) / bin_s), "t": t_on, "v": v_on, "j": j_on})
    grid = grid.groupby("bin").agg(t=("t", "max"), v=("v", "median"), j=("j", "median"))
    t_on, v_on, j_on = grid["t"].to_numpy(), grid["v"].to_numpy(), grid["j"].to_numpy()
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
        if n >= 2 and span >= min(th.short_persistence_s, 0.5 * th.smoothing_s):
            sig.level = Level.FAILED
            sig.reason = (f"voltage collapsed to {v_s[-1] * 1e3:.1f} mV under {j_on[-1]:.3g} mA/cm2 "
                          f"for {span / 60:.0f} min (short circuit)")
            return sig
    factor = asr / baseline if baseline > 0 else np.full_like(asr, np.nan)
    sig.level = _hysteretic(factor, th.polarization_watch_factor, th.polarization_imminent_factor, th.hysteresis)
    recent = t_on >= t_on[-1] - max(3 * th.smoothing_s, 1800.0)
    ttf, sigma, rate = None, None, None
    if recent.sum() >= 3 and np.all(asr[recent] > 0):
        # exponential growth of the polarization toward the cut-off
        ttf, sigma, rate = _trend_to(t_on[recent], np.log(asr[recent]), math.log(cutoff_V / j_on[-1]))
    sig.ttf_s, sig.ttf_sigma_s = ttf, sigma
    sig.detail = {"polarization_V": float(v_s[-1]), "asr_factor": float(factor[-1]), "baseline_V": v_base,
                  "log_growth_per_h": None if rate is None else rate * 3600}
    if sig.level >= Level.WATCH:
        sig.reason = (f"polarization {v_s[-1] * 1e3:.0f} mV is {factor[-1]:.1f}x its baseline "
                      f"({v_base * 1e3:.0f} mV at the start)")
    return sig


def _contact_signal(df: pd.DataFrame, cell: Mapping, th: AlarmThresholds) -> _Signal:
    sig = _Signal("contact")
    t = df["cell_time_s"].to_numpy()
    j = _column(df, "current_mA_cm2")
    side = _stripping_side(j)
    loss = {}
    for s in ("top", "bottom"):
        c = _column(df, f"contact_fraction_{s}")
        m = np.isfinite(c)
        if m.sum() == 0:
            continue
        first = c[m][0]
        loss[s] = (t[m], np.where(first > 0, 1.0 - c[m] / first, np.nan), side[m], c[m])
    if not loss:
        return sig
    levels, reasons, ttfs = [], [], []
    for s, (ts, ls, sides, cs) in loss.items():
        stripping = sides == s
        # the stripping interface may reach imminent; the other only watch
        # (Lewis-LSPS: -8.9 % under reduction did not fail the cell)
        noise = th.contact_noise / max(cs[0], 1e-6)  # absolute contact noise as relative loss
        lvl_strip = _hysteretic(np.where(stripping, ls, np.nan), th.contact_loss_watch, th.contact_loss_imminent,
                                th.hysteresis, noise)
        lvl_any = min(_hysteretic(ls, th.contact_loss_watch, th.contact_loss_imminent, th.hysteresis, noise), Level.WATCH)
        lvl = max(lvl_strip, lvl_any) if stripping[-1] else lvl_any
        if lvl >= Level.WATCH:
            reasons.append(f"{s} interface lost {ls[-1]:.0%} of its contact ({cs[-1]:.3f} now)"
                           + (" while stripping" if stripping[-1] else ""))
        if stripping[-1]:
            # trend over the points of the current stripping period
            period = np.flatnonzero(~stripping)
            start = period[-1] + 1 if period.size else 0
            pts = slice(max(start - 1, 0, len(ts) - th.trend_points), len(ts))
            ttf, sigma, _ = _trend_to(ts[pts], ls[pts], th.contact_loss_failure)
            if ttf is not None:
                ttfs.append((ttf, sigma))
        ccd = cell.get("critical_current_density_mA_cm2")
        if ccd and stripping[-1] and cs[-1] > 0 and np.isfinite(j).any():
            j_now = abs(j[np.isfinite(j) & (j != 0)][-1]) if np.any(np.isfinite(j) & (j != 0)) else 0.0
            frac = j_now / cs[-1] / ccd
            lvl_j = Level.IMMINENT if frac >= th.effective_current_imminent else Level.WATCH if frac >= th.effective_current_watch else Level.OK
            if lvl_j >= Level.WATCH:
                reasons.append(f"effective current density {j_now / cs[-1]:.2f} mA/cm2 is {frac:.0%} of the CCD")
            lvl = max(lvl, lvl_j)
        levels.append(lvl)
    sig.level = max(levels)
    sig.reason = "; ".join(reasons)
    if ttfs:
        sig.ttf_s, sig.ttf_sigma_s = min(ttfs)
    sig.detail = {s: float(v[1][-1]) for s, v in loss.items()}
    return sig


def _li_signal(df: pd.DataFrame, th: AlarmThresholds) -> _Signal:
    sig = _Signal("cracks_li")
    t = df["cell_time_s"].to_numpy()
    reasons = []
    pen = _column(df, "li_penetration_fraction")
    m = np.isfinite(pen)
    if m.any():
        sig.level = _hysteretic(pen[m], th.li_penetration_watch, th.li_penetration_imminent, th.hysteresis,
                                th.penetration_noise)
        pts = np.flatnonzero(m)[-th.trend_points:]
        sig.ttf_s, sig.ttf_sigma_s, _ = _trend_to(t[pts], pen[pts], 1.0)
        if sig.level >= Level.WATCH:
            reasons.append(f"Li reaches {pen[m][-1]:.0%} of the way through the SE")
    connects = _column(df, "li_path_connects")
    if np.isfinite(connects).any() and connects[np.isfinite(connects)][-1] > 0:
        sig.level = max(sig.level, Level.IMMINENT)
        reasons.append("a Li-filled path connects the electrodes in the last scan")
    crack = _column(df, "crack_penetration_fraction")
    if np.isfinite(crack).any() and crack[np.isfinite(crack)][-1] >= th.crack_penetration_watch:
        sig.level = max(sig.level, Level.WATCH)
        reasons.append(f"a crack penetrates {crack[np.isfinite(crack)][-1]:.0%} of the SE")
    sig.reason = "; ".join(reasons)
    return sig


def _bulk_signal(df: pd.DataFrame, th: AlarmThresholds) -> _Signal:
    sig = _Signal("bulk_resistance")
    r = _column(df, "bulk_resistance_ohm")
    m = np.isfinite(r) & (r > 0)
    if m.sum() < 2:
        return sig
    drop = 1.0 - r[m] / r[m][0]
    sig.level = _hysteretic(drop, th.bulk_resistance_drop_watch, th.bulk_resistance_drop_imminent, th.hysteresis)
    if sig.level >= Level.WATCH:
        sig.reason = f"bulk resistance fell {drop[-1]:.0%} (Li penetrating the SE)"
    return sig


# ---------------------------------------------------------------------------
# the alarm
# ---------------------------------------------------------------------------
def assess(history, cell: Mapping | None = None, thresholds: AlarmThresholds | None = None) -> Assessment:
    """Assess how close a cell is to failure from its measured history.

    Parameters
    ----------
    history : pandas.DataFrame or mapping of equal-length arrays
        One row per potentiostat sample and per finished scan, any order
        (sorted by ``cell_time_s`` here). Columns: ``cell_time_s`` (s,
        required), ``voltage_V``, ``current_mA_cm2`` (positive strips the top
        electrode), optionally ``bulk_resistance_ohm`` and per-scan metrics
        under the registry names (``contact_fraction_top``,
        ``contact_fraction_bottom``, ``crack_penetration_fraction``,
        ``li_penetration_fraction``, ``li_path_connects``, ...), NaN where not
        measured. Missing columns are allowed (a voltage-only history is
        valid).
    cell : mapping, optional
        ``area_cm2`` (for the charge to failure), ``cutoff_V`` (protocol
        cut-off; default 10 V), ``critical_current_density_mA_cm2`` (known CCD).
    thresholds : AlarmThresholds, optional

    Returns
    -------
    Assessment
        ``level`` is the worst channel's; ``reasons`` lists every channel at
        ``watch`` or above; from ``watch`` on, ``time_to_failure_s`` is the
        earliest projected failure among the trending channels.
    """
    th = thresholds or AlarmThresholds()
    cell = dict(cell or {})
    df = _as_frame(history)
    if len(df) == 0:
        return Assessment(level=str(Level.OK), reasons=["no data yet"])
    cutoff = float(cell.get("cutoff_V") or th.default_cutoff_V)
    if not cutoff > 0:
        raise ValueError(f"cell cutoff_V must be a positive voltage, got {cell.get('cutoff_V')!r}")
    signals = [_voltage_signal(df, cutoff, th), _contact_signal(df, cell, th), _li_signal(df, th), _bulk_signal(df, th)]
    level = max(s.level for s in signals)
    reasons = [s.reason for s in signals if s.level >= Level.WATCH and s.reason]
    ttf = sigma = charge = None
    if level == Level.FAILED:
        ttf, sigma = 0.0, 0.0
    else:
        trends = [(s.ttf_s, s.ttf_sigma_s or 0.0, s.name) for s in signals if s.ttf_s is not None and s.level >= Level.WATCH]
        if trends:
            ttf, sigma, name = min(trends)
            if ttf < th.horizon_s and level < Level.IMMINENT:
                level = Level.IMMINENT
                reasons.append(f"{name} trend projects failure in {ttf / 60:.0f} +- {sigma / 60:.0f} min")
    if level >= Level.WATCH and ttf is not None and cell.get("area_cm2"):
        j = _column(df, "current_mA_cm2")
        nz = j[np.isfinite(j) & (j != 0)]
        if nz.size:
            charge = abs(nz[-1]) * 1e-3 * float(cell["area_cm2"]) * ttf
    details = {s.name: {"level": str(s.level), "time_to_failure_s": s.ttf_s, **(s.detail or {})} for s in signals}
    return Assessment(
        level=str(level),
        reasons=reasons,
        time_to_failure_s=ttf if level >= Level.WATCH else None,
        time_to_failure_uncertainty_s=sigma if level >= Level.WATCH else None,
        charge_to_failure_C=charge,
        signals=details,
    )
