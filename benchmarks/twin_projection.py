"""Benchmark: the twin's X-ray scan simulation, speed and accuracy.

Builds a layered Li|SE|Li cell phantom (steel / Li / porous SE / Li / steel
cylinder inside a PEEK ring, uint8 ``Material`` labels), then times

- a full simulated scan (noise-free intensities with phase contrast, then
  flats, darks, Poisson and read noise) at widths 256 and 512 with 361 and
  721 projections over 180 degrees, heights 0.6 x width;
- the bare projector (one channel, every slice, no slice de-duplication)
  against the peer scikit-image ``radon`` run on one slice and extrapolated
  to the whole volume;
- accuracy of both against analytic line integrals of ellipses.

Usage::

    python benchmarks/twin_projection.py [--quick]

The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.ndimage
from skimage.transform import radon

from sscell_live.registry import Material
from sscell_live.twin.imaging import Beam, Detector, clear_intensity_cache, simulate_scan
from sscell_live.twin.projector import clear_projector_cache, forward_project, get_projector


def cell_phantom(width: int, seed: int = 0) -> np.ndarray:
    """Layered cell labels (0.6 width, width, width), uint8 Material codes."""
    nz = int(round(0.6 * width))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:width, 0:width]
    r = np.hypot(yy - width // 2, xx - width // 2)
    ring, bore = r < 0.48 * width, r < 0.40 * width
    lab = np.zeros((nz, width, width), np.uint8)
    lab[:, ring] = Material.HOUSING
    z = np.arange(nz) / nz
    layers = [(0.00, 0.12, Material.STEEL), (0.12, 0.25, Material.LI), (0.25, 0.75, Material.SE),
              (0.75, 0.88, Material.LI), (0.88, 1.01, Material.STEEL)]
    for lo, hi, code in layers:
        lab[(z >= lo) & (z < hi)] = np.where(bore, code, lab[(z >= lo) & (z < hi)])
    # pores: smoothed noise above its 97th percentile, inside the SE only
    se = (z >= 0.25) & (z < 0.75)
    noise = scipy.ndimage.gaussian_filter(rng.standard_normal((se.sum(), width, width)).astype(np.float32), 1.5)
    pores = (noise > np.quantile(noise, 0.97)) & bore
    block = lab[se]
    block[pores] = Material.VACUUM
    lab[se] = block
    return lab


def time_scan(width: int, n_angles: int, voxel_um: float = 1.5) -> dict:
    """Build time of the projector and time of full scans at one width."""
    lab = cell_phantom(width)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    det = Detector(centre_offset_px=3.3, bad_pixel_fraction=1e-4)
    beam = Beam(25.0, sample_detector_distance_mm=100.0, phase_contrast=True)
    clear_projector_cache()
    clear_intensity_cache()
    t0 = time.perf_counter()
    get_projector(width, width, angles, width, width / 2 + 3.3)
    build = time.perf_counter() - t0
    times = []
    for rep in range(2):  # a new state each time: nothing but the matrix is reused
        t0 = time.perf_counter()
        scan = simulate_scan(lab, voxel_um, angles, beam, det, rng=rep, n_flats=20, n_darks=10,
                             cache_key=("bench", rep))
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    simulate_scan(lab, voxel_um, angles, beam, det, rng=5, n_flats=20, n_darks=10, cache_key=("bench", 1))
    cached = time.perf_counter() - t0
    per_scan = min(times)
    res = {
        "width": width, "height": lab.shape[0], "n_angles": n_angles, "build_s": build,
        "scan_s": per_scan, "per_projection_s": per_scan / n_angles, "rescan_same_state_s": cached,
        "frame_shape": list(scan.projections.shape),
    }
    # the bare projector: one channel, all slices, against skimage radon
    vol = (lab == Material.SE).astype(np.float32)
    t0 = time.perf_counter()
    forward_project(vol, angles, n_det=width, centre_px=width / 2 + 3.3)
    res["projector_1ch_s"] = time.perf_counter() - t0
    n_slices = 2 if width <= 256 else 1
    t0 = time.perf_counter()
    for k in range(n_slices):
        radon(vol[lab.shape[0] // 2 + k], np.rad2deg(angles), circle=False)
    res["skimage_radon_1ch_s_extrapolated"] = (time.perf_counter() - t0) / n_slices * lab.shape[0]
    res["speedup_vs_skimage_radon"] = res["skimage_radon_1ch_s_extrapolated"] / res["projector_1ch_s"]
    clear_projector_cache()
    clear_intensity_cache()
    return res


def ellipse_accuracy(n: int = 192, n_angles: int = 180) -> dict:
    """Relative L2 error against analytic chords of three ellipses (rays that hit)."""
    ellipses = [((-27.0, 33.0), (27.0, 18.0), 0.0, 1.0), ((33.0, -22.5), (37.5, 15.0), np.deg2rad(35), 0.5),
                ((6.0, 9.0), (16.5, 16.5), 0.0, 2.0)]  # (centre y, x), (semi-axis x, y), rotation, mu
    sub = 8
    o = (np.arange(sub) + 0.5) / sub - 0.5
    y = (np.arange(n)[:, None] + o).ravel() - n // 2
    x = (np.arange(n)[:, None] + o).ravel() - n // 2
    Y, X = np.meshgrid(y, x, indexing="ij")
    img = np.zeros((n * sub, n * sub))
    for (cy, cx), (ax, ay), rot, mu in ellipses:
        u = (X - cx) * np.cos(rot) + (Y - cy) * np.sin(rot)
        v = -(X - cx) * np.sin(rot) + (Y - cy) * np.cos(rot)
        img += mu * ((u / ax) ** 2 + (v / ay) ** 2 <= 1)
    img = img.reshape(n, sub, n, sub).mean(axis=(1, 3))
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)

    def analytic(n_det, centre, offsets):
        out = np.zeros((n_angles, n_det))
        for a, th in enumerate(angles):
            s = np.arange(n_det)[:, None] + offsets - centre
            px, py = s * np.cos(th), -s * np.sin(th)
            dx, dy = np.sin(th), np.cos(th)
            for (cy, cx), (ax, ay), rot, mu in ellipses:
                # in the ellipse frame the ray is p + t d; solve |.|_ellipse = 1
                pu = (px - cx) * np.cos(rot) + (py - cy) * np.sin(rot)
                pv = -(px - cx) * np.sin(rot) + (py - cy) * np.cos(rot)
                du = dx * np.cos(rot) + dy * np.sin(rot)
                dv = -dx * np.sin(rot) + dy * np.cos(rot)
                A = du**2 / ax**2 + dv**2 / ay**2
                B = 2 * (pu * du / ax**2 + pv * dv / ay**2)
                C = pu**2 / ax**2 + pv**2 / ay**2 - 1
                out[a] += mu * (np.sqrt(np.clip(B**2 - 4 * A * C, 0, None)) / A).mean(axis=1)
        return out

    def rel(got, ref):
        hit = ref > 0
        return float(np.linalg.norm(got[hit] - ref[hit]) / np.linalg.norm(ref[hit]))

    ours = forward_project(img[None], angles, n_det=n, centre_px=n / 2)[:, 0]
    ref_ours = analytic(n, n / 2, np.array([-0.25, 0.25]))
    theirs = radon(img, np.rad2deg(angles), circle=False).T
    ref_theirs = analytic(theirs.shape[1], theirs.shape[1] // 2, np.array([0.0]))
    return {"ellipse_rel_l2_error": rel(ours, ref_ours), "ellipse_rel_l2_error_skimage_radon": rel(theirs, ref_theirs)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="width 256 only (about a minute on 2 cores)")
    args = parser.parse_args(argv)
    cases = [(256, 361)] if args.quick else [(256, 361), (512, 721)]
    figures: dict = {}
    print(f"{'width':>5} {'height':>6} {'angles':>6} {'build s':>8} {'scan s':>8} {'s/proj':>8} "
          f"{'rescan s':>8} {'proj 1ch s':>10} {'skimage s':>10} {'ratio':>6}")
    for width, n_angles in cases:
        r = time_scan(width, n_angles)
        print(f"{r['width']:>5} {r['height']:>6} {r['n_angles']:>6} {r['build_s']:>8.2f} {r['scan_s']:>8.2f} "
              f"{r['per_projection_s']:>8.4f} {r['rescan_same_state_s']:>8.2f} {r['projector_1ch_s']:>10.2f} "
              f"{r['skimage_radon_1ch_s_extrapolated']:>10.2f} {r['speedup_vs_skimage_radon']:>6.1f}", flush=True)
        figures[f"seconds_per_scan_{width}"] = round(r["scan_s"], 3)
        figures[f"seconds_per_projection_{width}"] = round(r["per_projection_s"], 5)
        figures[f"matrix_build_seconds_{width}"] = round(r["build_s"], 3)
        figures[f"rescan_same_state_seconds_{width}"] = round(r["rescan_same_state_s"], 3)
        figures[f"projector_1ch_seconds_{width}"] = round(r["projector_1ch_s"], 3)
        figures[f"skimage_radon_1ch_seconds_{width}"] = round(r["skimage_radon_1ch_s_extrapolated"], 3)
        figures[f"speedup_vs_skimage_radon_{width}"] = round(r["speedup_vs_skimage_radon"], 2)
    figures["speedup_vs_skimage_radon"] = figures["speedup_vs_skimage_radon_256"]
    acc = ellipse_accuracy()
    print(f"analytic-ellipse relative L2 error: ours {acc['ellipse_rel_l2_error']:.4f}, "
          f"skimage radon {acc['ellipse_rel_l2_error_skimage_radon']:.4f}")
    figures.update({k: round(v, 5) for k, v in acc.items()})
    print("scan = phase-contrast intensities + flats/darks + noise, 25 keV, 100 mm, 1.5 um voxels, 180 deg; "
          "build = one-off system matrix (cached across scans); ratio = skimage radon / our projector, one channel")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
