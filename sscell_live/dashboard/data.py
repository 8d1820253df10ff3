"""What the dashboard and the demo show, computed from a monitor history (pure pandas, no Qt).

The monitor's history (:attr:`sscell_live.monitor.Monitor.history`) holds
potentiostat rows and scan rows, ordered by cell time. The functions here
cut it into the series the dashboard plots and the per-scan table the demo
prints, so both show the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["SCAN_COLUMNS", "format_assessment", "potentiostat_series", "scan_table"]

#: Columns of :func:`scan_table`, in print order.
SCAN_COLUMNS = ("scan_index", "cell_time_h", "current_mA_cm2", "voltage_V", "contact_fraction_top",
                "contact_fraction_bottom", "void_volume_um3", "crack_volume_um3", "crack_penetration_fraction")


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float (NaN-filled when the history lacks it)."""
    if name in df:
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    return np.full(len(df), np.nan)


def potentiostat_series(history: pd.DataFrame) -> pd.DataFrame:
    """The potentiostat rows of a history: ``cell_time_s``, ``voltage_V``, ``current_mA_cm2``.

    Parameters
    ----------
    history : DataFrame
        A monitor history (``row_kind`` column) or a voltage-only frame
        (every row a potentiostat sample).

    Returns
    -------
    DataFrame
        Rows with a finite cell time and voltage, in history order.
    """
    if "row_kind" in history:
        history = history[history["row_kind"] == "potentiostat"]
    out = pd.DataFrame({"cell_time_s": _col(history, "cell_time_s"), "voltage_V": _col(history, "voltage_V"),
                        "current_mA_cm2": _col(history, "current_mA_cm2")})
    ok = np.isfinite(out["cell_time_s"].to_numpy()) & np.isfinite(out["voltage_V"].to_numpy())
    return out[ok].reset_index(drop=True)


def scan_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per analysed scan: the numbers the demo prints and the dashboard plots.

    Parameters
    ----------
    history : DataFrame
        A monitor history: potentiostat rows and scan rows (``row_kind``).

    Returns
    -------
    DataFrame
        Columns :data:`SCAN_COLUMNS`, by scan index:

        - ``cell_time_h``: the scan's cell time, h;
        - ``current_mA_cm2``, ``voltage_V``: the last potentiostat sample
          taken under current (``current_mA_cm2 != 0``) at or before the
          scan, i.e. the current and polarization of the half cycle that led
          to it (NaN before any current flowed). Paused-style scans run at
          open circuit, so the scan's own current would always read 0;
        - ``contact_fraction_top``/``_bottom``, ``crack_volume_um3``,
          ``crack_penetration_fraction``: the scan's metrics;
        - ``void_volume_um3``: ``void_volume_top_um3 + void_volume_bottom_um3``, um3.
    """
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in SCAN_COLUMNS})
    if "row_kind" not in history or not len(history):
        return empty
    scans = history[history["row_kind"] == "scan"]
    if not len(scans):
        return empty
    scans = scans.sort_values("scan_index", kind="stable")
    pot = potentiostat_series(history)
    pot = pot[np.nan_to_num(pot["current_mA_cm2"].to_numpy()) != 0]
    t_pot = pot["cell_time_s"].to_numpy()
    t_scan = _col(scans, "cell_time_s")
    # last on-current sample at or before each scan (searchsorted on the time-ordered samples)
    volt = np.full(len(scans), np.nan)
    curr = np.full(len(scans), np.nan)
    if len(t_pot):
        order = np.argsort(t_pot, kind="stable")
        idx = np.searchsorted(t_pot[order], t_scan, side="right") - 1
        has = (idx >= 0) & np.isfinite(t_scan)
        pick = order[idx[has]]
        volt[has] = pot["voltage_V"].to_numpy()[pick]
        curr[has] = pot["current_mA_cm2"].to_numpy()[pick]
    out = pd.DataFrame({
        "scan_index": _col(scans, "scan_index").astype(int),
        "cell_time_h": t_scan / 3600.0,
        "current_mA_cm2": curr,
        "voltage_V": volt,
        "contact_fraction_top": _col(scans, "contact_fraction_top"),
        "contact_fraction_bottom": _col(scans, "contact_fraction_bottom"),
        "void_volume_um3": _col(scans, "void_volume_top_um3") + _col(scans, "void_volume_bottom_um3"),
        "crack_volume_um3": _col(scans, "crack_volume_um3"),
        "crack_penetration_fraction": _col(scans, "crack_penetration_fraction"),
    })
    return out.reset_index(drop=True)


def format_assessment(assessment) -> tuple[str, str]:
    """The alarm's level text and a details text (reasons, time to failure).

    Parameters
    ----------
    assessment : sscell_live.alarm.Assessment or None

    Returns
    -------
    (str, str)
        The level exactly as the assessment spells it (``ok``, ``watch``,
        ``imminent``, ``failed``; ``-`` before any assessment), and the
        reasons, one per line, followed by the time to failure in hours
        (with its one-sigma uncertainty when known).
    """
    if assessment is None:
        return "-", "no assessment yet"
    lines = [str(r) for r in (assessment.reasons or [])]
    ttf = assessment.time_to_failure_s
    if ttf is not None and math.isfinite(ttf):
        sigma = getattr(assessment, "time_to_failure_uncertainty_s", None)
        text = f"time to failure: {ttf / 3600:.2f} h"
        if sigma is not None and math.isfinite(sigma):
            text += f" +- {sigma / 3600:.2f} h"
        lines.append(text)
    return str(assessment.level), "\n".join(lines) if lines else "no reasons given"
