"""Shared pieces of the alarm channels: input checks, hysteresis, trends, current bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .levels import Level

_REQUIRED = ("cell_time_s",)


@dataclass
class Signal:
    """One channel's conclusion."""

    name: str
    level: Level = Level.OK
    reason: str = ""
    ttf_s: float | None = None
    ttf_sigma_s: float | None = None
    detail: dict | None = None


def as_frame(history) -> pd.DataFrame:
    """The history as a DataFrame sorted by ``cell_time_s`` (clear errors on bad input)."""
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


def column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats (NaN where missing or not numeric; all NaN if absent)."""
    if name not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def hysteretic(values: np.ndarray, watch: float, imminent: float, hysteresis: float, noise=0.0) -> Level:
    """Final level of a 'higher is worse' signal run through a hysteresis state machine.

    A level is entered when two consecutive values reach its threshold, or a
    single value reaches it by more than two noise sigmas (a clear jump need
    not wait for the next scan); it is left only when a value falls below
    ``hysteresis`` times the threshold, so noise near a threshold does not
    flicker. ``noise`` is a scalar or one sigma per value.
    """
    values = np.asarray(values, dtype=float)
    noise = np.broadcast_to(np.asarray(noise, dtype=float), values.shape)
    level = Level.OK
    prev = None
    for v, n in zip(values, noise):
        if not np.isfinite(v):
            continue
        confirmed = max(v if prev is None else min(v, prev), v - 2.0 * (n if np.isfinite(n) else 0.0))
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


def trend_to(t: np.ndarray, y: np.ndarray, target: float, significance: float = 0.0,
             noise: float = 0.0, min_points: int = 2) -> tuple[float | None, float | None, float | None]:
    """Linear fit y(t); time from the last point until y reaches ``target``, its 1-sigma, and the slope.

    The slope's standard error is the larger of the fit residuals' and the
    known one-sigma measurement ``noise`` of y (which also covers fits
    through two points). With ``significance`` > 0 a rising slope within
    that many standard errors of zero projects nothing (noise between
    frequent scans must not extrapolate to a failure).
    """
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size < max(min_points, 2) or np.ptp(t) <= 0:
        return None, None, None
    A = np.vstack([t - t[-1], np.ones_like(t)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    slope, intercept = coef
    if slope <= 0:
        return None, None, float(slope)
    dof = max(t.size - 2, 1)
    resid = y - A @ coef
    s2 = float(resid @ resid) / dof if t.size > 2 else 0.0
    cov = s2 * np.linalg.pinv(A.T @ A)
    sxx = float(np.sum((t - t.mean()) ** 2))
    sigma_slope = max(math.sqrt(max(cov[0, 0], 0.0)), noise / math.sqrt(sxx))
    if significance > 0 and slope <= significance * sigma_slope:
        return None, None, float(slope)
    remaining = target - intercept
    ttf = max(remaining / slope, 0.0)
    sigma = abs(remaining) / slope**2 * sigma_slope if sigma_slope > 0 else 0.0
    return float(ttf), float(sigma), float(slope)


def current_state(current: np.ndarray, planned_mA_cm2=None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the stripping side and the magnitude of the current in effect.

    Scans may pause the current (rows at 0 mA/cm2): the latest non-zero
    current still tells which interface strips and how hard. Before any
    current has flowed the protocol's planned magnitude (if given) stands in
    and the stripping side is unknown ('').

    Returns
    -------
    side : ndarray of str
        ``'top'``, ``'bottom'`` or ``''``.
    magnitude : ndarray
        |j|, mA/cm2 (NaN where unknown).
    """
    nz = np.where(np.isfinite(current) & (current != 0), current, np.nan)
    signed = pd.Series(nz).ffill().to_numpy()
    side = np.where(signed > 0, "top", np.where(signed < 0, "bottom", ""))
    mag = np.abs(signed)
    if planned_mA_cm2 is not None and np.isfinite(planned_mA_cm2) and planned_mA_cm2 != 0:
        mag = np.where(np.isfinite(mag), mag, abs(float(planned_mA_cm2)))
    return side, mag


def binned_median(t: np.ndarray, y: np.ndarray, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``y`` per ``bin_s`` time bin (time of each bin: its last sample)."""
    g = pd.DataFrame({"bin": np.floor((t - t[0]) / bin_s), "t": t, "y": y}).groupby("bin")
    out = g.agg(t=("t", "max"), y=("y", "median"))
    return out["t"].to_numpy(), out["y"].to_numpy()
