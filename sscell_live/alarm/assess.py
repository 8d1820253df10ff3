"""The failure alarm: from measured metrics and potentiostat readings to a level.

``assess(history, cell)`` is a pure function (the live monitor calls it after
every scan). It never sees twin truth: only the columns a real experiment
has, and the cell metadata of its start document. Each channel of SCIENCE.md
section 4 gives a level with hysteresis and, where it has a trend, a time to
failure:

- voltage (:mod:`.voltage`): a sustained collapse to near 0 V under current
  (short) or the protocol cut-off -> ``failed``; area-specific resistance
  |V|/|j| growing against its baseline, and its exponential trend toward the
  cut-off;
- interfaces (:mod:`.interface`): relative contact loss of the stripping
  interface (Lewis-LSPS) and its trend, effective current density |j| /
  contact of the interface stripping now or after the next reversal against
  the stripping limit, nominal current density against the CCD;
- cracks and Li (:mod:`.penetration`): crack penetration (early and not
  fatal alone, Hao-LPS), Li penetrating the SE and its rate, a Li path
  connecting the electrodes; the bulk resistance falling as Li bridges the
  SE (Siniscalchi-LLZTO) and its trend.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._common import as_frame, column
from .interface import contact_signal
from .levels import AlarmThresholds, Assessment, Level, cell_limits
from .penetration import bulk_signal, li_signal
from .voltage import voltage_signal

__all__ = ["assess"]


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
        cut-off; default 10 V), ``chemistry`` (``lsps``, ``lps``, ``llzo``:
        selects the literature limits of :data:`~.levels.LITERATURE_LIMITS`),
        ``critical_current_density_mA_cm2`` (a known nominal CCD, mA/cm2),
        ``stripping_limit_mA_cm2`` (a known effective current density at
        which the stripping interface runs away), ``current_mA_cm2`` (the
        protocol's current magnitude: judged against the limits before any
        current has flowed).
    thresholds : AlarmThresholds, optional

    Returns
    -------
    Assessment
        ``level`` is the worst channel's; ``reasons`` lists every channel at
        ``watch`` or above; from ``watch`` on, ``time_to_failure_s`` is the
        earliest projected failure among the trending channels.

    Raises
    ------
    ValueError
        A history without ``cell_time_s``, of unequal column lengths or of an
        unknown type; a non-positive cut-off or limit in ``cell``.
    """
    th = thresholds or AlarmThresholds()
    cell = dict(cell or {})
    df = as_frame(history)
    cutoff = float(cell.get("cutoff_V") or th.default_cutoff_V)
    if not cutoff > 0:
        raise ValueError(f"cell cutoff_V must be a positive voltage, got {cell.get('cutoff_V')!r}")
    limits = cell_limits(cell)
    if len(df) == 0:
        return Assessment(level=str(Level.OK), reasons=["no data yet"])
    signals = [voltage_signal(df, cutoff, th), contact_signal(df, cell, limits, th), li_signal(df, th),
               bulk_signal(df, th)]
    level = max(s.level for s in signals)
    reasons = [s.reason for s in signals if s.level >= Level.WATCH and s.reason]
    ttf = sigma = charge = None
    if level == Level.FAILED:
        ttf, sigma = 0.0, 0.0
    else:
        trends = [(s.ttf_s + th.horizon_sigmas * (s.ttf_sigma_s or 0.0), s.ttf_s, s.ttf_sigma_s or 0.0, s.name)
                  for s in signals if s.ttf_s is not None and s.level >= Level.WATCH]
        if trends:
            _, ttf, sigma, name = min(trends)  # the projection most confidently near
            if ttf + th.horizon_sigmas * sigma < th.horizon_s and level < Level.IMMINENT:
                level = Level.IMMINENT
                reasons.append(f"{name} trend projects failure in {ttf / 60:.0f} +- {sigma / 60:.0f} min")
    if level >= Level.WATCH and ttf is not None and cell.get("area_cm2"):
        j = column(df, "current_mA_cm2")
        nz = j[np.isfinite(j) & (j != 0)]
        if nz.size:
            charge = abs(nz[-1]) * 1e-3 * float(cell["area_cm2"]) * ttf
    details = {s.name: {"level": str(s.level), "time_to_failure_s": s.ttf_s, **(s.detail or {})} for s in signals}
    if limits["source"]:
        details["limits"] = dict(limits)
    return Assessment(
        level=str(level),
        reasons=reasons,
        time_to_failure_s=ttf if level >= Level.WATCH else None,
        time_to_failure_uncertainty_s=sigma if level >= Level.WATCH else None,
        charge_to_failure_C=charge,
        signals=details,
    )
