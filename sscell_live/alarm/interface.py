"""Interface channel: contact loss, effective current density against the stripping limit, and the CCD.

SCIENCE.md 4.1: the stripping interface loses contact (voids), so the
current it carries per contact area climbs toward the rate at which creep
and diffusion can still bring Li to it; past that the cell polarises away.
The interface being plated now is stripped after the next reversal
(Lewis-LSPS: the reduced interface lost 8.9 % of its contact, then ran away
once stripped), so its effective current density at the present current
magnitude counts as well.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._common import Signal, column, current_state, hysteretic, trend_to
from .levels import AlarmThresholds, Level

SIDES = ("top", "bottom")


def _ccd_ratio(mag: np.ndarray, ccd: float | None, contact_factor: np.ndarray) -> np.ndarray:
    """Nominal |j| over the CCD, raised by the contact lost since the baseline (never lowered by noise)."""
    if not ccd:
        return np.full(mag.shape, np.nan)
    return mag / ccd * np.maximum(contact_factor, 1.0)


def contact_signal(df: pd.DataFrame, cell: Mapping, limits: Mapping, th: AlarmThresholds) -> Signal:
    """Contact loss, effective current density and CCD, per interface; the worst one sets the level."""
    sig = Signal("contact")
    t = df["cell_time_s"].to_numpy()
    j = column(df, "current_mA_cm2")
    planned = cell.get("current_mA_cm2")
    side, mag = current_state(j, None if planned is None else float(planned))
    j_lim = limits.get("stripping_limit_mA_cm2")
    ccd = limits.get("critical_current_density_mA_cm2")
    # Before the potentiostat has driven any current the magnitude is the
    # plan's, not a reading. Against a literature limit (a chemistry's
    # typical value, scattering by 10 % or more between cells) that earns at
    # most watch, a pre-flight warning; against a limit given for this cell
    # (measured on it or a sister cell) the plan alone may be imminent.
    flowed = bool(np.any(np.isfinite(j) & (j != 0)))

    def cap(key):
        return Level.IMMINENT if flowed or cell.get(key) is not None else Level.WATCH
    levels, reasons, ttfs, detail = [Level.OK], [], [], {}
    factors = []
    for s in SIDES:
        c = column(df, f"contact_fraction_{s}")
        m = np.isfinite(c)
        if not m.any():
            continue
        ts, cs, sides, js = t[m], c[m], side[m], mag[m]
        base = float(np.median(cs[: th.baseline_scans]))
        if not base > 0:
            continue
        loss = 1.0 - cs / base
        stripping = sides == s
        strips_now = bool(stripping[-1])
        plated_now = sides[-1] not in ("", s)
        noise_rel = th.contact_noise / base  # absolute contact noise as relative loss
        # loss: the stripping interface may reach imminent; the other only
        # watch (Lewis-LSPS: -8.9 % under reduction did not fail the cell)
        lvl_strip = hysteretic(np.where(stripping, loss, np.nan), th.contact_loss_watch, th.contact_loss_imminent,
                               th.hysteresis, noise_rel)
        lvl_any = min(hysteretic(loss, th.contact_loss_watch, th.contact_loss_imminent, th.hysteresis, noise_rel),
                      Level.WATCH)
        lvl = max(lvl_strip, lvl_any) if strips_now else lvl_any
        if j_lim:
            # with a known stripping limit a loss matters through the current
            # density it leaves (below); alone it only earns watch
            lvl = min(lvl, Level.WATCH)
        if lvl >= Level.WATCH:
            reasons.append(f"{s} interface lost {loss[-1]:.0%} of its contact ({cs[-1]:.3f} now)"
                           + (" while stripping" if strips_now else ""))
        detail[f"{s}_contact_loss"] = float(loss[-1])
        # effective current density |j| / contact against the stripping limit:
        # now for the stripping interface, after the next reversal for the other
        if j_lim and np.isfinite(js[-1]) and js[-1] > 0:
            with np.errstate(divide="ignore"):
                j_eff = np.where(cs > 0, js / cs, np.inf)
            ratio = j_eff / j_lim
            noise = ratio * th.contact_noise / np.maximum(cs, 1e-6)
            lvl_j = min(hysteretic(ratio, th.stripping_limit_watch, th.stripping_limit_imminent, th.hysteresis,
                                   noise), cap("stripping_limit_mA_cm2"))
            if lvl_j >= Level.WATCH:
                when = ("while stripping" if strips_now else
                        "once the current reverses" if plated_now else "once it strips")
                reasons.append(f"{s} interface carries {j_eff[-1]:.1f} mA/cm2 per contact area {when}, "
                               f"{ratio[-1]:.0%} of the {j_lim:g} mA/cm2 stripping limit")
            lvl = max(lvl, lvl_j)
            detail[f"{s}_effective_current_mA_cm2"] = float(j_eff[-1])
        # contact lost since the baseline, per row (for the CCD below)
        factor = np.full(len(df), np.nan)
        factor[m] = np.where(cs > 0, base / np.maximum(cs, 1e-12), np.inf)
        factors.append(factor)
        if strips_now:
            # trend over the points of the current stripping period toward the
            # contact at which the stripping limit is reached (or a 50 % loss)
            period = np.flatnonzero(~stripping)
            start = period[-1] + 1 if period.size else 0  # first scan of this stripping period
            # (with the last scan before it: the contact the interface started stripping with)
            in_span = np.flatnonzero(ts >= ts[-1] - th.trend_span_s)
            first = max(start - 1, min(in_span[0], len(ts) - th.trend_points), 0)
            pts = slice(first, len(ts))
            target = (1.0 - js[-1] / j_lim / base) if j_lim else th.contact_loss_failure
            ttf, sigma, _ = trend_to(ts[pts], loss[pts], target, th.trend_significance, noise_rel,
                                     th.trend_min_points)
            if ttf is not None:
                ttfs.append((ttf, sigma))
        levels.append(lvl)
    # nominal current density against the CCD (also before any contact is measured)
    if ccd:
        if factors:
            f = np.stack(factors)
            rows = np.isfinite(f).any(axis=0)  # scan rows
            factor = np.nanmax(f[:, rows], axis=0)
            ratio = _ccd_ratio(mag[rows], ccd, factor)
        else:
            factor = np.ones(1)
            ratio = _ccd_ratio(mag[np.isfinite(mag)][-1:], ccd, factor)
        if ratio.size and np.isfinite(ratio).any():
            lvl_c = min(hysteretic(ratio, th.effective_current_watch, th.effective_current_imminent, th.hysteresis),
                        cap("critical_current_density_mA_cm2"))
            last = ratio[np.isfinite(ratio)][-1]
            if lvl_c >= Level.WATCH:
                raised = factor[np.isfinite(ratio)][-1] > 1.01
                reasons.append(f"{'applied' if flowed else 'planned'} current density is {last:.0%} of the "
                               f"{ccd * 1e3:.0f} uA/cm2 critical current density"
                               + (" (raised by the contact lost since the start)" if raised else ""))
            levels.append(lvl_c)
            detail["ccd_fraction"] = float(last)
    sig.level = max(levels)
    sig.reason = "; ".join(reasons)
    if ttfs:
        sig.ttf_s, sig.ttf_sigma_s = min(ttfs)
    sig.detail = detail
    return sig
