"""Classical segmentation: held calibration, stack layout, Lewis column algorithm, SE transparency.

Pipeline (``Calibration.fit`` once per experiment, ``Calibration.apply`` on every scan)
--------------------------------------------------------------------------------------
1. **Grey levels, fitted once.** On the first scan (or a reference) the
   median grey value of the central columns is taken along the cell axis;
   the layers group into three levels: *low* (Li and anything transparent),
   *SE*, *steel*. Every later scan is normalised with the *same* levels,
   ``u = (grey - low) / (SE - low)`` (Dixit-LPS: re-fitting per scan
   creates false trends). Housing and the pellet radius are geometry, found
   again on each scan.
2. **Layout.** Layers are classed by their nearest level: the SE slab is the
   longest SE run, steel slabs touch the volume ends; pellet columns are the
   disk of the steel (or SE) layers, fitted as a circle.
3. **Electrodes, column by column (Lewis-LSPS).** For each pellet column the
   grey profile across the SE face (laterally smoothed over
   ``lateral_sigma_um``) gives the interphase height and the interfacial void
   height through a linear model of the profile (weights tuned on twin seeds
   101-103, shipped in ``column_model.json``); a column is in contact when
   the predicted void height is below ``contact_void_um``. From the SE face
   outwards a column is filled interphase, void, Li up to the current
   collector face (half-way crossing to the steel level), then steel.
   Void heights are rounded with error diffusion so their sum (the void
   volume) is kept.
4. **SE.** Voxels of the SE slab whose smoothed level is below
   ``transparent_level`` are transparent (code 0: pores, cracks and Li in
   the SE cannot be told apart at these contrasts, SCIENCE.md 1); cracks are
   then found by the metrics (``crack_mask``).

Physical units: lateral smoothing and the contact criterion are in um; the
linear column model was tuned at 1.5 um voxels with the project's
reconstruction after a partial Paganin retrieval (delta/beta 50), so other
voxel sizes or reconstructions need a re-tune (:func:`fit_column_model`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..registry import Material

__all__ = [
    "Calibration",
    "SegmentationError",
    "check_volume",
    "column_features",
    "fit_column_model",
    "load_column_model",
    "segment",
]

MODEL_PATH = Path(__file__).with_name("column_model.json")
#: Profile samples on the electrode side of the face and inside the SE.
K_OUT = 10
K_IN = 3


class SegmentationError(ValueError):
    """The grey volume cannot be segmented (no cell, constant, wrong shape)."""


def check_volume(volume) -> np.ndarray:
    """A 3-D real grey volume as float32, or a clear error."""
    a = np.asarray(volume)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"grey volume must be a real numeric array, got dtype {a.dtype}")
    if a.ndim != 3:
        raise ValueError(f"grey volume must be 3-D (z, y, x), got shape {a.shape}")
    if min(a.shape) < 4:
        raise ValueError(f"grey volume too small to segment: shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError("grey volume holds NaN or infinite values")
    if float(a.max()) == float(a.min()):
        raise SegmentationError("grey volume is constant: nothing to segment")
    return a


def _check_voxel(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"voxel_size_um must be a positive number, got {v!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"voxel_size_um must be a positive number, got {v}")
    return v


def load_column_model(preset: str | None = None, path=MODEL_PATH) -> dict:
    """The shipped linear column model (weights and thresholds) of an electrolyte family.

    ``preset``: ``"lps"``, ``"lsps"``, ``"llzo"`` (tuned on twin scans of that
    chemistry and energy) or None for the model tuned on all three.
    """
    with open(path) as fh:
        models = json.load(fh)
    key = preset or "all"
    if key not in models:
        raise ValueError(f"no column model for preset {preset!r}; choose one of {sorted(k for k in models if k != 'all')}")
    return models[key]


def _central_profile(vol: np.ndarray) -> np.ndarray:
    """Median grey value per z layer over the central columns (inside any pellet)."""
    ny, nx = vol.shape[1:]
    r = max(2, min(ny, nx) // 8)
    cy, cx = ny // 2, nx // 2
    return np.median(vol[:, cy - r: cy + r, cx - r: cx + r].reshape(vol.shape[0], -1), axis=1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _trimmed_median(x: np.ndarray, trim: float = 0.25) -> float:
    n = len(x)
    k = int(n * trim)
    return float(np.median(x[k: n - k] if n - 2 * k > 0 else x))


def _classify_layers(p: np.ndarray, levels: dict) -> np.ndarray:
    """0 low, 1 SE, 2 steel per layer: nearest level (steel only if fitted)."""
    cand = [levels["low"], levels["se"]] + ([levels["steel"]] if levels.get("steel") is not None else [])
    cls = np.argmin(np.abs(p[:, None] - np.asarray(cand)[None]), axis=1)
    # single-layer blips do not split runs
    return ndimage.median_filter(cls, size=3, mode="nearest")


@dataclass
class Calibration:
    """Grey levels and model of one experiment, fitted on its first scan and held.

    Attributes
    ----------
    voxel_size_um : float
    low, se : float
        Grey levels of Li/transparent material and of the SE (volume units).
    steel : float or None
        Current-collector level (None: no steel in the reference scan).
    housing_u : float
        Housing level in normalised units (0 = low, 1 = SE).
    options : dict
        ``lateral_sigma_um``, ``transparent_level``, ``contact_void_um``,
        ``transparent_sigma_um`` (see :func:`segment`).
    model : dict
        Linear column model (:func:`fit_column_model`).
    """

    voxel_size_um: float
    low: float
    se: float
    steel: float | None
    housing_u: float
    options: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    # ---- persistence -------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**d)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ---- fitting -------------------------------------------------------------------
    @classmethod
    def fit(cls, volume, voxel_size_um, model: dict | None = None, preset: str | None = None,
            **options) -> Calibration:
        """Fit grey levels on a reference scan (the experiment's first).

        ``preset`` picks the column model tuned for an electrolyte family
        (``lps``, ``lsps``, ``llzo``); None: the model tuned on all three.

        Raises
        ------
        SegmentationError
            No low / SE / low stack along the axis (no cell, no SE, no Li).
        """
        v = _check_voxel(voxel_size_um)
        vol = check_volume(volume)
        model = load_column_model(preset) if model is None else model
        opts = dict(model.get("options", {}))
        opts.update(options)
        p = _central_profile(ndimage.uniform_filter1d(vol, 3, axis=0))
        if np.ptp(p) <= 0:
            raise SegmentationError("grey volume has no contrast along the cell axis")
        nz = len(p)
        # the stack is steel | Li | SE | Li | steel: the SE holds the middle of the axis
        mid = p[int(0.4 * nz): max(int(0.6 * nz), int(0.4 * nz) + 1)]
        se = float(np.median(mid)) if options.get("se_level") is None else float(options["se_level"])
        li = p[p < 0.5 * se] if se > 0 else p[p < se]
        if li.size == 0:
            raise SegmentationError("no Li (or transparent) layers found along the cell axis")
        low = float(np.percentile(li, 10))
        steel = None
        k = max(2, nz // 60)
        ends = [float(np.median(p[:k])), float(np.median(p[-k:]))]
        far = [e for e in ends if abs(e - se) > 0.3 * (se - low) and abs(e - low) > 0.3 * (se - low)]
        if far:
            steel = float(np.mean(far))
        if not se > low:
            raise SegmentationError("no solid-electrolyte level above the Li level")
        cal = cls(voxel_size_um=v, low=low, se=se, steel=steel, housing_u=0.0, options=opts, model=model)
        u = cal.normalise(vol)
        lay = cal.layout(u)
        cy, cx, rad = lay["centre_y"], lay["centre_x"], lay["radius"]
        yy, xx = np.mgrid[: u.shape[1], : u.shape[2]]
        ring = (np.hypot(yy - cy, xx - cx) > rad + 1.5) & (np.hypot(yy - cy, xx - cx) < rad + 3.5)
        if ring.any():
            cal.housing_u = float(np.median(u[:, ring]))
        return cal

    # ---- applying ------------------------------------------------------------------
    def normalise(self, vol: np.ndarray) -> np.ndarray:
        return ((vol - np.float32(self.low)) / np.float32(self.se - self.low)).astype(np.float32, copy=False)

    def _levels_u(self) -> dict:
        s = None if self.steel is None else (self.steel - self.low) / (self.se - self.low)
        return {"low": 0.0, "se": 1.0, "steel": s}

    def layout(self, u: np.ndarray) -> dict:
        """SE slab (z), steel layers and pellet circle of a normalised volume."""
        nz, ny, nx = u.shape
        p = _central_profile(u)
        cls_ = _classify_layers(p, self._levels_u())
        se_runs = _runs(cls_ == 1)
        if not se_runs:
            raise SegmentationError("no solid-electrolyte slab found along the cell axis")
        a, b = max(se_runs, key=lambda r: r[1] - r[0])
        # refine the faces at the half-way crossing between the electrode and the SE
        se_top, se_bottom = a, b
        while se_top > 0 and p[se_top - 1] >= 0.5:
            se_top -= 1
        while se_top < b - 1 and p[se_top] < 0.5:
            se_top += 1
        while se_bottom < nz and p[se_bottom] >= 0.5:
            se_bottom += 1
        while se_bottom > se_top + 1 and p[se_bottom - 1] < 0.5:
            se_bottom -= 1
        if (cls_[:se_top] == 1).all() or (cls_[se_bottom:] == 1).all():
            pass
        steel_layers = np.flatnonzero(cls_ == 2)
        steel_layers = steel_layers[(steel_layers < se_top) | (steel_layers >= se_bottom)]
        # pellet disk: steel (or SE) layers, threshold half-way to the housing
        levels = self._levels_u()
        if steel_layers.size and levels["steel"] is not None:
            img = u[steel_layers].mean(axis=0)
            hi = levels["steel"]
        else:
            img = u[se_top:se_bottom].mean(axis=0)
            hi = 1.0
        img = ndimage.gaussian_filter(img, 1.0)
        # 35 % of the way from housing to steel: the Paganin halo widens the disk (tuned on seeds 101-103)
        disk = img > self.housing_u + 0.35 * (hi - self.housing_u)
        lab, n = ndimage.label(disk)
        if n == 0:
            raise SegmentationError("no pellet columns found")
        big = np.argmax(np.bincount(lab.ravel())[1:]) + 1
        disk = lab == big
        yy, xx = np.nonzero(disk)
        cy, cx = float(yy.mean()), float(xx.mean())
        radius = float(np.sqrt(disk.sum() / np.pi))
        # a disk cut by the field of view: use the maximum distance instead
        touches = yy.min() == 0 or xx.min() == 0 or yy.max() == ny - 1 or xx.max() == nx - 1
        if touches:
            cy, cx = (ny - 1) / 2, (nx - 1) / 2
            radius = float(np.hypot(yy - cy, xx - cx).max())
        return {"se_top": int(se_top), "se_bottom": int(se_bottom), "steel_layers": steel_layers,
                "centre_y": cy, "centre_x": cx, "radius": radius, "profile": p}

    def apply(self, volume) -> np.ndarray:
        """Material labels (uint8, ``registry.Material``) of a grey volume with the held calibration."""
        vol = check_volume(volume)
        v = self.voxel_size_um
        o = {**self.model.get("options", {}), **self.options}
        u = self.normalise(vol)
        lay = self.layout(u)
        _, ny, nx = u.shape
        yy, xx = np.mgrid[:ny, :nx]
        r = np.hypot(yy - lay["centre_y"], xx - lay["centre_x"])
        pellet = r <= lay["radius"]
        labels = np.zeros(u.shape, dtype=np.uint8)
        # housing ring: outside the pellet, above half the housing level, averaged over z
        if self.housing_u > 0.15:
            outer = ndimage.gaussian_filter(u.mean(axis=0), 1.0) > 0.5 * self.housing_u
            housing = outer & ~pellet & (r <= lay["radius"] + max(ny, nx))
            labels[:, housing] = Material.HOUSING
        se_top, se_bottom = lay["se_top"], lay["se_bottom"]
        # SE slab
        sig = float(o.get("transparent_sigma_um", 0.0)) / v
        se_u = u[se_top:se_bottom]
        if sig > 0:
            se_u = ndimage.gaussian_filter(se_u, sig)
        transparent = se_u < float(o.get("transparent_level", 0.5))
        slab = np.where(transparent, Material.VACUUM, Material.SE).astype(np.uint8)
        labels[se_top:se_bottom][:, pellet] = slab[:, pellet]
        # electrodes
        lsig = float(o.get("lateral_sigma_um", 1.5)) / v
        us = ndimage.gaussian_filter(u, (0.0, lsig, lsig)) if lsig > 0 else u
        steel_u = self._levels_u()["steel"]
        for side in ("top", "bottom"):
            region = u[:se_top][::-1] if side == "top" else u[se_bottom:]
            depth = region.shape[0]
            if depth == 0:
                continue
            feats = column_features(us, se_top, se_bottom, side)
            sm = self.model[side]
            hv, hi = predict_columns(sm, feats)
            contact = hv * v < float(o.get("contact_void_um", sm["contact_void_um"]))
            hv = np.where(contact, 0.0, np.maximum(hv, 1.0))
            hv_i = _diffused_round(hv, pellet)
            hi_i = _diffused_round(np.maximum(hi, 0.0), pellet)
            # collector face: first layer from the SE face above half the steel level
            if steel_u is not None and steel_u > 0.3:
                heavy = ndimage.gaussian_filter(region, (0.0, 2.0 / v * 1.5, 2.0 / v * 1.5))
                above = heavy > 0.5 * steel_u
                above[: min(depth, 3)] = False
                has = above.any(axis=0)
                steel_at = np.where(has, np.argmax(above, axis=0), depth)
            else:
                steel_at = np.full((ny, nx), depth)
            idx = np.arange(depth)[:, None, None]
            col = np.full((depth, ny, nx), Material.LI, dtype=np.uint8)
            col[idx < hi_i[None]] = Material.INTERPHASE
            col[(idx >= hi_i[None]) & (idx < (hi_i + hv_i)[None])] = Material.VACUUM
            col[idx >= steel_at[None]] = Material.STEEL
            tgt = labels[:se_top][::-1] if side == "top" else labels[se_bottom:]
            tgt[:, pellet] = col[:, pellet]
        return labels


def _diffused_round(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Integer heights whose running sum follows the real ones (raster order inside ``mask``)."""
    out = np.zeros(h.shape, dtype=np.int32)
    vals = h[mask].astype(np.float64)
    c = np.round(np.cumsum(vals))
    ints = np.diff(np.concatenate([[0.0], c])).astype(np.int32)
    # keep nonzero heights nonzero (a void column stays a void column)
    ints = np.where((vals >= 1.0) & (ints < 1), 1, ints)
    out[mask] = ints
    return out


def column_features(us: np.ndarray, se_top: int, se_bottom: int, side: str) -> np.ndarray:
    """Profile of each column across one SE face: (y, x, 1 + K_OUT + K_IN) features.

    Samples ``K_OUT`` layers on the electrode side (nearest the face first) and
    ``K_IN`` inside the SE, in normalised units; out-of-volume samples repeat
    the last layer.
    """
    nz = us.shape[0]
    if side == "top":
        zs = [se_top - 1 - k for k in range(K_OUT)] + [se_top + k for k in range(K_IN)]
    else:
        zs = [se_bottom + k for k in range(K_OUT)] + [se_bottom - 1 - k for k in range(K_IN)]
    zs = np.clip(zs, 0, nz - 1)
    f = us[zs].transpose(1, 2, 0)
    return np.concatenate([np.ones(f.shape[:2] + (1,), np.float32), f], axis=2)


def _expand(f: np.ndarray) -> np.ndarray:
    """Linear features plus clipped copies (a piecewise-linear response)."""
    base = f[..., 1:]
    return np.concatenate([f, np.clip(base, -1, 0.5), np.clip(base, 0.5, 2)], axis=-1)


def predict_columns(model: dict, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(void height, interphase height) per column, voxels."""
    x = _expand(feats)
    wv = np.asarray(model["w_void"], dtype=np.float32)
    wi = np.asarray(model["w_interphase"], dtype=np.float32)
    return x @ wv, x @ wi


def fit_column_model(feature_list, void_list, inter_list, contact_list, voxel_size_um: float,
                     ridge: float = 1.0) -> dict:
    """Ridge regression of void and interphase heights on column profiles; contact threshold.

    Each list holds one array per (scan, side): features (n, F), void and
    interphase heights (n,) in voxels, contact (n,) bool. The contact
    threshold on the predicted void height is chosen so that the summed
    contact-fraction error over the training scans is smallest.
    """
    X = np.concatenate([_expand(f) for f in feature_list]).astype(np.float64)
    yv = np.concatenate(void_list).astype(np.float64)
    yi = np.concatenate(inter_list).astype(np.float64)
    reg = ridge * np.eye(X.shape[1])
    reg[0, 0] = 0
    A = X.T @ X + reg
    wv = np.linalg.solve(A, X.T @ yv)
    wi = np.linalg.solve(A, X.T @ yi)
    best = (np.inf, 1.0)
    for t in np.arange(0.3, 3.0, 0.05):
        err = 0.0
        for f, c in zip(feature_list, contact_list):
            hv = _expand(f) @ wv
            err += abs(np.mean(hv < t) - np.mean(c))
        if err < best[0]:
            best = (err, float(t))
    return {"w_void": wv.tolist(), "w_interphase": wi.tolist(), "contact_void_um": best[1] * voxel_size_um,
            "voxel_size_um": voxel_size_um, "k_out": K_OUT, "k_in": K_IN}


def segment(volume, voxel_size_um, *, calibration: Calibration | None = None, **options) -> np.ndarray:
    """Segment a reconstructed grey volume into material labels.

    Parameters
    ----------
    volume : ndarray (z, y, x), real
        Reconstructed attenuation (z along the cell axis, steel | Li | SE | Li | steel).
    voxel_size_um : float
        Voxel edge, um (> 0).
    preset : {"lps", "lsps", "llzo"}, optional (keyword, via options)
        Column model of that electrolyte family when fitting here.
    calibration : Calibration, optional
        Levels fitted on the experiment's first scan (``Calibration.fit``);
        hold it for every later scan. Without it the levels are fitted on
        this volume (fine for one volume, wrong for a time series).
    **options
        Overrides, physical units: ``lateral_sigma_um`` (smoothing of the
        column profiles, default 1.5), ``transparent_level`` (SE voxels
        below this normalised level are transparent), ``transparent_sigma_um``,
        ``contact_void_um`` (void height below which a column is in contact).

    Returns
    -------
    ndarray uint8 (z, y, x)
        ``registry.Material`` codes.

    Raises
    ------
    TypeError
        Non-numeric dtype.
    ValueError
        Bad shape, non-finite values, voxel size not positive;
        :class:`SegmentationError` for a constant volume or no cell stack.
    """
    v = _check_voxel(voxel_size_um)
    if calibration is None:
        calibration = Calibration.fit(volume, v, **options)
        options = {}
    elif options:
        calibration = replace(calibration, options={**calibration.options, **options})
    if abs(calibration.voxel_size_um - v) > 1e-9 * v:
        raise ValueError(f"voxel_size_um {v} differs from the calibration's {calibration.voxel_size_um}")
    return calibration.apply(volume)
