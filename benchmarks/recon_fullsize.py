"""The monitor's real job on this machine: a full-size scan streamed into region volumes.

A synthetic full-size scan (default 1500 projections of 2048 x 2448 pixels,
uint16, about 15 GB) is written block by block to a Data Exchange HDF5 file
(never held in memory): a layered cylinder (steel caps | Li | SE | Li |
steel caps) in a steel housing, with off-axis cylindrical inclusions in the
SE so that projections change with angle, projected analytically (chord
lengths, no noise), axis at a fractional column.

The acquisition is then replayed from the file in batches of frames, as the
detector delivers them: the first batch locates the two Li|SE interfaces
(:func:`sscell_live.recon.find_interfaces`), the regions are planned
(interface slabs at full resolution, the rest binned 4x) and one
:class:`sscell_live.recon.StreamingReconstructor` per region accumulates
every batch. Printed: compute time per batch against the frames' arrival
interval, total compute against the scan time (7 min), and the latency from
the last projection to the finished volume written to HDF5. The last line
is one JSON object.

Usage: ``python benchmarks/recon_fullsize.py [--quick] [--angles N --rows N --cols N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from sscell_live.recon import StreamingReconstructor, find_interfaces, plan_regions
from sscell_live.recon.regions import create_region_file

# attenuation per pixel (mu * pixel size), chosen so the longest chord keeps counts well above zero
MU = {"steel": 2.0e-3, "li": 2.0e-4, "se": 1.2e-3, "void": 0.0}
I0, DARK = 20000.0, 100.0


def _chord(s: np.ndarray, s0: float, r: float) -> np.ndarray:
    """Length of the chord of a circle of radius r at detector offset s - s0 (pixels)."""
    return 2.0 * np.sqrt(np.clip(r * r - (s - s0) ** 2, 0.0, None))


def phantom_layers(n_rows: int) -> tuple[np.ndarray, dict]:
    """Layer code per detector row (0 cap, 1 Li, 2 SE) and the true SE rows."""
    cap, li = int(0.08 * n_rows), int(0.22 * n_rows)
    se_top, se_bottom = cap + li, n_rows - cap - li
    code = np.ones(n_rows, dtype=np.int64)
    code[:cap] = 0
    code[n_rows - cap:] = 0
    code[se_top:se_bottom] = 2
    return code, {"se_top": se_top, "se_bottom": se_bottom}


def projection_table(theta: float, n_cols: int, centre: float) -> np.ndarray:
    """uint16 counts (3 layer codes, column) of one projection angle."""
    s = np.arange(n_cols) - centre
    r_pellet, r_house_in, r_house_out = 0.40 * n_cols, 0.42 * n_cols, 0.45 * n_cols
    housing = MU["steel"] * (_chord(s, 0, r_house_out) - _chord(s, 0, r_house_in))
    pellet = _chord(s, 0, r_pellet)
    line = np.empty((3, n_cols))
    line[0] = MU["steel"] * _chord(s, 0, r_house_out)
    line[1] = housing + MU["li"] * pellet
    line[2] = housing + MU["se"] * pellet
    # off-axis voids in the SE: s0 = x0 cos(theta) - y0 sin(theta), the backends' convention
    for x0, y0, r in ((0.2, 0.1, 0.03), (-0.15, 0.22, 0.05), (0.05, -0.3, 0.02)):
        s0 = n_cols * (x0 * np.cos(theta) - y0 * np.sin(theta))
        line[2] -= (MU["se"] - MU["void"]) * _chord(s, s0, r * n_cols)
    return (I0 * np.exp(-line) + DARK).astype(np.uint16)


def write_scan(path: Path, n_angles: int, n_rows: int, n_cols: int, centre: float, block: int = 16) -> dict:
    """Write the synthetic scan to a Data Exchange file, ``block`` frames at a time; returns truth."""
    code, truth = phantom_layers(n_rows)
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("exchange/data", (n_angles, n_rows, n_cols), dtype="uint16",
                             chunks=(1, n_rows, n_cols))
        f["exchange/data_white"] = np.full((4, n_rows, n_cols), I0 + DARK, dtype=np.uint16)
        f["exchange/data_dark"] = np.full((4, n_rows, n_cols), DARK, dtype=np.uint16)
        f["exchange/theta"] = np.degrees(theta)
        for a0 in range(0, n_angles, block):
            a1 = min(n_angles, a0 + block)
            d[a0:a1] = np.stack([projection_table(t, n_cols, centre)[code] for t in theta[a0:a1]])
    return {**truth, "theta": theta}


def _existing_scan(path: Path, n_angles: int, n_rows: int, n_cols: int) -> dict | None:
    """Truth of a scan file written by an earlier run with the same shape, or None."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f["exchange/data"].shape != (n_angles, n_rows, n_cols) or "complete" not in f.attrs:
                return None
    except (OSError, KeyError):
        return None
    return {**phantom_layers(n_rows)[1], "theta": np.linspace(0, np.pi, n_angles, endpoint=False)}


def run(n_angles: int, n_rows: int, n_cols: int, workdir: Path, batch_angles: int, half_width: int,
        bulk_binning: int, scan_time_s: float, keep: bool, reuse: bool = False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    scan_path, out_path = workdir / "scan.h5", workdir / "regions.h5"
    centre = n_cols / 2 + 0.37
    t = time.perf_counter()
    truth = _existing_scan(scan_path, n_angles, n_rows, n_cols) if reuse else None
    if truth is None:
        truth = write_scan(scan_path, n_angles, n_rows, n_cols, centre)
        with h5py.File(scan_path, "a") as f:
            f.attrs["complete"] = True
    t_write = time.perf_counter() - t
    print(f"{'reused' if reuse and t_write < 5 else 'wrote'} {n_angles} x {n_rows} x {n_cols} uint16 "
          f"({scan_path.stat().st_size / 2**30:.1f} GiB) in {t_write:.0f} s")
    theta = truth["theta"]
    interval = scan_time_s / n_angles * batch_angles  # seconds between batches at the beamline
    batch_s, batch_cpu, streams, regions = [], [], None, None
    load_start = os.getloadavg()[0]
    t_total, c_total = time.perf_counter(), time.process_time()
    with h5py.File(scan_path, "r") as f:
        d = f["exchange/data"]
        flats, darks = f["exchange/data_white"][()], f["exchange/data_dark"][()]
        for a0 in range(0, n_angles, batch_angles):
            a1 = min(n_angles, a0 + batch_angles)
            t0, c0 = time.perf_counter(), time.process_time()
            frames = d[a0:a1]  # the detector's batch
            if streams is None:
                # a handful of angles is enough to find the two SE faces (see find_interfaces)
                interfaces = find_interfaces(frames[:: max(1, len(frames) // 8)], flats, darks)
                regions = plan_regions(n_rows, interfaces, half_width=half_width, bulk_binning=bulk_binning,
                                       outer=True)
                streams = [StreamingReconstructor(n_angles, (n_rows, n_cols), centre,
                                                  rows=range(r.start, r.stop), binning=r.binning, flats=flats,
                                                  darks=darks, batch_angles=batch_angles) for r in regions]
            last = a1 == n_angles
            if last:
                t_last, c_last = time.perf_counter(), time.process_time()
            for s in streams:
                s.add(frames, theta[a0:a1])
            if last:
                with create_region_file(out_path, regions, n_cols, centre, interfaces=interfaces) as fo:
                    for r, s in zip(regions, streams):
                        s.result(out=fo[r.name]["volume"])
                latency = time.perf_counter() - t_last
                latency_cpu = time.process_time() - c_last
            batch_s.append(time.perf_counter() - t0)
            batch_cpu.append(time.process_time() - c0)
            print(f"batch {a0:5d}-{a1:5d}: {batch_s[-1]:6.1f} s wall, {batch_cpu[-1]:6.1f} s CPU "
                  f"(arrival interval {interval:.1f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    total, total_cpu = time.perf_counter() - t_total, time.process_time() - c_total
    cores = len(os.sched_getaffinity(0))
    # centre slice of the bulk should show the voids: a sanity figure, not a timing
    with h5py.File(out_path) as fo:
        top = fo["interface_top/volume"]
        z_se = interfaces[0] - top.attrs["rows"][0] + 2
        sl = top[z_se]
        n = sl.shape[0]
        mu_se = float(np.median(sl[n // 2 - n // 10: n // 2 + n // 10, n // 2 - n // 10: n // 2 + n // 10]))
        out_gib = sum(fo[r.name]["volume"].size for r in regions) * 4 / 2**30
    res = {
        "shape": [n_angles, n_rows, n_cols], "cores": cores,
        "batch_angles": batch_angles, "scan_time_s": scan_time_s,
        "interfaces_found": list(map(int, interfaces)), "interfaces_true": [truth["se_top"], truth["se_bottom"]],
        "regions": [[r.name, r.start, r.stop, r.binning] for r in regions],
        "write_scan_s": round(t_write, 1), "compute_total_s": round(total, 1),
        "max_batch_s": round(max(batch_s), 2), "batch_interval_s": round(interval, 2),
        "keeps_up": bool(max(batch_s[1:] or batch_s) <= interval),
        "fits_scan_time": bool(total <= scan_time_s),
        "latency_last_projection_to_volume_s": round(latency, 2),
        "latency_fraction_of_scan": round(latency / scan_time_s, 4),
        "output_GiB": round(out_gib, 2), "mu_se_recon": mu_se, "mu_se_true": MU["se"],
        # CPU seconds (all threads) do not depend on what else runs on the machine; divided by the
        # cores they bound the wall time this job needs on dedicated cores from below
        "load_average_start_end": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "cpu_total_s": round(total_cpu, 1), "cpu_per_batch_s": [round(c, 1) for c in batch_cpu],
        "cpu_latency_s": round(latency_cpu, 1),
        "dedicated_cores_estimate": {
            "compute_total_s": round(total_cpu / cores, 1),
            "max_batch_s": round(max(batch_cpu[1:] or batch_cpu) / cores, 1),
            "latency_s": round(latency_cpu / cores, 1),
            "fits_scan_time": bool(total_cpu / cores <= scan_time_s),
            "keeps_up": bool(max(batch_cpu[1:] or batch_cpu) / cores <= interval)},
    }
    if reuse:
        out_path.unlink(missing_ok=True)  # keep the scan for the next run
    elif not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled down (~1 min): 360 x 256 x 512")
    ap.add_argument("--angles", type=int, default=None)
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--cols", type=int, default=None)
    ap.add_argument("--batch-angles", type=int, default=None, help="frames per streamed batch")
    ap.add_argument("--half-width", type=int, default=None, help="slab rows each side of an interface")
    ap.add_argument("--bin", type=int, default=4, help="binning of everything outside the slabs")
    ap.add_argument("--scan-time", type=float, default=420.0, help="scan duration, s (7 min)")
    ap.add_argument("--workdir", default=None, help="where the scan file goes (default runs/recon_fullsize)")
    ap.add_argument("--keep", action="store_true", help="keep the scan and region files")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the scan file of an earlier run with the same shape (and keep it)")
    a = ap.parse_args()
    if a.quick:
        shape, batch, hw = (360, 256, 512), 60, 16
    else:
        # 32 rows each side of an interface, as plan_regions and the CLI (--slab-rows) default to: with 64 the
        # job needed 335 CPU s and 24 CPU s of latency, with 32 it needs 222 and 14 (two shared cores)
        shape, batch, hw = (1500, 2048, 2448), 100, 32
    n_angles, n_rows, n_cols = a.angles or shape[0], a.rows or shape[1], a.cols or shape[2]
    scan_time = a.scan_time if not a.quick else a.scan_time * (n_angles * n_rows * n_cols) / (1500 * 2048 * 2448)
    workdir = Path(a.workdir or Path(__file__).resolve().parents[1] / "runs" / "recon_fullsize")
    free = shutil.disk_usage(workdir.parent if workdir.parent.exists() else "/").free
    need = n_angles * n_rows * n_cols * 2 * 1.05
    if need > free and not (a.reuse and (workdir / "scan.h5").exists()):
        raise SystemExit(f"need {need / 2**30:.1f} GiB free for the scan file in {workdir}, "
                         f"have {free / 2**30:.1f} GiB")
    res = run(n_angles, n_rows, n_cols, workdir, a.batch_angles or batch, a.half_width or hw, a.bin, scan_time,
              a.keep, a.reuse)
    res["mode"] = "quick" if a.quick else "full"
    print(f"last projection -> finished volume: {res['latency_last_projection_to_volume_s']} s; "
          f"compute {res['compute_total_s']} s for a {res['scan_time_s']:.0f} s scan "
          f"({'fits' if res['fits_scan_time'] else 'does NOT fit'}; load average {res['load_average_start_end']}); "
          f"on dedicated cores (CPU time / {res['cores']}): latency {res['dedicated_cores_estimate']['latency_s']} s, "
          f"compute {res['dedicated_cores_estimate']['compute_total_s']} s")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
