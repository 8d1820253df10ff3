"""``compare``: what changed between two scans of one cell.

Local current density (Dixit-LLZO): ``j = dt_Li * F / (elapsed * V_Li)``
per column, positive where Li was plated onto that electrode. One voxel of
thickness error over 15 min is about 1.2 mA/cm2, so:

- the map is binned laterally (``bin_um``);
- when the grey volumes are given, the collector faces (the strong steel|Li
  edge) are located to a fraction of a voxel (``subvoxel``); the far edge of
  the Li (SE face, void or interphase) comes from the labels;
- the collector is rigid and flat, so its quantisation to the voxel grid is
  an error *common* to every column that binning cannot remove. With
  ``anchor="charge"`` (default) the stripping electrode's mean is set by
  coulometry instead (it loses ``|Q| V_Li / F`` of Li metal). The plating
  electrode keeps its imaged mean and the common uncertainty: there the
  charge is shared between Li metal, Li in the SE and new interphase, in
  proportions the labels cannot give. The imaged mean stays in the output.

Every bin carries its standard uncertainty (quantisation v/sqrt(12) per
labelled edge, grey noise propagated through the edge fit, divided by the
square root of the columns in the bin where errors are independent).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..registry import FARADAY_C_MOL, LI_MOLAR_VOLUME_CM3_MOL, Material
from ._checks import check_labels, check_voxel_size
from .interface import electrode_region
from .layout import CellLayout, find_layout
from .measure import measure
from .subvoxel import collector_face_vox, noise_level, phase_level

__all__ = ["compare", "current_density_mA_cm2_per_um", "li_thickness_maps"]

SIDES = ("top", "bottom")


def current_density_mA_cm2_per_um(elapsed_s: float) -> float:
    """mA/cm2 of local current per um of Li thickness change over ``elapsed_s``."""
    return 1e-4 * FARADAY_C_MOL / (elapsed_s * LI_MOLAR_VOLUME_CM3_MOL) * 1e3


def _unpack(scan, name):
    if isinstance(scan, Mapping):
        if "labels" not in scan:
            raise ValueError(f"{name} must be a label volume or a mapping with 'labels' (and optional 'grey')")
        labels, grey = scan["labels"], scan.get("grey")
    else:
        labels, grey = scan, None
    labels = check_labels(labels, name)
    if grey is not None:
        grey = np.asarray(grey)
        if grey.shape != labels.shape:
            raise ValueError(f"{name}: grey shape {grey.shape} differs from labels shape {labels.shape}")
        if not np.issubdtype(grey.dtype, np.floating) or not np.isfinite(grey).all():
            raise ValueError(f"{name}: grey must be a finite floating-point volume")
    return labels, grey


def li_thickness_maps(labels: np.ndarray, layout: CellLayout, grey: np.ndarray | None = None,
                      window: int = 3) -> dict:
    """Li thickness per column and its standard uncertainty, per side, um.

    Returns
    -------
    dict
        ``{side: (thickness (y, x), sigma_random (y, x), sigma_common float,
        collector_um float or None)}``: ``sigma_random`` is independent from
        column to column (shrinks with binning), ``sigma_common`` is shared by
        all columns (a flat collector face quantised to the voxel grid).
    """
    v = layout.voxel_size_um
    pellet = layout.pellet
    q = v / np.sqrt(12.0)  # rms error of an edge known to the voxel
    out = {}
    levels = None
    if grey is not None:
        try:
            steel = labels == Material.STEEL
            li = (labels == Material.LI)
            li[layout.se_top:layout.se_bottom] = False  # electrode Li only
            levels = (phase_level(grey, steel), phase_level(grey, li), noise_level(grey, li), noise_level(grey, steel))
        except ValueError:
            levels = None
    for side in SIDES:
        region = electrode_region(labels, layout, side)
        li = (region == Material.LI) & pellet[None]
        steel = region == Material.STEEL
        li_cols = li.sum(axis=0).astype(np.float64)
        has_steel = steel.any(axis=0) & pellet
        # the far edge (Li against SE, void or interphase): exact when the Li
        # sits on the SE face (a fixed voxel boundary), quantised otherwise
        first = region[0] if region.shape[0] else np.zeros(pellet.shape, np.uint8)
        # floor: the twin and real cells are never exactly voxel-aligned
        sigma_far = np.where(first == Material.LI, 0.05 * v, q)
        thick = li_cols * v
        sigma_common = q
        collector = None
        if has_steel.any():
            first_steel = np.argmax(steel, axis=0)
            k = layout.se_top - first_steel if side == "top" else layout.se_bottom + first_steel
            collector = float(k[has_steel].mean() * v)
            if levels is not None and levels[0] != levels[1]:
                a, b, s_li, s_st = levels
                fit = collector_face_vox(grey, np.where(has_steel & (li_cols > window), k, -1), a, b, side, window)
                ok = np.isfinite(fit)
                if ok.any():
                    # thinner Li when the fitted face lies further from the SE than the label face
                    shift = np.where(ok, fit - k, 0.0) * v
                    thick = thick - shift if side == "top" else thick + shift
                    collector = float(fit[ok].mean() * v)
                    contrast = abs(a - b)
                    s_noise = np.sqrt(window * (s_li**2 + s_st**2)) / contrast * v
                    sigma_far = np.where(ok, np.sqrt(sigma_far**2 + s_noise**2), np.sqrt(sigma_far**2 + q**2))
                    # the fit removes the collector's quantisation only where the grey
                    # holds sub-voxel information; keep the voxel bound on the common part
                    sigma_common = q
        out[side] = (np.where(pellet, thick, 0.0), np.where(pellet, sigma_far, 0.0), float(sigma_common), collector)
    return out


def _bin_mean(a: np.ndarray, mask: np.ndarray, b: int, min_share: float = 0.5):
    ny, nx = a.shape
    py, px = (-ny) % b, (-nx) % b
    a = np.pad(np.where(mask, a, 0.0), ((0, py), (0, px)))
    m = np.pad(mask.astype(np.float64), ((0, py), (0, px)))
    sh = (a.shape[0] // b, b, a.shape[1] // b, b)
    s = a.reshape(sh).sum(axis=(1, 3))
    n = m.reshape(sh).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n >= min_share * b * b, s / np.maximum(n, 1), np.nan)
    return mean, n


def compare(previous, current, elapsed_s, charge_C, voxel_size_um, *, bin_um: float = 6.0, window: int = 3,
            anchor: str = "charge", hotspot_factor: float = 2.0, hotspot_sigmas: float = 3.0,
            **measure_options) -> dict:
    """Pairwise metrics between two scans of the same cell.

    Parameters
    ----------
    previous, current : ndarray uint8 (z, y, x) or mapping
        Label volumes, or mappings ``{"labels": ..., "grey": ...}`` with the
        reconstructed grey volume (same shape) for sub-voxel collector faces.
    elapsed_s : float
        Cell time between the scans, s (> 0).
    charge_C : float
        Signed charge passed between the scans, C (positive strips the top).
    voxel_size_um : float
    bin_um : float
        Lateral bin of the current-density map, um (rounded to voxels).
    window : int
        Half-width of the sub-voxel edge window, voxels.
    anchor : {"charge", "none"}
        ``"charge"``: the stripping electrode's mean current density from the
        charge passed (see module docstring); ``"none"``: the imaged thickness change.
    hotspot_factor, hotspot_sigmas : float
        A hotspot is a bin whose plating current density exceeds
        ``hotspot_factor`` times the mean plating current density of the
        electrode, by more than ``hotspot_sigmas`` of its uncertainty.
    **measure_options
        Passed to :func:`measure` for crack growth and volume changes.

    Returns
    -------
    dict
        ``current_density_map_{side}`` (mA/cm2, bins (y, x), NaN outside the
        pellet), ``current_density_sigma_map_{side}`` (mA/cm2),
        ``current_density_mean_{side}_mA_cm2`` (the map's mean),
        ``current_density_imaged_mean_{side}_mA_cm2`` (before anchoring), ``nominal_current_density_mA_cm2``
        (from ``charge_C`` over the pellet area), ``hotspots_{side}`` (list of
        dicts y_um, x_um, j_mA_cm2, sigma_mA_cm2), ``bin_um``,
        ``li_thickness_change_map_{side}_um`` (per column),
        ``collector_displacement_{side}_um`` (+ = towards +z),
        ``interface_displacement_{side}_um``, ``stack_thickness_change_um``,
        ``li_volume_change_{side}_um3``, ``void_volume_change_{side}_um3``,
        ``contact_fraction_change_{side}``, ``crack_volume_change_um3``,
        ``crack_growth_rate_um3_s``, ``crack_penetration_change``,
        ``crack_count_change``.
    """
    v = check_voxel_size(voxel_size_um)
    try:
        dt = float(elapsed_s)
    except (TypeError, ValueError):
        raise ValueError(f"elapsed_s must be a positive number of s, got {elapsed_s!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"elapsed_s must be a positive finite number of s, got {elapsed_s!r}")
    if charge_C is None or not np.isfinite(float(charge_C)):
        raise ValueError(f"charge_C must be a finite number of C, got {charge_C!r}")
    if anchor not in ("charge", "none"):
        raise ValueError(f"anchor must be 'charge' or 'none', got {anchor!r}")
    lab0, grey0 = _unpack(previous, "previous")
    lab1, grey1 = _unpack(current, "current")
    if lab0.shape != lab1.shape:
        raise ValueError(f"previous and current differ in shape: {lab0.shape} vs {lab1.shape}")
    lay0, lay1 = find_layout(lab0, v), find_layout(lab1, v)
    pellet = lay0.pellet & lay1.pellet
    t0 = li_thickness_maps(lab0, lay0, grey0, window)
    t1 = li_thickness_maps(lab1, lay1, grey1, window)
    m0 = measure(lab0, v, **measure_options)
    m1 = measure(lab1, v, **measure_options)
    k = current_density_mA_cm2_per_um(dt)
    b = max(1, round(bin_um / v))
    area_cm2 = pellet.sum() * v * v * 1e-8
    j_nom = float(charge_C) / dt / area_cm2 * 1e3 if area_cm2 else 0.0
    out: dict = {"bin_um": b * v, "elapsed_s": dt, "charge_C": float(charge_C),
                 "nominal_current_density_mA_cm2": j_nom, "anchor": anchor}
    strip = "top" if charge_C > 0 else "bottom" if charge_C < 0 else None
    for side in SIDES:
        th0, sr0, sc0, c0 = t0[side]
        th1, sr1, sc1, c1 = t1[side]
        dmap = np.where(pellet, th1 - th0, 0.0)
        out[f"li_thickness_change_map_{side}_um"] = dmap.astype(np.float32)
        imaged_um = float(dmap[pellet].mean()) if pellet.any() else 0.0
        var_common = sc0**2 + sc1**2
        if anchor == "charge" and side == strip:
            # every coulomb at the stripping electrode comes out of its Li metal
            dmap = np.where(pellet, dmap - imaged_um - abs(j_nom) / k, 0.0)
            var_common = 0.0  # the flat collector's quantisation left with the imaged mean
        mean, n = _bin_mean(dmap, pellet, b)
        var_r, _ = _bin_mean(sr0**2 + sr1**2, pellet, b)
        sigma = np.sqrt(var_r / np.maximum(n, 1) + var_common)
        jmap = mean * k
        smap = np.where(np.isfinite(mean), sigma * k, np.nan)
        out[f"current_density_map_{side}"] = jmap
        out[f"current_density_sigma_map_{side}"] = smap
        jmean = float(dmap[pellet].mean() * k) if pellet.any() else 0.0
        out[f"current_density_mean_{side}_mA_cm2"] = jmean
        out[f"current_density_imaged_mean_{side}_mA_cm2"] = imaged_um * k
        hot = []
        if jmean > 0:  # plating electrode: where does the Li go?
            sel = np.isfinite(jmap) & (jmap > hotspot_factor * jmean) & (jmap - jmean > hotspot_sigmas * smap)
            for iy, ix in zip(*np.nonzero(sel)):
                hot.append({"y_um": float((iy + 0.5) * b * v), "x_um": float((ix + 0.5) * b * v),
                            "j_mA_cm2": float(jmap[iy, ix]), "sigma_mA_cm2": float(smap[iy, ix])})
        out[f"hotspots_{side}"] = hot
        out[f"collector_displacement_{side}_um"] = (c1 - c0) if (c0 is not None and c1 is not None) else None
        face0 = (lay0.se_top if side == "top" else lay0.se_bottom) * v
        face1 = (lay1.se_top if side == "top" else lay1.se_bottom) * v
        out[f"interface_displacement_{side}_um"] = face1 - face0
        for key in ("li_volume_{}_um3", "void_volume_{}_um3", "contact_fraction_{}"):
            name = key.format(side)
            out[(name.removesuffix("_um3")) + ("_change_um3" if name.endswith("_um3") else "_change")] = (
                m1[name] - m0[name])
    c_top0, c_bot0 = t0["top"][3], t0["bottom"][3]
    c_top1, c_bot1 = t1["top"][3], t1["bottom"][3]
    out["stack_thickness_change_um"] = (
        (c_bot1 - c_top1) - (c_bot0 - c_top0) if None not in (c_top0, c_bot0, c_top1, c_bot1) else None)
    out["crack_volume_change_um3"] = m1["crack_volume_um3"] - m0["crack_volume_um3"]
    out["crack_growth_rate_um3_s"] = out["crack_volume_change_um3"] / dt
    out["crack_penetration_change"] = m1["crack_penetration_fraction"] - m0["crack_penetration_fraction"]
    out["crack_count_change"] = m1["crack_count"] - m0["crack_count"]
    return out
