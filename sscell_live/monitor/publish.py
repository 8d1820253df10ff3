"""Analysis results as bluesky documents: one analysis run per analysed scan.

Why one run per scan (not one per experiment with an event per scan)
---------------------------------------------------------------------
- **Linked at the start.** The start document names the raw scan it
  analyses (``raw_run_uid``), so a catalog search on the start metadata
  finds the analysis of any raw run (:func:`find_analysis_runs`) without
  reading event tables; an experiment-wide run would only learn its raw
  uids one event at a time.
- **Complete and durable per scan.** Each run is closed (stop document)
  as soon as its scan is analysed: TiledWriter flushes at the stop, a crash
  loses at most the scan in progress, and a reader never sees a
  half-written experiment run that may never be closed.
- **Shapes per run.** Maps and slabs have per-scan shapes (slab heights,
  the number of voids or cracks); a run per scan gives each its own
  descriptor instead of padding.
- **Re-analysis coexists.** A replay (new options, new code) adds new runs
  next to the old ones, told apart by ``analysis_version``, ``options`` and
  ``replay`` in their start documents.

The experiment view is a search away: every analysis run carries the
``experiment_uid`` and ``scan_index`` of its raw scan.

Run layout (``run_kind = "scan_analysis"``)
-------------------------------------------
start
    ``raw_run_uid``, ``raw_run_uids`` (list), ``experiment_uid``,
    ``scan_index``, ``analysis_version``, ``analysis_schema_version``,
    ``options`` (:class:`~sscell_live.monitor.analysis.AnalysisOptions` as
    JSON), ``calibration_run_uid``, ``voxel_size_um``, ``recon_rows``,
    ``chemistry``, ``analysis_state`` (``ok`` or ``error``),
    ``analysis_warnings`` (frames the analysis had to drop), plus caller
    metadata (for example ``replay``).
stream ``primary`` (one event)
    every scalar registry metric of the scan (registry names and units in
    the descriptor; NaN where undefined; booleans as 0/1), ``scan_index``,
    ``cell_time_s``, ``current_mA_cm2`` (nominal during the scan),
    ``charge_passed_abs_C``, the alarm after the scan (``alarm_level``,
    ``alarm_level_value`` 0-3, ``alarm_reasons`` as a JSON list of str,
    ``time_to_failure_s``, ``time_to_failure_uncertainty_s``,
    ``charge_to_failure_C``; NaN where not estimated), analysis wall times
    (``timing_<step>_s``), and the first detector row of each published slab.
stream ``maps`` (one event)
    every array metric with registry units: ``maps_yx`` stacks the per-column
    maps of the field of view (contact maps as 0/1, void heights, Li
    thickness, sub-surface porosity; ``dims`` map, y, x; the data key's
    ``map_names`` and ``map_units`` say which is which, :func:`read_maps`
    unstacks them), the others (porosity-factor maps, void sizes and crack
    widths when non-empty) under their registry names. Stacking is for the
    catalog: every array is a node Tiled writes and closes with its own
    requests (about three each), which dominated the cost of a run.
stream ``slabs`` (no events; StreamResource/StreamDatum)
    the reconstructed interface slabs (``recon_slab_top``,
    ``recon_slab_bottom``, float32, z y x) and their labels
    (``labels_slab_top``, ``labels_slab_bottom``, uint8) in an external
    HDF5 file ``<slab_directory>/<experiment_uid>/<analysis uid>.h5``,
    written before the documents (the directory must be readable by the
    Tiled server: one of its ``readable_storage`` folders). Only when the
    scan result carries its volume and a slab directory is configured.
stop
    ``exit_status`` ``success``, or ``fail`` with the analysis error as
    ``reason`` (a failed analysis still gets a run: start + stop).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
from event_model import compose_run
from event_model.documents.stream_datum import StreamRange

from sscell_live import __version__
from sscell_live.registry import METRICS

__all__ = [
    "ANALYSIS_RUN_KIND",
    "ANALYSIS_SCHEMA_VERSION",
    "Publisher",
    "analysis_version",
    "find_analysis_runs",
    "interface_slabs",
    "options_md",
    "read_maps",
]

#: ``run_kind`` of analysis runs (raw runs are ``tomo_scan`` / ``galvanostatic_step``).
ANALYSIS_RUN_KIND = "scan_analysis"
#: Version of the run layout above; bump when streams or keys change meaning.
ANALYSIS_SCHEMA_VERSION = 1

_SOURCE = "sscell_live.monitor"
#: Arrays up to this many elements stay in TiledWriter's table (its MAX_ARRAY_SIZE), larger ones become arrays.
_TABLE_ARRAY_SIZE = 16
_ALARM_VALUES = {"ok": 0, "watch": 1, "imminent": 2, "failed": 3}


def analysis_version() -> str:
    """Code and layout version written into every analysis run."""
    return f"sscell_live {__version__} / analysis schema {ANALYSIS_SCHEMA_VERSION}"


def _json_safe(value):
    """Metadata value -> JSON-serialisable builtins (slices as [start, stop, step])."""
    if is_dataclass(value) and not isinstance(value, type):
        return _json_safe(asdict(value))
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, slice):
        return [value.start, value.stop, value.step]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return repr(value)


def options_md(options) -> dict:
    """:class:`AnalysisOptions` (or a mapping) as start-document metadata."""
    return _json_safe(options) if options is not None else {}


def _number(value) -> float:
    if value is None:
        return float("nan")
    return float(value)


def _scalar_key(unit: str, dtype: str = "number", numpy_dtype: str = "<f8") -> dict:
    return {"source": _SOURCE, "dtype": dtype, "dtype_numpy": numpy_dtype, "shape": [], "units": unit}


def _split_metrics(metrics: dict) -> tuple[dict, dict]:
    """Registry metrics -> (scalars as float, arrays as ndarray); None scalars become NaN, empty arrays are left out."""
    scalars, arrays = {}, {}
    for name, value in metrics.items():
        if name not in METRICS:
            continue
        if value is None:
            if name not in _ARRAY_METRICS:
                scalars[name] = float("nan")
            continue
        if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
            scalars[name] = float(value)
            continue
        arr = np.asarray(value)
        if arr.ndim >= 1 and arr.size > 0 and arr.dtype.kind in "biuf":
            arrays[name] = arr
    return scalars, arrays


#: Registry metrics that are arrays (maps and distributions): never padded to NaN scalars.
_ARRAY_METRICS = {n for n in METRICS if "map" in n or n.startswith(("void_sizes", "crack_widths"))}


def _column_maps(arrays: dict) -> dict:
    """The 2D maps over the field of view's columns (the shape of the contact maps), in registry order."""
    ref = arrays.get("contact_map_top", arrays.get("contact_map_bottom"))
    if ref is None:
        shapes = [a.shape for a in arrays.values() if a.ndim == 2]
        if not shapes:
            return {}
        ref_shape = max(shapes, key=lambda sh: sh[0] * sh[1])
    else:
        ref_shape = ref.shape
    return {k: a for k, a in arrays.items() if a.ndim == 2 and a.shape == ref_shape}


def read_maps(run) -> dict:
    """Every map of an analysis run read back from Tiled, by registry name.

    Parameters
    ----------
    run : BlueskyRun client
        An analysis run (``run_kind`` ``scan_analysis``).

    Returns
    -------
    dict
        name -> ndarray (the per-column maps unstacked from ``maps_yx``,
        contact maps as bool).
    """
    maps = run["maps"]
    out = {}
    keys = maps.descriptors[0]["data_keys"]
    for key in keys:
        if key == "maps_yx":
            stack = np.asarray(maps["maps_yx"].read())[0]
            for name, arr in zip(keys["maps_yx"]["map_names"], stack):
                out[name] = arr.astype(bool) if METRICS[name].unit == "bool" else arr
        else:
            arr = np.asarray(maps[key].read())[0]
            shape = keys[key].get("map_shape")
            out[key] = arr.reshape(shape) if shape else arr
    return out


def interface_slabs(volume: np.ndarray, metrics: dict, voxel_size_um: float, half_rows: int) -> dict:
    """Rows of a reconstructed volume around each Li|SE interface.

    Parameters
    ----------
    volume : ndarray (z, y, x)
        The reconstructed rows (or their labels), z = 0 at the first
        reconstructed detector row.
    metrics : dict
        ``measure`` output of that volume: ``interface_position_top_um`` and
        ``interface_position_bottom_um`` (um from the volume's first row).
    voxel_size_um : float
    half_rows : int
        Rows kept on each side of an interface.

    Returns
    -------
    dict
        ``top`` / ``bottom`` -> ``(z0, slab)`` with ``slab = volume[z0:z0 + 2 * half_rows]``
        (clipped to the volume); an interface without a position is left out.
    """
    out = {}
    nz = volume.shape[0]
    for side in ("top", "bottom"):
        pos = metrics.get(f"interface_position_{side}_um")
        if pos is None or not np.isfinite(pos):
            continue
        zc = int(round(float(pos) / float(voxel_size_um)))
        z0, z1 = max(0, zc - int(half_rows)), min(nz, zc + int(half_rows))
        if z1 > z0:
            out[side] = (z0, volume[z0:z1])
    return out


class Publisher:
    """Composes the analysis run of a scan (see the module docstring).

    Parameters
    ----------
    slab_directory : path, optional
        Where slab HDF5 files go (a folder the Tiled server may read); None:
        no ``slabs`` stream.
    slab_half_rows : int
        Rows kept on each side of an interface in a slab (16 rows: 24 um at
        1.5 um voxels, 64 um at 4 um: the Li band, voids and interphase).
    md : dict, optional
        Extra start-document metadata of every analysis run (``replay``...).
    """

    def __init__(self, slab_directory=None, *, slab_half_rows: int = 16, md: dict | None = None):
        self.slab_directory = None if slab_directory is None else Path(slab_directory).resolve()
        self.slab_half_rows = int(slab_half_rows)
        if self.slab_half_rows < 1:
            raise ValueError(f"slab_half_rows must be >= 1, got {slab_half_rows!r}")
        self.md = dict(md or {})

    def _start_md(self, raw_start: dict, options, calibration_run_uid, state: str) -> dict:
        md = {
            "run_kind": ANALYSIS_RUN_KIND,
            "plan_name": "sscell_live.monitor",
            "raw_run_uid": raw_start["uid"],
            "raw_run_uids": [raw_start["uid"]],
            "experiment_uid": raw_start.get("experiment_uid"),
            "scan_index": raw_start.get("scan_index"),
            "analysis_version": analysis_version(),
            "analysis_schema_version": ANALYSIS_SCHEMA_VERSION,
            "options": options_md(options),
            "calibration_run_uid": calibration_run_uid,
            "chemistry": (raw_start.get("cell") or {}).get("chemistry"),
            "analysis_state": state,
        }
        md.update(_json_safe(self.md))
        return md

    def failed_run(self, raw_start: dict, error: str, *, options=None, calibration_run_uid=None) -> list:
        """Documents of the analysis run of a scan whose analysis failed (start and a ``fail`` stop)."""
        bundle = compose_run(metadata=self._start_md(raw_start, options, calibration_run_uid, "error"))
        stop = bundle.compose_stop(exit_status="fail", reason=str(error)[:2000])
        return [("start", bundle.start_doc), ("stop", stop)]

    def documents(self, raw_start: dict, result, *, assessment=None, options=None, calibration_run_uid=None,
                  charge_C: float | None = None, volume=None, labels=None) -> list:
        """Documents of the analysis run of one analysed scan.

        Parameters
        ----------
        raw_start : dict
            The raw scan's start document.
        result : ScanResult
            Its analysis (``metrics``, ``cell_time_s``, ``voxel_size_um``,
            ``rows``, ``timings_s``).
        assessment : sscell_live.alarm.Assessment, optional
            The alarm after this scan.
        options : AnalysisOptions, optional
        calibration_run_uid : str, optional
            The scan whose calibration segmented this one.
        charge_C : float, optional
            Charge throughput up to the scan, C.
        volume, labels : ndarray (z, y, x), optional
            The reconstructed rows and their labels (default: the result's
            ``volume`` / ``labels`` attributes if it has them); with a slab
            directory they become the ``slabs`` stream.

        Returns
        -------
        list of (name, doc)
            start, descriptors, events, stream resources and datums, stop.
        """
        md = self._start_md(raw_start, options, calibration_run_uid, "ok")
        md.update(voxel_size_um=float(result.voxel_size_um), recon_rows=_json_safe(list(result.rows)),
                  analysis_warnings=[str(w) for w in getattr(result, "warnings", None) or []])
        bundle = compose_run(metadata=md)
        start = bundle.start_doc
        docs = [("start", start)]
        scalars, arrays = _split_metrics(result.metrics)

        volume = getattr(result, "volume", None) if volume is None else volume
        labels = getattr(result, "labels", None) if labels is None else labels
        slab_files = self._write_slabs(start, result, volume, labels) if self.slab_directory is not None else None

        # primary: scalar metrics, alarm, timings
        data = {k: v for k, v in scalars.items()}
        keys = {k: _scalar_key(METRICS[k].unit if METRICS[k].unit != "bool" else "1") for k in scalars}
        data["scan_index"] = int(raw_start.get("scan_index", result.scan_index))
        keys["scan_index"] = _scalar_key("1", "integer", "<i8")
        extra = {"cell_time_s": (result.cell_time_s, "s"),
                 "current_mA_cm2": (raw_start.get("current_mA_cm2"), "mA/cm2"),
                 "charge_passed_abs_C": (charge_C, "C")}
        if assessment is not None:
            extra.update(time_to_failure_s=(assessment.time_to_failure_s, "s"),
                         time_to_failure_uncertainty_s=(assessment.time_to_failure_uncertainty_s, "s"),
                         charge_to_failure_C=(assessment.charge_to_failure_C, "C"))
            data["alarm_level"] = str(assessment.level)
            keys["alarm_level"] = _scalar_key("", "string", "<U16")
            data["alarm_level_value"] = _ALARM_VALUES.get(str(assessment.level), -1)
            keys["alarm_level_value"] = _scalar_key("1", "integer", "<i8")
            data["alarm_reasons"] = json.dumps([str(r) for r in assessment.reasons])
            keys["alarm_reasons"] = _scalar_key("", "string", "<U0")
        for k, (v, unit) in extra.items():
            data[k] = _number(v)
            keys[k] = _scalar_key(unit)
        for k, v in (getattr(result, "timings_s", None) or {}).items():
            data[f"timing_{k}_s"] = float(v)
            keys[f"timing_{k}_s"] = _scalar_key("s")
        for side, (z0, _) in (slab_files or {}).get("z0", {}).items():
            data[f"slab_{side}_row_start"] = int(result.rows[0]) + int(z0)
            keys[f"slab_{side}_row_start"] = _scalar_key("1", "integer", "<i8")
        now = time.time()
        desc = bundle.compose_descriptor(name="primary", data_keys=keys, time=now)
        docs.append(("descriptor", desc.descriptor_doc))
        docs.append(("event", desc.compose_event(data=data, timestamps={k: now for k in data}, time=now)))

        # maps: array metrics, the per-column maps stacked
        if arrays:
            mkeys, mdata = {}, {}
            yx = _column_maps(arrays)
            if yx:
                names = list(yx)
                stack = np.stack([yx[n].astype(np.float64) for n in names])
                mkeys["maps_yx"] = {"source": _SOURCE, "dtype": "array", "shape": list(stack.shape),
                                    "dtype_numpy": stack.dtype.str, "dims": ["map", "y", "x"], "units": None,
                                    "map_names": names, "map_units": [METRICS[n].unit for n in names]}
                mdata["maps_yx"] = stack.tolist()
            for k, a in arrays.items():
                if k in yx:
                    continue
                mkeys[k] = {"source": _SOURCE, "dtype": "array", "shape": list(a.shape),
                            "dtype_numpy": a.dtype.str, "units": METRICS[k].unit}
                if a.ndim > 1 and a.size <= _TABLE_ARRAY_SIZE:
                    # TiledWriter keeps arrays this small in its SQL table, where only 1D values round-trip
                    mkeys[k].update(shape=[a.size], map_shape=list(a.shape))
                    a = a.ravel()
                mdata[k] = a.tolist()
            mdesc = bundle.compose_descriptor(name="maps", data_keys=mkeys, time=now)
            docs.append(("descriptor", mdesc.descriptor_doc))
            docs.append(("event", mdesc.compose_event(data=mdata, timestamps={k: now for k in mdata}, time=now)))

        # slabs: external HDF5
        if slab_files and slab_files["keys"]:
            skeys = {k: {"source": "file", "dtype": "array", "shape": list(shape), "dtype_numpy": dt,
                         "external": "STREAM:", "units": unit, "dims": ["z", "y", "x"]}
                     for k, (shape, dt, unit) in slab_files["keys"].items()}
            sdesc = bundle.compose_descriptor(name="slabs", data_keys=skeys, time=now)
            docs.append(("descriptor", sdesc.descriptor_doc))
            uri = f"file://localhost{slab_files['path']}"
            for k, (shape, _, _) in slab_files["keys"].items():
                res = bundle.compose_stream_resource(
                    mimetype="application/x-hdf5", uri=uri, data_key=k,
                    parameters={"dataset": f"/{k}", "chunk_shape": [1, *shape], "swmr": False})
                docs.append(("stream_resource", res.stream_resource_doc))
                docs.append(("stream_datum", res.compose_stream_datum(
                    indices=StreamRange(start=0, stop=1), seq_nums=StreamRange(start=1, stop=2),
                    descriptor=sdesc.descriptor_doc)))
        docs.append(("stop", bundle.compose_stop(exit_status="success")))
        return docs

    def _write_slabs(self, start: dict, result, volume, labels) -> dict | None:
        """Write the interface slabs of a scan to ``<dir>/<experiment>/<uid>.h5``; None without a volume."""
        import h5py

        if volume is None:
            return None
        volume = np.asarray(volume)
        slabs = interface_slabs(volume, result.metrics, result.voxel_size_um, self.slab_half_rows)
        lab = (interface_slabs(np.asarray(labels), result.metrics, result.voxel_size_um, self.slab_half_rows)
               if labels is not None else {})
        if not slabs:
            return None
        folder = self.slab_directory / str(start.get("experiment_uid") or "no_experiment")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{start['uid']}.h5"
        keys = {}
        tmp = path.with_suffix(".h5.part")
        with h5py.File(tmp, "w") as f:
            f.attrs["raw_run_uid"] = start["raw_run_uid"]
            f.attrs["analysis_run_uid"] = start["uid"]
            f.attrs["voxel_size_um"] = float(result.voxel_size_um)
            for side, (z0, slab) in slabs.items():
                name = f"recon_slab_{side}"
                # a leading axis of one: one StreamDatum (index 0) per data key
                f.create_dataset(name, data=np.asarray(slab, dtype=np.float32)[None])
                f[name].attrs["first_recon_row"] = int(z0)
                keys[name] = (slab.shape, "<f4", "a.u.")  # reconstructed value, as the recon scales it
                if side in lab:
                    lname = f"labels_slab_{side}"
                    f.create_dataset(lname, data=np.asarray(lab[side][1], dtype=np.uint8)[None])
                    keys[lname] = (lab[side][1].shape, "|u1", "1")
        os.replace(tmp, path)  # a reader never sees a half-written file
        return {"path": str(path), "keys": keys, "z0": {s: (z0, None) for s, (z0, _) in slabs.items()}}


def find_analysis_runs(client, raw_run_uid: str) -> list:
    """Analysis runs of a raw run in a Tiled catalog, oldest first.

    Parameters
    ----------
    client : tiled container client
        The catalog the runs were written to.
    raw_run_uid : str

    Returns
    -------
    list of BlueskyRun clients
        Every run whose start document has ``raw_run_uid`` equal to it
        (live analyses and replays).
    """
    from tiled.queries import Key

    hits = client.search(Key("start.raw_run_uid") == str(raw_run_uid))
    runs = list(hits.values())
    return sorted(runs, key=lambda r: r.metadata["start"].get("time", 0.0))
