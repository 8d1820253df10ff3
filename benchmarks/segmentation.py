"""Segmentation benchmark: metrics from reconstructed twin scans against truth, per-class IoU, 512^3 timing.

Twin states of the three presets (pristine to failed, protocols of
``sscell_live.segment._twindata``) on held-out seeds (the classical model was
tuned on 101-103) are scanned with noise, rings and phase contrast,
reconstructed (Paganin delta/beta 50), segmented with a calibration fitted on
each experiment's first scan and held, and measured. With the shipped U-Net
(``sscell_live/segment/unet_weights.pt``) the interface slabs are also
segmented by it: per-class IoU on the slabs, classical beside U-Net, and the
metrics of the U-Net (slabs) + classical (bulk) labels.

    python benchmarks/segmentation.py [--quick] [--seeds 1 2 3] [--cache DIR] [--no-timing] [--no-unet]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from sscell_live.metrics import measure
from sscell_live.registry import Material
from sscell_live.segment import Calibration

VOXEL_UM = 1.5
CLASSES = [(int(m), m.name.lower()) for m in Material]


def iou_counts(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(classes, 2) intersection and union voxel counts."""
    n = len(CLASSES)
    cm = np.bincount(true.ravel().astype(np.int64) * n + pred.ravel(), minlength=n * n).reshape(n, n)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return np.stack([inter, union], axis=1)


def compare_metrics(m: dict, truth: dict, se_thickness_um: float) -> dict:
    """Errors of the done-when metrics."""
    out = {}
    for side in ("top", "bottom"):
        out[f"contact_{side}_pts"] = 100 * (m[f"contact_fraction_{side}"] - truth[f"contact_fraction_{side}"])
        tv = truth[f"void_volume_{side}_um3"]
        out[f"void_{side}_rel"] = (m[f"void_volume_{side}_um3"] - tv) / tv if tv > 0 else None
        out[f"void_{side}_um3"] = (m[f"void_volume_{side}_um3"], tv)
    tc = truth["crack_volume_um3"]
    out["crack_rel"] = (m["crack_volume_um3"] - tc) / tc if tc > 0 else None
    out["crack_um3"] = (m["crack_volume_um3"], tc)
    out["penetration_pts"] = 100 * (m["crack_penetration_fraction"] - truth["crack_penetration_fraction"])
    return out


def _slab_mask(shape, lay) -> np.ndarray:
    """Voxels of the interface slabs (the U-Net's domain) of a volume."""
    from sscell_live.segment.unet import SLAB_IN, SLAB_OUT

    m = np.zeros(shape, bool)
    m[max(0, lay["se_top"] - SLAB_OUT): lay["se_top"] + SLAB_IN] = True
    m[max(0, lay["se_bottom"] - SLAB_IN): lay["se_bottom"] + SLAB_OUT] = True
    return m


def evaluate(seeds, chemistries=("lps", "lsps", "llzo"), cache=None, checks=None, verbose=True, unet=None):
    """Per state: errors dict; plus summed IoU counts (whole volume; and slabs: classical, U-Net)."""
    from sscell_live.segment._tune import dataset

    rows, counts = [], np.zeros((len(CLASSES), 2), dtype=np.int64)
    slab_counts = {"classical": np.zeros((len(CLASSES), 2), dtype=np.int64),
                   "unet": np.zeros((len(CLASSES), 2), dtype=np.int64)}
    unet_rows = []
    cals = {}
    for ch, seed, name, vol, labels, truth in dataset(seeds=seeds, chemistries=chemistries, cache=cache):
        key = (ch, seed)
        if key not in cals:
            cals[key] = Calibration.fit(vol, VOXEL_UM, preset=ch)  # first scan of the experiment, then held
        t0 = time.perf_counter()
        pred = cals[key].apply(vol)
        m = measure(pred, VOXEL_UM)
        dt = time.perf_counter() - t0
        err = compare_metrics(m, truth, truth["se_thickness_um"])
        err["name"], err["seconds"] = name, dt
        counts += iou_counts(pred, labels)
        if unet is not None:
            cal = cals[key]
            lay = cal.layout(cal.normalise(vol))
            sm = _slab_mask(vol.shape, lay)
            upred = unet.apply(cal, vol)
            slab_counts["classical"] += iou_counts(pred[sm], labels[sm])
            slab_counts["unet"] += iou_counts(upred[sm], labels[sm])
            uerr = compare_metrics(measure(upred, VOXEL_UM), truth, truth["se_thickness_um"])
            uerr["name"] = name
            unet_rows.append(uerr)
        rows.append(err)
        if verbose:
            f = lambda x: "  n/a" if x is None else f"{x:+6.2f}"
            print(f"{name:16s} contact pts {f(err['contact_top_pts'])} {f(err['contact_bottom_pts'])}  "
                  f"void rel {f(err['void_top_rel'])} {f(err['void_bottom_rel'])}  crack rel {f(err['crack_rel'])} "
                  f"({err['crack_um3'][0]:.0f}/{err['crack_um3'][1]:.0f})  pen pts {err['penetration_pts']:+.1f}",
                  flush=True)
    if unet is not None:
        return rows, counts, slab_counts, unet_rows
    return rows, counts


def summary(rows, counts) -> dict:
    def worst(key, absval=True):
        vals = [abs(r[key]) for r in rows if r.get(key) is not None]
        return float(max(vals)) if vals else None

    def median(key):
        vals = [abs(r[key]) for r in rows if r.get(key) is not None]
        return float(np.median(vals)) if vals else None

    iou = {name: (float(counts[c, 0] / counts[c, 1]) if counts[c, 1] else None) for c, name in CLASSES}
    return {
        "states": len(rows),
        "contact_pts_max": max(worst("contact_top_pts"), worst("contact_bottom_pts")),
        "contact_pts_median": float(np.median([abs(r[k]) for r in rows for k in ("contact_top_pts", "contact_bottom_pts")])),
        "void_rel_max": max(v for v in (worst("void_top_rel"), worst("void_bottom_rel")) if v is not None),
        "void_rel_median": float(np.median([abs(r[k]) for r in rows for k in ("void_top_rel", "void_bottom_rel") if r[k] is not None])),
        "crack_rel_max": worst("crack_rel"),
        "crack_rel_median": median("crack_rel"),
        "penetration_pts_max": worst("penetration_pts"),
        "iou_classical": iou,
    }


def time_512(n: int = 512, threads: int = 2, unet=None) -> dict:
    """Seconds to segment and measure one n^3 volume (a twin-like synthetic stack at 1.5 um)."""

    rng = np.random.default_rng(0)
    vol = np.zeros((n, n, n), dtype=np.float32)
    zs = int(0.1 * n), int(0.35 * n), int(0.65 * n), int(0.9 * n)
    yy, xx = np.mgrid[:n, :n]
    disk = np.hypot(yy - n / 2, xx - n / 2) < 0.4 * n
    ring = ~disk & (np.hypot(yy - n / 2, xx - n / 2) < 0.47 * n)
    vol[:, ring] = 2e-4
    for a, b, lev in ((0, zs[0], 1.2e-2), (zs[0], zs[1], 5e-5), (zs[1], zs[2], 1e-3), (zs[2], zs[3], 5e-5),
                      (zs[3], n, 1.2e-2)):
        vol[a:b, disk] = lev
    vol += rng.normal(0, 1e-4, vol.shape).astype(np.float32)
    t0 = time.perf_counter()
    from sscell_live.segment import Calibration

    cal = Calibration.fit(vol, VOXEL_UM)
    labels = cal.apply(vol)
    t1 = time.perf_counter()
    measure(labels, VOXEL_UM)
    t2 = time.perf_counter()
    out = {"n": n, "segment_s": t1 - t0, "measure_s": t2 - t1, "total_s": t2 - t0}
    if unet is not None:
        import torch

        from sscell_live.segment.unet import extract_slabs

        torch.set_num_threads(threads)
        u = cal.normalise(vol)
        lay = cal.layout(u)
        slabs = extract_slabs(u, lay["se_top"], lay["se_bottom"])
        t3 = time.perf_counter()
        unet.predict_slabs(slabs)
        dt = time.perf_counter() - t3
        # throughput in 512 x 512 pixel-equivalents: the slab slices are (24 x n) each
        px = slabs.shape[0] * slabs.shape[1] * slabs.shape[2] * slabs.shape[3]
        out.update({"unet_slabs_s": dt, "unet_512x512_slices_per_s": px / (512 * 512) / dt,
                    "total_with_unet_s": out["total_s"] + dt})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed, about a minute, 256^3 timing")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--cache", type=Path, default=None, help="cached scans (<state>.npz + .truth.pkl)")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-unet", action="store_true", help="skip the U-Net (classical only)")
    args = ap.parse_args(argv)
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    unet = None
    if not args.no_unet:
        try:
            from sscell_live.segment.unet import load_segmenter

            unet = load_segmenter()
        except (ImportError, FileNotFoundError) as exc:
            print(f"U-Net not evaluated: {exc}")
    out = evaluate(seeds, cache=args.cache, unet=unet)
    rows, counts = out[:2]
    res = summary(rows, counts)
    print("\nper-class IoU, whole volume (classical):")
    print(f"{'class':12s} {'classical':>9s}")
    for name, v in res["iou_classical"].items():
        print(f"{name:12s} {'n/a' if v is None else f'{v:9.3f}'}")
    if unet is not None:
        slab_counts, unet_rows = out[2], out[3]
        iou = {k: {name: (float(c[i, 0] / c[i, 1]) if c[i, 1] else None) for i, name in CLASSES}
               for k, c in slab_counts.items()}
        print("\nper-class IoU on the interface slabs (U-Net domain):")
        print(f"{'class':12s} {'classical':>9s} {'U-Net':>9s}")
        for _i, name in CLASSES:
            a, b = iou["classical"][name], iou["unet"][name]
            print(f"{name:12s} {'n/a' if a is None else f'{a:9.3f}'} {'n/a' if b is None else f'{b:9.3f}'}")
        res["iou_slabs"] = iou
        res["unet_metrics"] = {k: v for k, v in summary(unet_rows, counts).items() if k != "iou_classical"}
        res["unet_meta"] = unet.meta
        print("U-Net (slabs) + classical (bulk) metrics:", json.dumps(res["unet_metrics"], default=float))
    res["seeds"] = seeds
    if not args.no_timing:
        n = 256 if args.quick else 512
        t = time_512(n, unet=unet)
        print(f"\nanalyse {n}^3 (segment + measure) on {os.cpu_count()} cores: {t['total_s']:.1f} s "
              f"(segment {t['segment_s']:.1f} s, measure {t['measure_s']:.1f} s)")
        if "unet_slabs_s" in t:
            print(f"U-Net on the interface slabs: {t['unet_slabs_s']:.1f} s "
                  f"({t['unet_512x512_slices_per_s']:.1f} slices of 512x512 per s); total {t['total_with_unet_s']:.1f} s")
        res["timing"] = t
    print(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
