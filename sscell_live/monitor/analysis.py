"""Per-scan analysis: frames -> normalised, reconstructed volume -> labels -> metrics.

Everything comes from the scan's documents (:class:`~sscell_live.monitor.frames.RunData`):
the frames by reference, the angles from ``<det>-rotation_angle_deg``, the
rotation centre, pixel size, beam energy and sample-detector distance from
the start document. The segmentation calibration is fitted on the
experiment's first analysed scan and then held (:class:`ExperimentState`).
Nothing here imports the twin.

Bad data (robustness)
---------------------
A scan is read frame by frame when its files do not give every planned
frame: frames the file does not hold (a detector that dropped them, a file
cut short), frames whose file cannot be opened (missing, corrupt), frames
with NaN or infinite pixels, and projections whose angle is missing are
*unusable*. If at most :attr:`AnalysisOptions.max_bad_fraction` of the
planned projections are unusable the scan is reconstructed from the others
and :attr:`ScanResult.warnings` names what was dropped; otherwise, or if no
flat or no dark frame is usable, :class:`ScanDataError` says which frames,
which file and why. A run that did not end with ``exit_status == 'success'``
(aborted, failed) is never analysed: its partial scan would put a wrong
point into the alarm's history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from sscell_live.registry import METRICS

__all__ = ["AnalysisOptions", "ExperimentState", "ScanDataError", "ScanResult", "analyse_scan", "load_scan",
           "scalar_metrics"]


class ScanDataError(ValueError):
    """A scan whose data cannot be analysed (aborted run, too many missing, corrupt or NaN frames).

    The message names the run, the stream, the frames and the file.
    """


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
    max_bad_fraction : float
        Largest fraction (0-1) of a scan's planned projections that may be
        unusable (missing, unreadable, non-finite) for the scan still to be
        reconstructed from the rest (with a warning); above it the scan is a
        :class:`ScanDataError`. Measured on a 24-angle ``lps`` mini scan: a
        contiguous 10 % gap moved the contact fractions by < 0.01 (about the
        scan-to-scan scatter) and the SE porosity by 0.01; 15 % moved them
        by 0.02.
    """

    rows: object = None
    slab_rows: int = 40
    delta_beta: float | None = 50.0
    ring_removal: str | None = "sorting"
    threads: int | None = None
    preset: str | None = None
    max_bad_fraction: float = 0.1


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
    #: What was wrong with the data but did not stop the analysis (dropped frames, named).
    warnings: list = field(default_factory=list)
    #: The reconstructed volume (row, y, x) and its labels: published as the analysis run's
    #: interface slabs, then dropped by the monitor (memory).
    volume: object = field(default=None, repr=False)
    labels: object = field(default=None, repr=False)


def load_scan(run, detector: str | None = None, *, max_bad_fraction: float = 0.1) -> dict:
    """Frames, flats, darks, angles and cell times of a tomo_scan run, read from its files.

    Parameters
    ----------
    run : RunData
    detector : str, optional
        Detector data key (default the start document's ``detector_name``).
    max_bad_fraction : float
        Largest fraction of the planned projections that may be unusable
        (see the module notes); the rest are returned with a warning.

    Returns
    -------
    dict
        ``projections`` (angle, row, col), ``theta_rad``, ``flats``, ``darks``,
        ``cell_time_s`` (per projection), ``warnings`` (list of str, empty
        when every planned frame was read and finite).

    Raises
    ------
    ScanDataError
        No usable projection, more than ``max_bad_fraction`` of them
        unusable, or no usable flat/dark frame where some were planned; the
        message names the frames, the file and the cause.
    """
    if not 0.0 <= max_bad_fraction < 1.0:
        raise ValueError(f"max_bad_fraction must be in [0, 1), got {max_bad_fraction!r}")
    det = detector or run.start.get("detector_name", "detector")
    keys = (det, f"{det}-rotation_angle_deg", f"{det}-cell_time_s")
    planned = _planned_projections(run.start)
    prim, problems = _read_stream(run, "primary", keys, planned)
    n_planned = max(planned or 0, len(prim[det]) + prim["_n_bad"])
    n_bad = n_planned - len(prim[det])
    if n_planned == 0:
        raise ScanDataError(f"run {run.uid}: no '{det}' frames in the primary stream")
    if len(prim[det]) == 0 or n_bad > max_bad_fraction * n_planned:
        why = "; ".join(problems) or f"no '{det}' frames in the primary stream"
        raise ScanDataError(f"run {run.uid}: {n_bad} of {n_planned} projections unusable "
                            f"(at most {max_bad_fraction:.0%} may be): {why}")
    warnings = []
    if n_bad:
        warnings.append(f"{n_bad} of {n_planned} projections unusable, reconstructed from the other "
                        f"{len(prim[det])}: " + "; ".join(problems))
    out = {"projections": prim[det], "theta_rad": np.radians(prim[keys[1]]), "cell_time_s": prim[keys[2]]}
    for stream, key, count in (("flat", "flats", "num_flats"), ("dark", "darks", "num_darks")):
        frames, planned_n = None, int(run.start.get(count) or 0)
        for s in (stream, "flat_after") if stream == "flat" else (stream,):
            if s not in run.datums:
                continue
            data, probs = _read_stream(run, s, (det,), planned_n if s == stream else None)
            if probs:
                warnings.append(f"{data['_n_bad']} {s} frame(s) unusable: " + "; ".join(probs))
            if len(data[det]):
                frames = data[det]
                break
        if frames is None and (planned_n or key == "flats"):
            raise ScanDataError(f"run {run.uid}: no usable {key[:-1]} frame (planned {planned_n}); "
                                + "; ".join(w for w in warnings if stream in w))
        out[key] = frames
    out["warnings"] = warnings
    return out


def _planned_projections(start: dict) -> int | None:
    """Projections the start document announces (``angles_deg = [first, end, count]``), or None."""
    try:
        n = int(start["angles_deg"][2])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return n if n > 0 else None


def _read_stream(run, stream: str, keys: tuple, planned: int | None):
    """Usable frames of a stream: ``({key: ndarray, '_n_bad': int}, problems)``.

    Fast path: :meth:`RunData.resolve` (the run's own reader). If it fails,
    or gives keys of different lengths or fewer frames than planned, every
    StreamDatum is read on its own, keeping what the files hold, and frames
    are paired across keys by sequence number. Frames with any non-finite
    pixel (or angle) are dropped. ``keys[0]`` is the frame key; ``keys[1:]``
    are per-frame scalars (the first of them required, the others NaN where
    missing).
    """
    problems = []
    data = None
    try:
        res = run.resolve(stream)
        n = len(res[keys[0]]) if keys[0] in res else -1
        if n >= 0 and all(k in res for k in keys[:2]) and all(len(res[k]) == n for k in keys if k in res) \
                and (planned is None or n == planned):
            data = {k: np.asarray(res[k]) if k in res else np.full(len(res[keys[0]]), np.nan) for k in keys}
    except Exception:  # noqa: BLE001 - diagnosed frame by frame below
        data = None
    if data is None:
        data, problems = _salvage(run, stream, keys, planned)
    n_in = len(data[keys[0]])
    good = np.ones(n_in, dtype=bool)
    for k in keys[:2] if n_in else ():
        a = data[k]
        if a.dtype.kind == "f" or a.dtype.kind == "c":
            good &= np.isfinite(a.reshape(n_in, -1)).all(axis=1)
        elif a.dtype.kind not in "iub":
            good &= np.array([np.isfinite(np.asarray(v, dtype=float)).all() for v in a], dtype=bool)
    seqs = data.pop("_seq", np.arange(1, n_in + 1))
    n_missing = data.pop("_n_missing", 0)
    if not good.all():
        bad_seq = np.asarray(seqs)[~good]
        problems.append(f"{stream}: {len(bad_seq)} frame(s) with NaN or infinite values dropped "
                        f"(seq_num {_ranges(bad_seq)})")
        data = {k: v[good] for k, v in data.items()}
    data["_n_bad"] = n_missing + int((~good).sum())
    return data, problems


def _salvage(run, stream: str, keys: tuple, planned: int | None):
    """Read a stream StreamDatum by StreamDatum, keeping every frame a file still holds.

    Files are read here (a datum cut short keeps the frames the file holds);
    a run with another frame source (``run.frames``, e.g. Tiled on replay)
    is read through it, datum by datum.
    """
    source = getattr(run, "frames", None)
    if getattr(source, "__name__", "read_file_frames") == "read_file_frames":
        source = None
    per_key = {k: {} for k in keys}
    unreadable = {}  # (file, error) -> ({keys}, [seq_nums])
    cut_short = {}  # (key, file, rows held) -> seq_nums
    for resource, datum in run.datums.get(stream, []):
        key = resource.get("data_key")
        if key not in per_key:
            continue
        s0, s1 = int(datum["seq_nums"]["start"]), int(datum["seq_nums"]["stop"])
        try:
            if source is None:
                arr, held = _read_available(resource, datum)
            else:
                arr = np.asarray(source(stream, resource, datum))
                held = None
        except Exception as exc:  # noqa: BLE001 - named in the problem list
            entry = unreadable.setdefault((urlparse(resource.get("uri", "")).path, f"{type(exc).__name__}: {exc}"),
                                          (set(), set()))
            entry[0].add(key)
            entry[1].update(range(s0, s1))
            continue
        for i, v in enumerate(arr):
            per_key[key][s0 + i] = v
        if len(arr) < s1 - s0:
            cut_short.setdefault((key, _where(resource), held), []).extend(range(s0 + len(arr), s1))
    problems = [f"{stream} seq_num {_ranges(q)}: cannot read {path} ({err}; keys {', '.join(sorted(k))})"
                for (path, err), (k, q) in unreadable.items()]
    problems += [f"{stream} '{key}' seq_num {_ranges(q)} missing: "
                 + (f"{where} holds only {held} frames" if held is not None else f"the frame source lacks them ({where})")
                 for (key, where, held), q in cut_short.items()]
    seqs = sorted(set(per_key[keys[0]]).intersection(*(per_key[k] for k in keys[1:2])))
    announced = {q for k in keys[:2] for q in per_key[k]}
    announced |= {q for _, qs in unreadable.values() for q in qs} | {q for qs in cut_short.values() for q in qs}
    n_expected = max(planned or 0, len(announced))
    if n_expected > len(announced):
        problems.append(f"{stream}: {n_expected - len(announced)} of {n_expected} planned frames never announced "
                        f"(no StreamDatum documents for them)")
    no_angle = sorted(set(per_key[keys[0]]) - set(seqs))
    if no_angle:
        problems.append(f"{stream}: seq_num {_ranges(no_angle)} have a frame but no '{keys[1]}' value")
    data = {"_seq": np.asarray(seqs, dtype=int), "_n_missing": n_expected - len(seqs)}
    if seqs:
        data[keys[0]] = np.stack([np.asarray(per_key[keys[0]][q]) for q in seqs])
    else:
        data[keys[0]] = np.empty((0, 0, 0))
    for k in keys[1:]:
        data[k] = np.array([per_key[k].get(q, np.nan) for q in seqs], dtype=float)
    return data, problems


def _read_available(resource: dict, datum: dict):
    """The rows of a StreamDatum's range that its HDF5 file holds: ``(array, rows the dataset holds)``."""
    import h5py

    if resource.get("mimetype", "application/x-hdf5") != "application/x-hdf5":
        raise ValueError(f"unsupported StreamResource mimetype {resource.get('mimetype')!r}")
    path = urlparse(resource["uri"]).path
    start, stop = int(datum["indices"]["start"]), int(datum["indices"]["stop"])
    try:
        f = h5py.File(path, "r", swmr=True)
    except OSError:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}") from None
        f = h5py.File(path, "r")  # a file not written in SWMR mode
    with f:
        ds = f[resource["parameters"]["dataset"]]
        held = int(ds.shape[0])
        return np.asarray(ds[start:min(stop, held)]) if held > start else np.empty((0,) + ds.shape[1:]), held


def _where(resource: dict) -> str:
    return f"{urlparse(resource.get('uri', '')).path}:{resource.get('parameters', {}).get('dataset')}"


def _ranges(values) -> str:
    """``[1, 2, 3, 7]`` -> ``'1-3, 7'``."""
    v = sorted(int(x) for x in values)
    out, i = [], 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[j + 1] == v[j] + 1:
            j += 1
        out.append(str(v[i]) if i == j else f"{v[i]}-{v[j]}")
        i = j + 1
    return ", ".join(out)


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
    ScanDataError
        The run did not end successfully (aborted or failed: a partial scan
        is never analysed), or its frames are unusable (see :func:`load_scan`).
    Exception
        Anything the reconstruction, segmentation or measurement raises (the
        worker records it as the scan's status).

    Notes
    -----
    A scan reconstructed without some of its frames (``ScanResult.warnings``
    not empty) never becomes the experiment's held calibration: if it is the
    first, it is segmented with a calibration fitted on it alone and the
    next complete scan is fitted again.
    """
    import time

    from sscell_live.metrics import measure
    from sscell_live.recon import reconstruct
    from sscell_live.segment import Calibration

    opt = options or AnalysisOptions()
    start = run.start
    stop = run.stop or {}
    if stop.get("exit_status", "success") != "success":
        reason = stop.get("reason") or "no reason given"
        raise ScanDataError(f"run {run.uid} ended with exit_status {stop.get('exit_status')!r} ({reason}): "
                            f"a partial scan is not analysed")
    t0 = time.perf_counter()
    scan = load_scan(run, max_bad_fraction=opt.max_bad_fraction)
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
    calibration = state.calibration
    if calibration is None:
        calibration = Calibration.fit(vol, pixel_um, preset=preset)
        if not scan["warnings"]:  # hold only a calibration fitted on a complete scan
            state.calibration = calibration
            state.calibration_run_uid = run.uid
            state.preset = preset
    labels = calibration.apply(vol)
    t3 = time.perf_counter()
    j = start.get("current_mA_cm2")
    metrics = measure(labels, pixel_um, current_mA_cm2=j if j else None, charge_C=charge_C)
    t4 = time.perf_counter()
    ct = scan["cell_time_s"]
    cell_time = float(np.nanmean(ct)) if np.isfinite(ct).any() else float("nan")
    return ScanResult(run.uid, int(start.get("scan_index", -1)), cell_time, metrics, pixel_um,
                      (rows.start, rows.stop),
                      {"read": t1 - t0, "reconstruct": t2 - t1, "segment": t3 - t2, "measure": t4 - t3},
                      list(scan["warnings"]), volume=vol, labels=labels)
