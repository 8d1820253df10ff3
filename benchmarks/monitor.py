"""Monitor benchmark: from a scan's stop document to its metrics, and the sustained scans per minute.

Data: one fly-mode ``tomo_scan`` of an ``lps`` mini cell per detector width
(256 and 512 columns, 180 rows; 1.5 um voxels) acquired through the
simulated beamline (RunEngine, ophyd-async detector, HDF5 frames,
StreamResource/StreamDatum documents). Its documents are then fed to a
:class:`~sscell_live.monitor.Monitor` again and again, each copy with fresh
run/descriptor/resource uids (same experiment, so the segmentation
calibration is fitted once on the first copy and then held, as live).

Timed, per width:

- ``first_scan_s``: stop -> metrics of the experiment's first scan
  (includes fitting the segmentation calibration);
- ``latency_s``: stop -> metrics (``ScanStatus.finished_wall - stop_wall``,
  the alarm assessment included) of a scan that arrives when the monitor is
  idle; with the split ``read``/``reconstruct``/``segment``/``measure``
  (``ScanStatus.timings_s``);
- ``sustained_scans_per_min``: a burst of scans fed back to back (all stop
  documents at once, queue large enough that none is dropped): scans
  finished per minute from the first stop to the last finish. Feeding
  faster than this grows the backlog (``max_backlog`` = the burst size);
  the full run also feeds scans at 85 % of that rate and checks the
  backlog stays at most 1 (``paced.keeps_up``);
- peers of the monitor in the same run: the bare pipeline
  (:func:`~sscell_live.monitor.analyse_scan` called directly with the
  same held calibration: ``ratio_monitor_over_direct`` is the cost of the
  document router, thread, queue, history and alarm), and the beamline
  itself (``acquire_s``: the simulated fly scan, frames simulated and
  written; ``ratio_acquire_over_latency`` > 1 means the monitor analyses a
  scan faster than this beamline takes it).

Timings on a shared 2-core machine are noisy: compare the ratios printed in
one run, not absolute seconds across runs. Reconstruction threads: all
cores (``AnalysisOptions.threads=None``); every row is reconstructed
(``rows=None``, the monitor's default for mini cells) unless ``--rows slabs``.

    python benchmarks/monitor.py            # 256 and 512 wide, 256 angles; bursts of 4/3, paced check at 256
    python benchmarks/monitor.py --quick    # 256: 128 angles, 512: 128 angles; bursts of 3/2 (a minute or two)

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def acquire(width: int, num_angles: int, directory: Path) -> tuple[list, float, float]:
    """One fly tomo_scan of an lps mini cell; returns (documents, setup s, acquisition s)."""
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline
    from sscell_live.plans import Experiment, tomo_scan

    t0 = time.perf_counter()
    RE = RunEngine({}, call_returns_result=True)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    bl = SimBeamline.create("lps", "mini", 0, n_lateral=width, write_directory=directory, time_scale=math.inf)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    RE(tomo_scan(bl, num_angles=num_angles, num_darks=4, num_flats=8, mode="fly", experiment=Experiment()))
    return docs, setup, time.perf_counter() - t0


def reuid(docs: list) -> list:
    """A copy of one run's documents with new uids (start, descriptors, resources, datums, events, stop)."""
    new = {}
    for name, doc in docs:
        if name in ("start", "descriptor", "stream_resource", "event", "stop"):
            new[doc["uid"]] = str(uuid.uuid4())
    out = []
    for name, doc in docs:
        d = copy.copy(doc)
        for key in ("uid", "run_start", "descriptor", "stream_resource"):
            if key in d and d[key] in new:
                d[key] = new[d[key]]
        if name == "stream_datum":  # "<resource uid>/<n>"
            res, _, n = doc["uid"].rpartition("/")
            d["uid"] = f"{new.get(res, res)}/{n}"
        out.append((name, d))
    return out


def feed(monitor, docs: list) -> str:
    """Hand one run's documents to the monitor; returns the run uid."""
    for name, doc in docs:
        monitor(name, doc)
    return docs[0][1]["uid"]


def _status(monitor, uid):
    return next(s for s in monitor.statuses if s.run_uid == uid)


def _check(st):
    if st.state != "ok":
        raise RuntimeError(f"scan analysis {st.state}: {st.error}\n{st.traceback or ''}")
    return st


def bench_width(width: int, num_angles: int, reps: int, burst: int, paced: bool, direct: int, rows,
                directory: Path) -> dict:
    from sscell_live.monitor import (
        AnalysisOptions,
        ExperimentState,
        Monitor,
        RunData,
        analyse_scan,
    )

    docs, setup_s, acquire_s = acquire(width, num_angles, directory)
    options = AnalysisOptions(rows=rows)
    monitor = Monitor(options=options, queue_size=max(8, burst + 2), assess_steps=False)
    res = {"width": width, "detector_shape": docs[0][1]["detector_shape"], "num_angles": num_angles,
           "setup_s": setup_s, "acquire_s": acquire_s}
    try:
        uid = feed(monitor, reuid(docs))
        monitor.wait_idle()
        st = _check(_status(monitor, uid))
        res["first_scan_s"] = st.finished_wall - st.stop_wall

        lat, split = [], []
        for _ in range(reps):  # isolated scans: the monitor is idle when each stop arrives
            uid = feed(monitor, reuid(docs))
            monitor.wait_idle()
            st = _check(_status(monitor, uid))
            lat.append(st.finished_wall - st.stop_wall)
            split.append(st.timings_s)

        uids = [feed(monitor, reuid(docs)) for _ in range(burst)]  # back to back
        monitor.wait_idle()
        sts = [_check(_status(monitor, u)) for u in uids]
        elapsed = max(s.finished_wall for s in sts) - min(s.stop_wall for s in sts)
        res["burst"] = {"scans": burst, "elapsed_s": elapsed, "max_backlog": monitor.max_backlog,
                        "dropped": monitor.dropped}
        res["sustained_scans_per_min"] = 60.0 * burst / elapsed
        # the first scan of the burst found the monitor idle: one more latency sample
        lat.append(sts[0].finished_wall - sts[0].stop_wall)
        split.append(sts[0].timings_s)
        res["latency_s"] = {"median": float(np.median(lat)), "min": float(np.min(lat)), "max": float(np.max(lat)),
                            "n": len(lat)}
        keys = sorted({k for s in split for k in s})
        res["split_s"] = {k: float(np.median([s.get(k, 0.0) for s in split])) for k in keys}
        res["split_s"]["other"] = res["latency_s"]["median"] - sum(res["split_s"].values())
        res["ratio_acquire_over_latency"] = acquire_s / res["latency_s"]["median"]

        if paced:  # feed at 85 % of the sustained rate: the backlog must stay <= 1
            period = 60.0 / res["sustained_scans_per_min"] / 0.85
            n_paced = max(3, burst)
            backlog = []
            t_next = time.monotonic()
            for _ in range(n_paced):
                time.sleep(max(0.0, t_next - time.monotonic()))
                feed(monitor, reuid(docs))
                backlog.append(monitor.backlog)
                t_next += period
            monitor.wait_idle()
            res["paced"] = {"period_s": period, "scans": n_paced, "backlog_at_stops": backlog,
                            "keeps_up": max(backlog) <= 1}

        if direct:  # the bare pipeline, same held calibration
            cal = monitor.calibration()
            state = ExperimentState(docs[0][1]["experiment_uid"], calibration=cal)
            run = next(iter(RunData.from_documents(reuid(docs)).values()))
            times = []
            for _ in range(direct):
                t0 = time.perf_counter()
                analyse_scan(run, state, options)
                times.append(time.perf_counter() - t0)
            res["direct_s"] = float(np.median(times))
            res["ratio_monitor_over_direct"] = res["latency_s"]["median"] / res["direct_s"]
    finally:
        monitor.close(drain=False)
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer angles and scans (a minute or two on 2 cores)")
    p.add_argument("--widths", type=int, nargs="+", default=[256, 512], help="detector widths (mini cells)")
    p.add_argument("--angles", type=int, default=None, help="projections per scan (default 256, quick 128)")
    p.add_argument("--rows", choices=["all", "slabs"], default="all", help="rows to reconstruct (default all)")
    p.add_argument("--dir", default=None, help="frames directory (default a temporary one, removed)")
    args = p.parse_args(argv)
    angles = args.angles or (128 if args.quick else 256)
    rows = None if args.rows == "all" else "slabs"
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sscell_monitor_bench_"))
    results = {}
    t_all = time.perf_counter()
    try:
        for width in args.widths:
            big = width > 256
            if args.quick:
                reps, burst, paced, direct = 0, (2 if big else 3), False, (0 if big else 1)
            else:
                reps, burst, paced, direct = (1 if big else 3), (3 if big else 4), not big, (1 if big else 2)
            r = bench_width(width, angles, reps, burst, paced, direct, rows, base / str(width))
            results[str(width)] = r
            sp = r["split_s"]
            print(f"width {width} ({r['detector_shape'][0]}x{r['detector_shape'][1]}, {angles} angles): "
                  f"stop->metrics {r['latency_s']['median']:.2f} s (first scan {r['first_scan_s']:.2f} s) = "
                  + " + ".join(f"{k} {v:.2f}" for k, v in sp.items())
                  + f" | sustained {r['sustained_scans_per_min']:.1f} scans/min (burst of {r['burst']['scans']})"
                  + (f" | paced at 85%: backlog {r['paced']['backlog_at_stops']}" if "paced" in r else "")
                  + (f" | monitor/direct {r['ratio_monitor_over_direct']:.2f}" if "direct_s" in r else "")
                  + f" | acquisition {r['acquire_s']:.2f} s, "
                    f"acquisition/analysis {r['ratio_acquire_over_latency']:.2f}",
                  flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    out = {"benchmark": "monitor", "quick": args.quick, "angles": angles, "rows": args.rows,
           "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
           "total_s": time.perf_counter() - t_all, "results": results}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
