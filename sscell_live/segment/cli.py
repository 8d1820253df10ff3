"""``sscell-live analyze``: metrics of one volume (grey: segment then measure; ``--labels``: measure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["analyze", "load_volume", "register"]


def load_volume(path, dataset: str | None = None) -> np.ndarray:
    """Read a 3-D volume from HDF5 (``dataset``; default the only/first 3-D dataset), a TIFF stack or .npy."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".h5", ".hdf5", ".nxs", ".hdf"):
        import h5py

        with h5py.File(p, "r") as fh:
            if dataset is None:
                found = []
                fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
                if not found:
                    raise ValueError(f"{p} holds no 3-D dataset; name one with --dataset")
                dataset = found[0]
            if dataset not in fh:
                raise KeyError(f"{p} has no dataset {dataset!r}")
            return np.asarray(fh[dataset])
    if suffix in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(p))
    if suffix == ".npy":
        return np.load(p, allow_pickle=False)
    raise ValueError(f"unsupported volume format {suffix!r}: use .h5/.hdf5, .tif/.tiff or .npy")


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return None  # maps are not printed
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def analyze(args) -> int:
    from ..metrics import measure
    from . import segment, segmentation_notes

    try:
        vol = load_volume(args.volume, args.dataset)
        if args.labels:
            if not np.issubdtype(vol.dtype, np.integer):
                raise TypeError(f"--labels needs an integer label volume, got dtype {vol.dtype}")
            labels = vol
        else:
            labels = segment(vol, args.voxel_size_um, **({"preset": args.preset} if args.preset else {}))
        m = measure(labels, args.voxel_size_um)
        if not args.labels:
            m["notes"] = list(m.get("notes") or []) + segmentation_notes(args.preset)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"analyze: error: {exc}", file=sys.stderr)
        return 2
    out = {k: _jsonable(v) for k, v in m.items() if not isinstance(v, np.ndarray)}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def train_segmenter(args) -> int:
    from pathlib import Path

    from .unet import WEIGHTS_PATH, train

    try:
        import torch  # noqa: F401
    except ImportError:
        print("train-segmenter: error: needs torch (pip install torch)", file=sys.stderr)
        return 2
    seeds = tuple(args.seeds) if args.seeds else ((101,) if args.ci else (101, 102, 103))
    chems = tuple(args.chemistry) if args.chemistry else (("lps",) if args.ci else ("lps", "lsps", "llzo"))
    # CI size: few slices, small batches, a higher rate: learns the main classes in seconds
    recipe = dict(CI_RECIPE) if args.ci else {"epochs": 12, "y_stride": 2, "batch": 32, "lr": 3e-3}
    for key in recipe:
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    out = Path(args.out) if args.out else (Path("unet_weights_ci.pt") if args.ci else WEIGHTS_PATH)
    try:
        train(out=out, seeds=seeds, chemistries=chems, cache=Path(args.cache) if args.cache else None,
              seed=args.seed, threads=args.threads, device=args.device, **recipe)
    except (OSError, ValueError) as exc:
        print(f"train-segmenter: error: {exc}", file=sys.stderr)
        return 2
    return 0


#: ``train-segmenter --ci``: the tiny recipe (tests/test_segment.py checks that it learns).
CI_RECIPE = {"epochs": 8, "y_stride": 4, "batch": 4, "lr": 5e-3}


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="metrics of one volume (segment a grey volume, or --labels)")
    p.add_argument("volume", help="VOLUME.h5 / .tif stack / .npy, (z, y, x), z along the cell axis")
    p.add_argument("--voxel-size-um", type=float, required=True, help="voxel edge, um (> 0)")
    p.add_argument("--labels", action="store_true", help="the volume holds material codes (0-5): measure only")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path (default: the first 3-D dataset)")
    p.add_argument("--preset", choices=("lps", "lsps", "llzo"), default=None,
                   help="column model of this electrolyte family (default: tuned on all three)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=analyze)

    t = subparsers.add_parser("train-segmenter",
                              help="train the interface-slab U-Net on twin scans (reproduces the shipped weights)")
    t.add_argument("--ci", action="store_true",
                   help="CI size: seed 101, LPS only, every 4th slice, batch 4, 8 epochs (seconds on a CPU)")
    t.add_argument("--seeds", type=int, nargs="*", default=None, help="twin seeds (default 101 102 103)")
    t.add_argument("--chemistry", nargs="*", choices=("lps", "lsps", "llzo"), default=None)
    t.add_argument("--epochs", type=int, default=None, help="default 12")
    t.add_argument("--y-stride", dest="y_stride", type=int, default=None, help="every n-th y-slice (default 2; 4 with --ci)")
    t.add_argument("--batch", type=int, default=None, help="slices per step (default 32; 4 with --ci)")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3; 5e-3 with --ci)")
    t.add_argument("--cache", default=None, help="directory of cached <state>.npz + .truth.pkl scans")
    t.add_argument("--out", default=None, help="weights file (default: the shipped unet_weights.pt)")
    t.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1: reproducible, fastest when shared)")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    t.set_defaults(func=train_segmenter)
