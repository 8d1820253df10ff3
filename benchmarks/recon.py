"""Benchmark: our default reconstruction backend against CPU peers, same data, one run.

Data: the modified Shepp-Logan phantom (Toft's ellipses), projected
*analytically* (exact line integrals of ellipses, averaged over 4 rays per
detector pixel), so no peer shares machinery with the data; the truth image
is the phantom rasterised with 4 x 4 samples per pixel. Two variants per
size: noiseless, and with photon noise (2e4 counts in the flat field).

Peers (each timed in the same process on the same sinograms): scikit-image
``iradon`` (ramp), ASTRA's CPU ``FBP`` (Ram-Lak, linear projector) and
algotom's ``dfi_reconstruction`` when installed (the ``bench`` extra), TomoPy
gridrec when importable. Each peer's output is aligned to the truth by the
best of the 8 flips/transposes (conventions differ) before its RMSE.

GPU: when torch sees a CUDA device, the torch backend is timed on it on the
same sinograms (seconds per slice, RMSE) under ``"gpu"``; without one ``"gpu"``
is null.

Timings on a shared 2-core machine are noisy: compare the ratios printed in
one run, not absolute seconds across runs. Wall-time ratios also depend on
the load: a multi-threaded contender loses more than a single-threaded one
when other processes take the cores, so the CPU seconds per slice (all
threads of the process) are printed too; on dedicated cores ours runs on
all of them while iradon uses one.

Usage: ``python benchmarks/recon.py [--quick] [--sizes 512 1024] [--slices 8]``.
The last stdout line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sscell_live.recon.backends import fourier

# Toft's modified Shepp-Logan: (density, a, b, x0, y0, phi_deg) in units of the half width
_ELLIPSES = [
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
]


def phantom(n: int, scale: float) -> np.ndarray:
    """Rasterised phantom (y, x), mean of 4 x 4 samples per pixel; values per pixel."""
    sub = 4
    c = (np.arange(n * sub) + 0.5) / sub - 0.5 - n // 2  # pixel-centre coordinates, axis at n // 2
    half = 0.95 * n / 2
    img = np.zeros((n * sub, n * sub))
    y, x = np.meshgrid(c, c, indexing="ij")
    for rho, a, b, x0, y0, phi in _ELLIPSES:
        p = np.deg2rad(phi)
        xr = (x - x0 * half) * np.cos(p) + (y - y0 * half) * np.sin(p)
        yr = -(x - x0 * half) * np.sin(p) + (y - y0 * half) * np.cos(p)
        img[(xr / (a * half)) ** 2 + (yr / (b * half)) ** 2 <= 1] += rho
    return (img.reshape(n, sub, n, sub).mean(axis=(1, 3)) * scale).astype(np.float32)


def sinogram(n: int, theta: np.ndarray, scale: float) -> np.ndarray:
    """Exact line integrals (angle, column) of the phantom, s = x cos(t) - y sin(t), axis at column n // 2."""
    rays = 4
    s = (np.arange(n) - n // 2)[None, :, None] + ((np.arange(rays) + 0.5) / rays - 0.5)[None, None, :]
    half = 0.95 * n / 2
    out = np.zeros((len(theta), n, rays))
    # s = x cos(t) - y sin(t) = x cos(u) + y sin(u) with u = -t
    u = -theta[:, None, None]
    for rho, a, b, x0, y0, phi in _ELLIPSES:
        A, B = a * half, b * half
        alpha = u - np.deg2rad(phi)
        r2 = A**2 * np.cos(alpha) ** 2 + B**2 * np.sin(alpha) ** 2
        t = s - (x0 * half * np.cos(u) + y0 * half * np.sin(u))
        inside = t**2 < r2
        out += np.where(inside, 2 * rho * A * B * np.sqrt(np.clip(r2 - t**2, 0, None)) / r2, 0.0)
    return (out.mean(axis=2) * scale).astype(np.float32)


def _disk(n):
    return np.hypot(*(np.mgrid[:n, :n] - n // 2)) < 0.95 * n / 2


def _aligned_rmse(rec: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    best = np.inf
    for t in (False, True):
        r = rec.T if t else rec
        for fy in (False, True):
            for fx in (False, True):
                v = r[::-1] if fy else r
                v = v[:, ::-1] if fx else v
                if v.shape != truth.shape:
                    continue
                best = min(best, float(np.sqrt(np.mean((v - truth)[mask] ** 2))))
    return best


#: CPU seconds (all threads of this process) of the last _timed call's best run
_LAST_CPU = [0.0]


def _timed(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, _LAST_CPU[0] = wall, time.process_time() - c0
    return best, out


# -- the contenders: each takes sinograms (slice, angle, det) and returns slices (slice, y, x) ----------
def ours(sinos, theta, n):
    return fourier.reconstruct_sinograms(sinos, theta, n // 2)


def iradon(sinos, theta, n):
    from skimage.transform import iradon as sk

    return np.stack([sk(s.T.astype(np.float64), np.rad2deg(theta), circle=True, filter_name="ramp") for s in sinos])


def astra_fbp(sinos, theta, n):
    import astra

    # ASTRA puts the axis between pixels (index (n - 1) / 2); its CPU FBP takes only plain parallel
    # geometry, so append one empty detector column (axis then at index n / 2, as in the data) and shift
    # the volume window half a pixel (axis on pixel n // 2, as in the truth): no interpolation of the data
    # (ASTRA rows run from max_y down to min_y, hence the opposite half-pixel shift in y)
    vol_geom = astra.create_vol_geom(n, n, -n / 2 - 0.5, n / 2 - 0.5, -n / 2 + 0.5, n / 2 + 0.5)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n + 1, theta)
    sinos = np.concatenate([sinos, np.zeros_like(sinos[..., :1])], axis=-1)
    proj_id = astra.create_projector("linear", proj_geom, vol_geom)
    out = []
    for s in sinos:
        sid = astra.data2d.create("-sino", proj_geom, s)
        rid = astra.data2d.create("-vol", vol_geom)
        cfg = astra.astra_dict("FBP")
        cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=proj_id,
                   option={"FilterType": "Ram-Lak"})
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg)
        out.append(astra.data2d.get(rid))
        astra.algorithm.delete(alg)
        astra.data2d.delete([sid, rid])
    astra.projector.delete(proj_id)
    return np.stack(out)


def algotom_dfi(sinos, theta, n):
    from algotom.rec.reconstruction import dfi_reconstruction

    return np.stack([dfi_reconstruction(s, n // 2, angles=theta, filter_name=None, apply_log=False, ratio=None,
                                        ncore=2) for s in sinos])


def tomopy_gridrec(sinos, theta, n):
    import tomopy

    return tomopy.recon(np.ascontiguousarray(sinos.transpose(1, 0, 2)), theta, center=n // 2, algorithm="gridrec",
                        filter_name="ramlak")


def _peers():
    peers = {"iradon": iradon}
    try:
        import astra  # noqa: F401

        peers["astra_cpu_fbp"] = astra_fbp
    except ImportError:
        pass
    try:
        import algotom  # noqa: F401

        peers["algotom_dfi"] = algotom_dfi
    except ImportError:
        pass
    try:
        import tomopy  # noqa: F401

        peers["tomopy_gridrec"] = tomopy_gridrec
    except ImportError:
        pass
    return peers


def gpu_device():
    """Name of the CUDA device torch sees, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def torch_cuda(sinos, theta, n):
    import torch

    from sscell_live.recon.backends import torch_fbp

    out = torch_fbp.reconstruct_sinograms(sinos, theta, n // 2, device="cuda")
    torch.cuda.synchronize()
    return out


def run(sizes, angles, n_slices, peer_slices, repeat):
    rng = np.random.default_rng(0)
    results = []
    for n, n_ang in zip(sizes, angles):
        theta = np.linspace(0, np.pi, n_ang, endpoint=False)
        scale = 2.0 / n  # line integrals up to about 2 (13 % transmission)
        truth = phantom(n, scale)
        clean = sinogram(n, theta, scale)
        noisy = -np.log(np.maximum(rng.poisson(2e4 * np.exp(-clean)), 1) / 2e4).astype(np.float32)
        mask = _disk(n)
        row = {"width": n, "angles": n_ang}
        stack = np.stack([clean, noisy] * (n_slices // 2))
        # warm-up: plans are made once per geometry and thread layout (one slice: one worker with all threads)
        ours(stack, theta, n)
        ours(stack[:1], theta, n)
        t, rec = _timed(lambda s=stack, th=theta, w=n: ours(s, th, w), repeat)
        row["ours"] = {"s_per_slice": t / len(stack), "cpu_s_per_slice": _LAST_CPU[0] / len(stack),
                       "rmse_clean": _aligned_rmse(rec[0], truth, mask),
                       "rmse_noisy": _aligned_rmse(rec[1], truth, mask)}
        t1, _ = _timed(lambda s=stack, th=theta, w=n: ours(s[:1], th, w), repeat)
        row["ours"]["s_single_slice_call"] = t1
        for name, fn in _peers().items():
            k = max(2, peer_slices)
            t, rec = _timed(lambda f=fn, s=stack[:k], th=theta, w=n: f(s, th, w), 1)
            row[name] = {"s_per_slice": t / k, "cpu_s_per_slice": _LAST_CPU[0] / k,
                         "rmse_clean": _aligned_rmse(rec[0], truth, mask),
                         "rmse_noisy": _aligned_rmse(rec[1], truth, mask)}
            row[name]["speedup_ours"] = row[name]["s_per_slice"] / row["ours"]["s_per_slice"]
            # CPU seconds per slice, all threads: the work done, much less disturbed by other load
            # than wall time (iradon runs on one core, ours on all of them)
            row[name]["cpu_ratio_ours"] = row[name]["cpu_s_per_slice"] / row["ours"]["cpu_s_per_slice"]
            row[name]["rmse_ratio_ours_clean"] = row["ours"]["rmse_clean"] / row[name]["rmse_clean"]
            row[name]["rmse_ratio_ours_noisy"] = row["ours"]["rmse_noisy"] / row[name]["rmse_noisy"]
        if gpu_device() is not None:
            torch_cuda(stack[:2], theta, n)  # warm-up: CUDA context, kernels
            t, rec = _timed(lambda s=stack, th=theta, w=n: torch_cuda(s, th, w), repeat)
            row["gpu_torch"] = {"s_per_slice": t / len(stack), "rmse_clean": _aligned_rmse(rec[0], truth, mask),
                                "rmse_noisy": _aligned_rmse(rec[1], truth, mask),
                                "speedup_vs_ours_cpu": row["ours"]["s_per_slice"] * len(stack) / t}
        results.append(row)
        _print_row(row)
    return results


def _print_row(row):
    print(f"\n== {row['width']} px, {row['angles']} angles ==")
    print(f"{'method':<16}{'s/slice':>10}{'CPU s/slice':>12}{'RMSE clean':>12}{'RMSE noisy':>12}"
          f"{'ours faster':>13}{'ours less CPU':>15}{'RMSE ours/peer (clean, noisy)':>32}")
    for name, r in row.items():
        if not isinstance(r, dict):
            continue
        extra = ""
        if name not in ("ours", "gpu_torch"):
            extra = (f"{r['speedup_ours']:>12.1f}x{r['cpu_ratio_ours']:>14.1f}x"
                     f"{r['rmse_ratio_ours_clean']:>16.3f}{r['rmse_ratio_ours_noisy']:>16.3f}")
        cpu = f"{r['cpu_s_per_slice']:>12.4f}" if "cpu_s_per_slice" in r else f"{'':>12}"
        print(f"{name:<16}{r['s_per_slice']:>10.4f}{cpu}{r['rmse_clean']:>12.3e}{r['rmse_noisy']:>12.3e}{extra}")
    sys.stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI size: about a minute on 2 cores")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--angles", type=int, nargs="+", default=None, help="angles per size (default 450, 900)")
    ap.add_argument("--slices", type=int, default=16, help="slices reconstructed by our backend per size")
    ap.add_argument("--peer-slices", type=int, default=2, help="slices per peer (iradon is slow)")
    args = ap.parse_args(argv)
    angles = args.angles or [{512: 450, 1024: 900}.get(n, round(0.88 * n)) for n in args.sizes]
    slices, repeat = (8, 1) if args.quick else (args.slices, 2)
    t0 = time.perf_counter()
    res = run(args.sizes, angles, slices, args.peer_slices, repeat)
    gpu = gpu_device()
    summary = {"benchmark": "recon", "quick": args.quick, "cpu_count": os.cpu_count(),
               "machine": platform.machine(), "results": res,
               # the torch backend on the GPU (per size under results[i]["gpu_torch"]); null: no CUDA device
               "gpu": None if gpu is None else {"device": gpu, "backend": "torch"},
               "wall_s": time.perf_counter() - t0}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
