"""Acquisition benchmark: frames per second through the simulated beamline, and a plain-h5py peer.

What is timed, per detector width (columns; rows are the mini cell's 180):

- ``bluesky_burst``: a RunEngine runs one burst of ``n`` hardware-timed
  frames (the sample out of the beam, shutter open: flats) on the
  ``TomoDetector`` of a ``SimBeamline``: frame simulation (noise), SWMR HDF5
  writing flushed per frame, StreamResource/StreamDatum documents, collected
  by a simple callback (a list append). The run's open/close, staging and
  moves are inside the timing.
- ``bluesky_count``: stock ``bp.count`` of the same frames, one trigger,
  one event and one StreamDatum per frame (the document-heavy path).
- ``h5py_peer``: the same number of frames, simulated by the same
  ``TwinImager`` call, appended by plain h5py to a file of the same layout
  (SWMR, one chunk per frame, the three per-frame scalars, flush per frame),
  without bluesky or ophyd-async. ``ratio`` is peer fps / bluesky fps (the
  cost of the device layer and the documents).
- ``h5py_write_only``: the peer's writing alone (frames simulated beforehand),
  the disk path's ceiling.
- ``tomo_scan_fly`` (256 only in ``--quick``): a whole ``tomo_scan`` in fly
  mode without darks/flats: projections of the twin (rendering included).

    python benchmarks/acquisition.py            # 256: 2000 frames, 1024: 500 frames (a few minutes)
    python benchmarks/acquisition.py --quick    # 256: 600 frames, 1024: 150 frames (under a minute)

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def _make(width: int, directory: Path):
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline

    RE = RunEngine({}, call_returns_result=True)  # first: it runs the event loop the devices connect in
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    bl = SimBeamline.create("lps", "mini", 0, n_lateral=width, write_directory=directory, time_scale=math.inf)
    return RE, docs, bl


def _burst_plan(bl, n: int, exposure_s: float):
    import bluesky.plan_stubs as bps
    from ophyd_async.core import TriggerInfo

    det, trans, shutter = bl.detector, bl.translation, bl.shutter
    yield from bps.open_run({"plan_name": "acquisition_benchmark"})
    yield from bps.mv(shutter, "open", trans, trans.out_position_mm)
    yield from bps.stage(det)
    yield from bps.prepare(det, TriggerInfo(number_of_events=n, livetime=exposure_s), wait=True)
    yield from bps.declare_stream(det, name="flat", collect=True)
    yield from bps.kickoff(det, wait=True)
    yield from bps.complete(det, wait=True)
    yield from bps.collect(det, name="flat")
    yield from bps.unstage(det)
    yield from bps.mv(trans, trans.in_position_mm)
    yield from bps.close_run()


def bluesky_burst(RE, docs, bl, n: int) -> dict:
    docs.clear()
    t0 = time.perf_counter()
    RE(_burst_plan(bl, n, bl.detector.exposure_s))
    dt = time.perf_counter() - t0
    counts = {k: docs.count(k) for k in sorted(set(docs))}
    return {"frames": n, "seconds": dt, "fps": n / dt, "documents": counts}


def bluesky_count(RE, docs, bl, n: int) -> dict:
    """Stock ``bp.count``: one trigger, one event and one StreamDatum per frame (the document-heavy path)."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp

    def plan():
        yield from bps.mv(bl.shutter, "open", bl.translation, bl.translation.out_position_mm)
        yield from bp.count([bl.detector], num=n)
        yield from bps.mv(bl.translation, bl.translation.in_position_mm)

    docs.clear()
    t0 = time.perf_counter()
    RE(plan())
    dt = time.perf_counter() - t0
    counts = {k: docs.count(k) for k in sorted(set(docs))}
    return {"frames": n, "seconds": dt, "fps": n / dt, "documents": counts}


def _peer_file(path: Path, rows: int, cols: int):
    f = h5py.File(path, "w", libver="latest")
    data = f.create_dataset("/entry/data/data", shape=(0, rows, cols), maxshape=(None, rows, cols), dtype=np.uint16,
                            chunks=(1, rows, cols))
    scalars = [f.create_dataset(p, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
               for p, dt in (("/entry/instrument/NDAttributes/rotation_angle_deg", np.float64),
                             ("/entry/instrument/NDAttributes/cell_time_s", np.float64),
                             ("/entry/instrument/NDAttributes/image_key", np.int32))]
    f.swmr_mode = True
    return f, data, scalars


def _append(f, data, scalars, i, frame):
    data.resize(i + 1, axis=0)
    data[i] = frame
    for ds, v in zip(scalars, (0.0, 0.11 * i, 1)):
        ds.resize(i + 1, axis=0)
        ds[i] = v
    f.flush()


def h5py_peer(bl, n: int, directory: Path, pregenerated: bool) -> dict:
    imager = bl.detector.imager
    rows, cols = imager.shape
    frames = [imager.counts("flat") for _ in range(n)] if pregenerated else None
    path = directory / f"peer_{cols}_{int(pregenerated)}.h5"
    t0 = time.perf_counter()
    f, data, scalars = _peer_file(path, rows, cols)
    for i in range(n):
        frame = frames[i] if pregenerated else imager.counts("flat")
        _append(f, data, scalars, i, frame)
    f.close()
    dt = time.perf_counter() - t0
    path.unlink()
    return {"frames": n, "seconds": dt, "fps": n / dt}


def tomo_scan_fly(RE, docs, bl, n: int) -> dict:
    from sscell_live.plans import tomo_scan

    docs.clear()
    t0 = time.perf_counter()
    RE(tomo_scan(bl, num_angles=n, mode="fly", num_darks=0, num_flats=0))
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": dt, "fps": n / dt, "renders": bl.detector.imager.renders}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames (about a minute)")
    ap.add_argument("--dir", default=None, help="write directory (default: a temporary directory)")
    args = ap.parse_args(argv)
    plan = ({256: 600, 1024: 150} if args.quick else {256: 2000, 1024: 500})
    scan_angles = {256: 90} if args.quick else {256: 181, 1024: 181}
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sscell_acq_"))
    base.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for width, n in plan.items():
            directory = base / f"w{width}"
            directory.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            RE, docs, bl = _make(width, directory)
            setup = time.perf_counter() - t0
            rows, cols = bl.detector.frame_shape
            bluesky_burst(RE, docs, bl, 5)  # warm-up (first file, imports)
            r = {"frame_shape": [rows, cols], "frame_MB": rows * cols * 2 / 1e6, "setup_s": setup}
            r["bluesky_burst"] = bluesky_burst(RE, docs, bl, n)
            r["bluesky_count"] = bluesky_count(RE, docs, bl, n)
            r["h5py_peer"] = h5py_peer(bl, n, directory, pregenerated=False)
            r["h5py_write_only"] = h5py_peer(bl, n, directory, pregenerated=True)
            r["ratio_peer_over_bluesky"] = r["h5py_peer"]["fps"] / r["bluesky_burst"]["fps"]
            if width in scan_angles:
                r["tomo_scan_fly"] = tomo_scan_fly(RE, docs, bl, scan_angles[width])
            results[str(width)] = r
            print(f"width {cols:5d} ({rows}x{cols}, {r['frame_MB']:.2f} MB/frame): "
                  f"bluesky+ophyd-async burst {r['bluesky_burst']['fps']:8.1f} fps, bp.count "
                  f"{r['bluesky_count']['fps']:8.1f} fps | plain h5py (same simulation) "
                  f"{r['h5py_peer']['fps']:8.1f} fps | ratio {r['ratio_peer_over_bluesky']:.2f} | "
                  f"h5py write only {r['h5py_write_only']['fps']:8.1f} fps"
                  + (f" | tomo_scan fly {r['tomo_scan_fly']['fps']:.1f} fps" if "tomo_scan_fly" in r else ""),
                  flush=True)
            del RE, docs, bl
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    out = {"benchmark": "acquisition", "quick": args.quick, "python": sys.version.split()[0],
           "machine": platform.machine(), "cpus": os.cpu_count(), "results": results}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
