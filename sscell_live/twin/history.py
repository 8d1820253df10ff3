"""Measured-looking histories of twin experiments, without imaging (the fast path).

The alarm is trained and benchmarked on what a real experiment would give
it: potentiostat samples with noise (and the ~10 mV shift X-rays cause during
exposure, SCIENCE.md 2) and per-scan metrics with the noise the imaging path
measures, taken from the twin's bookkeeping. The true failure time comes
along separately, for scoring only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import ndimage

from ..registry import Semantic
from .cell import CellTwin
from .geometry import CellGeometry, mini
from .state import FULL_CONNECTIVITY, li_path

__all__ = ["MetricNoise", "Protocol", "PROTOCOLS", "simulate_history", "scan_truth", "ExperimentHistory",
           "LSPS_SLAB_SCANS"]

_SCAN_METRICS = (
    "contact_fraction_top",
    "contact_fraction_bottom",
    "crack_penetration_fraction",
    "li_penetration_fraction",
    "li_path_connects",
    "crack_volume_um3",
)


@lru_cache(maxsize=8)
def _radius_um(n_lateral: int, voxel_size_um: float) -> np.ndarray:
    r = CellGeometry.lateral_radius_um(mini(n_lateral, voxel_size_um))
    r.setflags(write=False)  # shared between calls: nobody may write into it
    return r


@dataclass(frozen=True)
class _CachedGeometry(CellGeometry):
    """A mini geometry whose column radii are computed once.

    The twin asks for its pellet mask thousands of times per experiment and
    recomputes a meshgrid each time (about a third of the fast path's time);
    the values are identical, only cached.
    """

    def lateral_radius_um(self):
        return _radius_um(self.n_lateral, self.voxel_size_um)


def _cached_mini(n_lateral: int) -> CellGeometry:
    g = mini(n_lateral)
    return _CachedGeometry(**{f: getattr(g, f) for f in g.__dataclass_fields__})


def scan_truth(twin: CellTwin) -> dict:
    """The twin's truth of the per-scan metrics the alarm reads, and nothing else.

    Counted on the rendered voxel truth exactly as :func:`.state.bookkeeping`
    counts them (``twin.truth()`` gives the same values), without the maps,
    void counts and crack widths the alarm does not read: a third of the
    cost of ``truth()``.
    """
    g = twin.geometry
    sem = twin.semantic()
    pellet = g.pellet_mask()
    n_cols = int(pellet.sum())
    out = {}
    for side, void_c, li_c in (("top", Semantic.VOID_TOP, Semantic.LI_TOP),
                               ("bottom", Semantic.VOID_BOTTOM, Semantic.LI_BOTTOM)):
        contact = pellet & ~(sem == void_c).any(axis=0) & (sem == li_c).any(axis=0)
        out[f"contact_fraction_{side}"] = float(contact.sum() / n_cols)
    se = sem[g.se_top_index : g.se_bottom_index]
    crack_vox = (se == Semantic.CRACK) | (se == Semantic.LI_IN_CRACK)
    out["crack_volume_um3"] = float(crack_vox.sum() * g.voxel_size_um**3)
    pen = 0.0
    if crack_vox.any():
        labels, count = ndimage.label(crack_vox, structure=FULL_CONNECTIVITY)
        for sl in ndimage.find_objects(labels):
            z0, z1 = sl[0].start, sl[0].stop
            if z0 == 0:
                pen = max(pen, z1 / g.se_voxels)
            if z1 == g.se_voxels:
                pen = max(pen, (g.se_voxels - z0) / g.se_voxels)
    out["crack_penetration_fraction"] = float(pen)
    connects, li_pen = li_path(se, g.se_voxels)
    out["li_path_connects"] = connects
    out["li_penetration_fraction"] = float(li_pen)
    return out


@dataclass(frozen=True)
class MetricNoise:
    """One-sigma measurement noise of the imaging path and the potentiostat."""

    contact_fraction: float = 0.01  # absolute; segmentation of a reconstructed interface slab
    penetration_fraction: float = 0.02  # about one 1.5 um voxel of a 90 um pellet
    crack_volume_rel: float = 0.1
    voltage_V: float = 0.002
    xray_shift_V: float = 0.01  # exposure shifts the voltage by about 10 mV
    bulk_resistance_rel: float = 0.02


@dataclass(frozen=True)
class Protocol:
    """Galvanostatic cycling with scans (SCIENCE.md section 2)."""

    half_cycle_s: float
    scan_every_s: float  # a scan after every this much cell time under current
    sample_period_s: float = 60.0
    current_on_during_scan: bool = True
    cutoff_V: float = 4.0


#: Per preset: the study's protocol (Lewis-LSPS: scans every 15 min while current
#: flows; Hao-LPS: 30-min half cycles, current off during scans; Dixit-LLZO: hours).
PROTOCOLS = {
    "lsps": Protocol(half_cycle_s=5 * 3600.0, scan_every_s=900.0, current_on_during_scan=True, cutoff_V=4.0),
    "lps": Protocol(half_cycle_s=1800.0, scan_every_s=1800.0, current_on_during_scan=False, cutoff_V=10.0),
    "llzo": Protocol(half_cycle_s=3600.0, scan_every_s=1800.0, current_on_during_scan=False, cutoff_V=10.0),
}

#: Lewis-LSPS cycling with an interface-slab scan every 5 min instead of a full
#: scan every 15 (a few hundred projections of the two interface slabs, not the
#: 7-10 min of a full 1500-2400-projection scan, SCIENCE.md 1). At 1.3 mA/cm2 a
#: cell can run away 10-25 min after a current reversal: 15-min scans see the
#: stripping interface's contact loss at most once before it, 5-min scans three
#: to five times, enough for a trend without knowing the cell's stripping limit.
LSPS_SLAB_SCANS = Protocol(half_cycle_s=5 * 3600.0, scan_every_s=300.0, current_on_during_scan=True, cutoff_V=4.0)


@dataclass
class ExperimentHistory:
    """A simulated measured history and its (hidden) outcome."""

    history: pd.DataFrame
    failed: bool
    failure_time_s: float | None
    mode: str | None
    scan_times_s: list = field(default_factory=list)
    cell: dict = field(default_factory=dict)


def simulate_history(chemistry: str, seed: int, current_mA_cm2: float, horizon_s: float, *,
                     n_lateral: int = 64, noise: MetricNoise | None = None,
                     protocol: Protocol | None = None,
                     measure_scan: Callable[[CellTwin], dict] | None = None,
                     scans_until_s: float | None = None) -> ExperimentHistory:
    """Cycle a twin at ``+-current_mA_cm2`` until it fails or the horizon, recording a noisy history.

    Parameters
    ----------
    chemistry : str
        ``lsps``, ``lps`` or ``llzo``.
    seed : int
        Twin seed (also seeds the measurement noise).
    current_mA_cm2 : float
        Magnitude of the current density; half cycles alternate its sign.
    horizon_s : float
        Cell time to stop at if the cell has not failed, s.
    n_lateral : int
        Mini-cell width, voxels.
    noise : MetricNoise, optional
    protocol : Protocol, optional
        Default: the preset's protocol from ``PROTOCOLS``.
    measure_scan : callable, optional
        The full imaging path: called with the twin at every scan, returns
        the scan's metrics under the registry names (for example: simulate
        a scan, reconstruct, segment, measure); its values replace the
        noisy truth of the fast path. The fast path's noise is drawn all the
        same, so the potentiostat record is identical with and without it.
    scans_until_s : float, optional
        No scans after this cell time (s): the potentiostat alone follows
        the cell on to ``horizon_s`` (a benchmark's margin that only settles
        whether the cell fails).

    Returns
    -------
    ExperimentHistory
        ``cell`` holds what the start document gives the monitor: area,
        cut-off, chemistry and the protocol's current, half cycle and scan
        interval.
    """
    if not current_mA_cm2 > 0:
        raise ValueError(f"current_mA_cm2 is a magnitude and must be > 0, got {current_mA_cm2!r}")
    noise = noise or MetricNoise()
    proto = protocol or PROTOCOLS[chemistry]
    twin = CellTwin.create(chemistry, _cached_mini(n_lateral), seed)
    rng = np.random.default_rng([seed, 77])
    rows: list[dict] = []
    scan_times: list[float] = []
    failure, mode = None, None
    since_scan = 0.0
    half = 0
    t_half = 0.0

    def sample(j: float, xray: bool) -> float:
        """Log one potentiostat sample; returns the true (noise-free) voltage, V."""
        v_true = twin.voltage(j).voltage_V
        v = v_true + rng.normal(0, noise.voltage_V) + (noise.xray_shift_V if xray else 0.0)
        rows.append({"cell_time_s": twin.time_s, "voltage_V": v, "current_mA_cm2": j,
                     "bulk_resistance_ohm": twin.bulk_resistance_ohm() * (1 + rng.normal(0, noise.bulk_resistance_rel))})
        return v_true

    def scan(j_during: float) -> None:
        truth = scan_truth(twin)
        row = {"cell_time_s": twin.time_s, "current_mA_cm2": j_during}
        for k in _SCAN_METRICS:
            val = float(truth[k])
            if k.startswith("contact"):
                val = float(np.clip(val + rng.normal(0, noise.contact_fraction), 0, 1))
            elif k.endswith("penetration_fraction"):
                val = float(np.clip(val + rng.normal(0, noise.penetration_fraction), 0, 1)) if val > 0 else 0.0
            elif k == "crack_volume_um3":
                val = max(val * (1 + rng.normal(0, noise.crack_volume_rel)), 0.0)
            row[k] = val
        if measure_scan is not None:
            measured = measure_scan(twin)
            row.update({k: float(measured.get(k, np.nan)) if measured.get(k) is not None else np.nan
                        for k in _SCAN_METRICS})
        rows.append(row)
        scan_times.append(twin.time_s)

    scan(0.0)  # the pristine scan
    while twin.time_s < horizon_s:
        j = current_mA_cm2 if half % 2 == 0 else -current_mA_cm2
        step = min(proto.sample_period_s, proto.half_cycle_s - t_half, proto.scan_every_s - since_scan)
        twin.advance(j, step)
        t_half += step
        since_scan += step
        v = sample(j, xray=False)
        if twin.shorted:
            failure, mode = twin.state.shorted_at_s, "short"
        elif abs(v) >= proto.cutoff_V:
            failure, mode = twin.time_s, "cutoff"
        if failure is not None:
            # the potentiostat keeps logging a little after the failure
            for _ in range(int(900 // proto.sample_period_s)):
                twin.advance(j, proto.sample_period_s)
                sample(j, xray=False)
            break
        if since_scan >= proto.scan_every_s - 1e-6:
            since_scan = 0.0
            if scans_until_s is None or twin.time_s <= scans_until_s + 1e-6:
                scan(j if proto.current_on_during_scan else 0.0)
                if proto.current_on_during_scan:
                    sample(j, xray=True)
        if t_half >= proto.half_cycle_s - 1e-6:
            t_half, half = 0.0, half + 1
    cell = {"area_cm2": twin.geometry.area_cm2, "cutoff_V": proto.cutoff_V, "chemistry": chemistry,
            "current_mA_cm2": float(current_mA_cm2), "half_cycle_s": proto.half_cycle_s,
            "scan_interval_s": proto.scan_every_s}
    return ExperimentHistory(pd.DataFrame(rows), failure is not None, failure, mode, scan_times, cell)
