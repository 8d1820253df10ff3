"""Tune the classical pipeline on twin seeds (101-103 by default; tests use others).

``python -m sscell_live.segment._tune [--cache DIR]`` simulates, reconstructs
and writes ``column_model.json``, per preset (``lps``, ``lsps``, ``llzo``,
and ``all``) and per face: the face model (whole-voxel correction of the
reference scan's faces), the column network (void score, void height and
interphase height per column, :mod:`sscell_live.segment.columns`), the
contact threshold and void gain, and the SE transparency level. Uses the twin
(tuning only); deterministic (fixed seeds, one torch thread). With the cache
of seeds 101-106 filled it takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..metrics import crack_mask, find_layout, measure
from ..metrics.interface import _leading_run, electrode_region
from ..registry import Material
from .classical import (
    FACE_SIGMA_VOX,
    MODEL_PATH,
    Calibration,
    _pellet_mask,
    fit_contact_decision,
    fit_face_model,
    se_slab_labels,
)
from ._twindata import N_ANGLES
from .columns import column_profiles, fit_column_net, mlp_forward

VOXEL_UM = 1.5
TUNE_SEEDS = (101, 102, 103)
#: LSPS has 3 states per seed (LPS 4) and its bottom face changes most (interphase growth): more seeds.
TUNE_SEEDS_BY_CHEMISTRY = {"lsps": (101, 102, 103, 104, 105, 106)}
#: Li-filament level of the garnet preset (``classical.li_filaments``): on seeds 101-103, 0.5 gives no
#: filament in pristine scans and crack volumes -4 to -60 % (the thinnest and rim filaments are missed).
LI_FILAMENT_LEVEL = {"llzo": 0.5}
#: Column network (:mod:`sscell_live.segment.columns`): layers on the electrode side and in the SE,
#: lateral smoothing scales (um: the column, its neighbourhood), training settings.
COLUMN_NET_SHAPE = (12, 8)
COLUMN_NET_SIGMAS_UM = (1.5, 4.5)
COLUMN_NET_TRAINING = {"hidden": 32, "epochs": 20, "batch": 512, "lr": 3e-3, "seed": 0, "height_weight": 1.0}
#: Scale of the false-crack error in crack-free tuning states (um3, about the smallest studied crack).
CRACK_SCALE_UM3 = 1000.0
BASE_OPTIONS = {"lateral_sigma_um": 1.5, "transparent_sigma_um": 0.0, "transparent_level": 0.5}


def dataset(seeds=TUNE_SEEDS, chemistries=("lps", "lsps", "llzo"), cache: Path | None = None,
            n_angles: int = N_ANGLES):
    """Yield (chemistry, seed, name, grey volume, true labels, truth dict) per state.

    ``n_angles``: projections per scan (default ``_twindata.N_ANGLES``); other
    counts are cached under ``cache / f"angles{n_angles}"``.

    With ``cache`` (a directory), states already there are read back and the
    others are simulated and written (``<state>.npz`` with ``V`` grey and
    ``L`` labels, ``<state>.truth.pkl``). A cache is only valid for the twin
    and reconstruction code that wrote it.
    """
    import pickle

    from ._twindata import scan_and_reconstruct, twin_states

    if cache is not None and n_angles != N_ANGLES:
        cache = Path(cache) / f"angles{n_angles}"

    for ch in chemistries:
        for seed in (TUNE_SEEDS_BY_CHEMISTRY.get(ch, seeds) if seeds == TUNE_SEEDS else seeds):
            cached = [] if cache is None else sorted(Path(cache).glob(f"{ch}-s{seed}-h*.npz"),
                                                      key=lambda p: int(p.stem.rsplit("-h", 1)[1]))
            if cached:
                for f in cached:
                    d = np.load(f)
                    with open(f.with_suffix(".truth.pkl"), "rb") as fh:
                        truth = pickle.load(fh)
                    yield ch, seed, f.stem, d["V"], d["L"], truth
                continue
            for name, twin in twin_states(ch, seed):
                vol = scan_and_reconstruct(twin, n_angles=n_angles)
                labels, truth = twin.labels(), twin.truth()
                if cache is not None:  # fill the cache (delete it when the twin or reconstruction change)
                    Path(cache).mkdir(parents=True, exist_ok=True)
                    np.savez(Path(cache) / f"{name}.npz", V=vol, L=labels)
                    with open(Path(cache) / f"{name}.truth.pkl", "wb") as fh:
                        pickle.dump(truth, fh)
                yield ch, seed, name, vol, labels, truth


def column_targets(labels: np.ndarray, voxel_size_um: float):
    """Per side: (void heights, interphase heights (voxels), contact map, pellet) from true labels."""
    m = measure(labels, voxel_size_um)
    lay = find_layout(labels, voxel_size_um)
    out = {}
    for side in ("top", "bottom"):
        region = electrode_region(labels, lay, side)
        inter = _leading_run(region == Material.INTERPHASE)
        out[side] = (m[f"void_map_{side}_um"] / voxel_size_um, inter.astype(np.float32),
                     m[f"contact_map_{side}"], lay.pellet)
    return out


#: Projections per scan of the tuning scans: the default and a sparse, streaky one (24 angles, as in
#: quick live scans and the monitor tests), so that the column network and thresholds stay right on both.
#: The face model is fitted on the default scans only.
TUNE_ANGLES = (N_ANGLES, 24)


def _over_angles(chemistries, cache):
    for n in TUNE_ANGLES:
        for item in dataset(chemistries=chemistries, cache=cache, n_angles=n):
            yield n, item


def tune(chemistries, cache) -> dict:
    """Face model, column model and SE transparency level tuned on ``TUNE_SEEDS`` of these chemistries."""
    from scipy import ndimage

    # 1. face model: on each experiment's first scan (the reference), threshold faces against true faces
    face_samples = {"top": [], "bottom": []}
    seen = set()
    for ch, seed, _name, vol, labels, _truth in dataset(chemistries=chemistries, cache=cache):
        if (ch, seed) in seen:
            continue
        seen.add((ch, seed))
        cal = Calibration.fit(vol, VOXEL_UM, model={"options": BASE_OPTIONS})
        u = cal.normalise(vol)
        lay = cal.layout(u)
        tl = find_layout(labels, VOXEL_UM)
        us = ndimage.gaussian_filter(u, (0.0, FACE_SIGMA_VOX, FACE_SIGMA_VOX))
        pellet = _pellet_mask(u.shape[1:], lay)
        face_samples["top"].append((us, lay["se_top"], tl.se_top, "top", pellet))
        face_samples["bottom"].append((us, lay["se_bottom"], tl.se_bottom, "bottom", pellet))
    face_w = {side: fit_face_model(face_samples[side]) for side in ("top", "bottom")}
    del face_samples
    base_model = {"options": BASE_OPTIONS, "top": {"face": face_w["top"]}, "bottom": {"face": face_w["bottom"]}}

    # 2. column model and SE transparency level, faces from the face model
    per_side = {side: ([], [], [], [], []) for side in ("top", "bottom")}
    se_samples = []
    cals = {}
    face_err = []
    for n_angles, (ch, seed, name, vol, labels, truth) in _over_angles(chemistries, cache):
        key = (ch, seed, n_angles)
        if key not in cals:  # first scan of the experiment: calibrate and hold
            cals[key] = Calibration.fit(vol, VOXEL_UM, model=base_model)
            tl = find_layout(labels, VOXEL_UM)
            face_err.append((cals[key].se_top_ref - tl.se_top, cals[key].se_bottom_ref - tl.se_bottom))
        cal = cals[key]
        u = cal.normalise(vol)
        lay = cal.layout(u)
        tg = column_targets(labels, VOXEL_UM)
        pellet = _pellet_mask(u.shape[1:], lay)
        for side in ("top", "bottom"):
            f = column_profiles(u, lay["se_top"] if side == "top" else lay["se_bottom"], side, *COLUMN_NET_SHAPE,
                                [s_ / VOXEL_UM for s_ in COLUMN_NET_SIGMAS_UM])
            hv, hi, c, pel = tg[side]
            pel = pel & pellet  # columns of the true and the found pellet
            lists = per_side[side]
            for lst, val in zip(lists, (f, hv, hi, c, pel)):
                lst.append(val)
        se_samples.append((u, labels, lay, pellet))
    # one model per face: the two faces' profiles differ (face finding, halo of the collector)
    model = {}
    for side in ("top", "bottom"):
        feats, hv, hi, c, pel = per_side[side]
        net = fit_column_net(feats, hv, hi, c, pel, **COLUMN_NET_TRAINING)
        outs = [mlp_forward(net, f) for f in feats]
        model[side] = {"net": net, "sigmas_um": list(COLUMN_NET_SIGMAS_UM), "k_out": COLUMN_NET_SHAPE[0],
                       "k_in": COLUMN_NET_SHAPE[1], "training": dict(COLUMN_NET_TRAINING), "voxel_size_um": VOXEL_UM,
                       "face": face_w[side]}
        model[side].update(fit_contact_decision([o[..., 0] for o in outs], [o[..., 1] for o in outs], hv, c, pel,
                                                VOXEL_UM))
    # SE transparency level: the one whose crack volume (the target) and transparent volume best match truth
    opts = dict(BASE_OPTIONS)
    if chemistries == ("llzo",):
        opts["li_filament_level"] = LI_FILAMENT_LEVEL["llzo"]
    best = None
    for level in np.arange(0.0, 0.65, 0.05):
        err = []
        for u, labels, lay, pellet in se_samples:
            se_true = labels[lay["se_top"]: lay["se_bottom"]]
            slab = se_slab_labels(u[lay["se_top"]: lay["se_bottom"]], pellet, VOXEL_UM,
                                  dict(opts, transparent_level=float(level)))
            pred = ((slab == Material.VACUUM) | (slab == Material.LI)) & pellet[None]
            tr = ((se_true == Material.VACUUM) | (se_true == Material.LI)) & pellet[None]
            ct = crack_mask(tr, VOXEL_UM).sum()
            cp = crack_mask(pred, VOXEL_UM).sum()
            # crack-free states weigh false cracks against a crack of CRACK_SCALE_UM3
            err.append(abs(cp - ct) / max(ct, CRACK_SCALE_UM3 / VOXEL_UM**3)
                       + 0.5 * abs(int(pred.sum()) - int(tr.sum())) / max(int(tr.sum()), 1))
        e = float(np.mean(err))
        if best is None or e < best[0]:
            best = (e, float(level))
    model["options"] = dict(opts, transparent_level=round(best[1], 3))
    seeds = sorted({s for ch in chemistries for s in TUNE_SEEDS_BY_CHEMISTRY.get(ch, TUNE_SEEDS)})
    model["tuned_on"] = {"seeds": seeds, "chemistries": list(chemistries),
                         "reconstruction": "sscell_live.recon, Paganin delta/beta 50, sorting ring removal",
                         "angles": list(TUNE_ANGLES)}
    print(chemistries, "reference face errors (top, bottom) after the face model", face_err, flush=True)
    print(chemistries, "transparent level", best, "contact score threshold", model["top"]["contact_score"], model["bottom"]["contact_score"], flush=True)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", type=Path, default=None, help="directory of cached <state>.npz scans")
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    args = ap.parse_args(argv)
    models = {}
    for group in ("lps", "lsps", "llzo", "all"):
        chems = ("lps", "lsps", "llzo") if group == "all" else (group,)
        models[group] = tune(chems, args.cache)
    args.out.write_text(json.dumps(_rounded(models), separators=(",", ":")) + "\n")
    return 0


def _rounded(x):
    """Floats to 7 significant digits (float32 precision: the network runs in float32), recursively."""
    if isinstance(x, float):
        return float(f"{x:.7g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


if __name__ == "__main__":
    raise SystemExit(main())
