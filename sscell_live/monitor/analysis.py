"""Per-scan analysis: frames -> normalised, reconstructed volume -> labels -> metrics.

Everything comes from the scan's documents (:class:`~sscell_live.monitor.frames.RunData`):
the frames by reference, the angles from ``<det>-rotation_angle_deg``, the
rotation centre, pixel size, beam energy and sample-detector distance from
the start document. The segmentation calibration is fitted on the
experiment's first analysed scan and then held (:class:`ExperimentState`).
Nothing here imports the twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sscell_live.registry import METRICS

__all__ = ["AnalysisOptions", "ExperimentState", "ScanResult", "analyse_scan", "load_scan", "scalar_metrics"]


@dataclass
class AnalysisOptions:
    """Settings of the per-scan analysis.

    Attributes
    ----------
    rows : None, 'slabs' or slice
        Detector rows to reconstruct: None (all: right for mini cells),
        ``'slabs'`` (``slab_rows`` rows around each Li|SE face found by
        :func:`sscell_live.recon.find_interfaces` on the raw projections), or
        an explicit slice.
    slab_rows : int
        Half height of each interface slab, rows (``rows='slabs'``).
    delta_beta : float or None
        Paganin delta/beta for phase-contrast scans (50: the value the
        segmentation was tuned with); None disables phase retrieval.
    ring_removal : str or None
        ``reconstruct``'s stripe removal.
    threads : int or None
        Reconstruction threads (None: all cores).
    preset : str or None
        Segmentation preset; default the start document's ``cell['chemistry']``.
    """

    rows: object = None
    slab_rows: int = 40
    delta_beta: float | None = 50.0
    ring_removal: str | None = "sorting"
    threads: int | None = None
    preset: str | None = None


@dataclass
class ExperimentState:
    """What the analysis holds per experiment: the segmentation calibration."""

    experiment_uid: str
    calibration: object = None
    calibration_run_uid: str | None = None
    preset: str | None = None


@dataclass
class ScanResult:
    """Outcome of one analysed scan."""

    run_uid: str
    scan_index: int
    cell_time_s: float
    metrics: dict
    voxel_size_um: float
    rows: tuple
    timings_s: dict = field(default_factory=dict)


def load_scan(run, detector: str | None = None) -> dict:
    """Frames, flats, darks, angles and cell times of a tomo_scan run, read from its files.

    Parameters
    ----------
    run : RunData
    detector : str, optional
        Detector data key (default the start document's ``detector_name``).

    Returns
    -------
    dict
        ``projections`` (angle, row, col), ``theta_rad``, ``flats``, ``darks``,
        ``cell_time_s`` (per projection).

    Raises
    ------
    ValueError
        No projections, or frames and angles of different counts.
    """
    det = detector or run.start.get("detector_name", "detector")
    prim = run.resolve("primary")
    if det not in prim or len(prim[det]) == 0:
        raise ValueError(f"run {run.uid}: no '{det}' frames in the primary stream")
    proj = prim[det]
    theta = np.radians(np.asarray(prim[f"{det}-rotation_angle_deg"], dtype=float))
    if len(theta) != len(proj):
        raise ValueError(f"run {run.uid}: {len(proj)} projections but {len(theta)} angles")
    out = {"projections": proj, "theta_rad": theta,
           "cell_time_s": np.asarray(prim.get(f"{det}-cell_time_s", [np.nan] * len(proj)), dtype=float)}
    for stream, key in (("flat", "flats"), ("dark", "darks")):
        data = run.resolve(stream) if stream in run.datums else {}
        out[key] = data.get(det)
    if out["flats"] is None and "flat_after" in run.datums:
        out["flats"] = run.resolve("flat_after").get(det)
    return out


def _rows(opt: AnalysisOptions, scan: dict, n_rows: int):
    if opt.rows is None:
        return slice(0, n_rows)
    if isinstance(opt.rows, slice):
        return opt.rows
    if opt.rows == "slabs":
        from sscell_live.recon import find_interfaces

        step = max(1, len(scan["projections"]) // 12)
        top, bottom = find_interfaces(scan["projections"][::step], scan["flats"], scan["darks"])
        lo = max(0, int(top) - opt.slab_rows)
        hi = min(n_rows, int(bottom) + opt.slab_rows)
        return slice(lo, hi)
    raise ValueError(f"rows must be None, 'slabs' or a slice, got {opt.rows!r}")


def scalar_metrics(metrics: dict) -> dict:
    """The scalar registry metrics of ``measure``'s output (None -> NaN, bool -> float)."""
    out = {}
    for k, v in metrics.items():
        if k not in METRICS:
            continue
        if v is None:
            out[k] = np.nan
        elif isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            out[k] = float(v)
    return out


def analyse_scan(run, state: ExperimentState, options: AnalysisOptions | None = None,
                 charge_C: float | None = None) -> ScanResult:
    """Reconstruct, segment and measure one tomo_scan run.

    Parameters
    ----------
    run : RunData
        The scan's documents (start and stop received).
    state : ExperimentState
        Per-experiment state; its calibration is fitted here on the first
        scan and held for the others.
    options : AnalysisOptions, optional
    charge_C : float, optional
        Charge throughput up to the scan (unsigned, C), for
        ``crack_fill_fraction_from_charge``.

    Returns
    -------
    ScanResult

    Raises
    ------
    Exception
        Anything the reading, reconstruction, segmentation or measurement
        raises (the worker records it as the scan's status).
    """
    import time

    from sscell_live.metrics import measure
    from sscell_live.recon import reconstruct
    from sscell_live.segment import Calibration

    opt = options or AnalysisOptions()
    start = run.start
    t0 = time.perf_counter()
    scan = load_scan(run)
    t1 = time.perf_counter()
    n_rows = scan["projections"].shape[1]
    rows = _rows(opt, scan, n_rows)
    pixel_um = float(start["pixel_size_um"])
    paganin = None
    if opt.delta_beta and start.get("phase_contrast", False) and "beam" in start and "energy_keV" in start["beam"]:
        paganin = {"energy_keV": float(start["beam"]["energy_keV"]),
                   "distance_mm": float(start.get("sample_detector_distance_mm", 100.0)),
                   "pixel_size_um": pixel_um, "delta_beta": float(opt.delta_beta)}
    vol = reconstruct(scan["projections"], scan["theta_rad"], scan["flats"], scan["darks"],
                      start.get("rotation_centre_px"), rows=rows, paganin=paganin,
                      ring_removal=opt.ring_removal, threads=opt.threads)
    vol = np.asarray(vol, dtype=np.float32)
    if not np.isfinite(vol).all():
        raise ValueError(f"run {run.uid}: the reconstruction has non-finite voxels (NaN or inf frames?)")
    t2 = time.perf_counter()
    preset = opt.preset or state.preset or start.get("cell", {}).get("chemistry")
    if state.calibration is None:
        state.calibration = Calibration.fit(vol, pixel_um, preset=preset)
        state.calibration_run_uid = run.uid
        state.preset = preset
    labels = state.calibration.apply(vol)
    t3 = time.perf_counter()
    j = start.get("current_mA_cm2")
    metrics = measure(labels, pixel_um, current_mA_cm2=j if j else None, charge_C=charge_C)
    t4 = time.perf_counter()
    ct = scan["cell_time_s"]
    cell_time = float(np.nanmean(ct)) if np.isfinite(ct).any() else float("nan")
    return ScanResult(run.uid, int(start.get("scan_index", -1)), cell_time, metrics, pixel_um,
                      (rows.start, rows.stop),
                      {"read": t1 - t0, "reconstruct": t2 - t1, "segment": t3 - t2, "measure": t4 - t3})
