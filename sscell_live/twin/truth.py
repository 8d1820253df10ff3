"""Ground-truth maps the metrics are checked against (pure functions).

These complement ``state.bookkeeping`` (scalar metrics counted on the voxel
truth) with maps and pairwise quantities: porosity-factor maps, sub-surface
porosity, crack labels, the local current density between two states.
"""

from __future__ import annotations

import numpy as np

from ..registry import FARADAY_C_MOL, LI_MOLAR_VOLUME_CM3_MOL, Semantic
from .geometry import CellGeometry
from .state import CellState, crack_voxel_masks

__all__ = [
    "current_density_map_mA_cm2",
    "porosity_factor_maps",
    "subsurface_porosity_map",
    "crack_label_volume",
    "void_height_map_um",
]


def current_density_map_mA_cm2(li_before_um: np.ndarray, li_after_um: np.ndarray, elapsed_s: float) -> np.ndarray:
    """Local current density from the change of Li thickness (Dixit-LLZO).

    ``j = (t2 - t1) * F / (dt * V_Li)``: positive where Li was plated onto
    this electrode, negative where it was stripped.

    Parameters
    ----------
    li_before_um, li_after_um : ndarray (y, x)
        Li thickness per column, um.
    elapsed_s : float
        Time between the two states, s.

    Returns
    -------
    ndarray (y, x), mA/cm2
    """
    if not elapsed_s > 0:
        raise ValueError(f"elapsed_s must be > 0 s, got {elapsed_s!r}")
    dt_cm = (np.asarray(li_after_um, float) - np.asarray(li_before_um, float)) * 1e-4
    return dt_cm * FARADAY_C_MOL / (elapsed_s * LI_MOLAR_VOLUME_CM3_MOL) * 1e3


def porosity_factor_maps(semantic: np.ndarray, geometry: CellGeometry, cube_um: float = 30.0) -> dict:
    """Porosity factor d = phi / phi0 - 1 on cubes of ``cube_um`` (Dixit-LPS).

    Counts SE pores (and Li-filled pores) in the SE slab, per cube of pellet
    voxels; ``phi0`` is the porosity of the whole pellet.

    Returns
    -------
    dict
        ``in_plane`` (y-blocks, x-blocks), averaged through the thickness;
        ``through_plane`` (z-blocks, x-blocks), averaged along y;
        ``phi0``. Cubes with no pellet voxel are NaN.
    """
    g = geometry
    se = semantic[g.se_top_index : g.se_bottom_index]
    pellet = np.broadcast_to(g.pellet_mask()[None], se.shape)
    porous = (se == Semantic.SE_PORE) | (se == Semantic.LI_IN_PORE)
    b = max(1, round(cube_um / g.voxel_size_um))
    phi0 = porous[pellet].mean()

    def block_sum(a, axes_keep):
        # sum over blocks of b along every axis, then over the axes not kept
        nz, ny, nx = a.shape
        pad = [(0, (-n) % b) for n in a.shape]
        a = np.pad(a, pad)
        s = a.reshape(a.shape[0] // b, b, a.shape[1] // b, b, a.shape[2] // b, b).sum(axis=(1, 3, 5))
        drop = tuple(ax for ax in range(3) if ax not in axes_keep)
        return s.sum(axis=drop)

    out = {"phi0": float(phi0)}
    for name, keep in (("in_plane", (1, 2)), ("through_plane", (0, 2))):
        pores = block_sum((porous & pellet).astype(np.int64), keep)
        count = block_sum(pellet.astype(np.int64), keep)
        with np.errstate(invalid="ignore", divide="ignore"):
            phi = np.where(count > 0, pores / count, np.nan)
        out[name] = phi / phi0 - 1 if phi0 > 0 else np.zeros_like(phi)
    return out


def subsurface_porosity_map(semantic: np.ndarray, geometry: CellGeometry, side: str, depth_um: float = 30.0) -> np.ndarray:
    """Porosity of the SE within ``depth_um`` of one face, averaged along the axis, (y, x).

    Transparent voxels (pores, cracks, Li in the SE) count; NaN outside the pellet.
    """
    g = geometry
    d = max(1, round(depth_um / g.voxel_size_um))
    se = semantic[g.se_top_index : g.se_bottom_index]
    slab = se[:d] if side == "top" else se[-d:]
    transparent = np.isin(slab, [Semantic.SE_PORE, Semantic.LI_IN_PORE, Semantic.CRACK, Semantic.LI_IN_CRACK])
    out = transparent.mean(axis=0)
    return np.where(g.pellet_mask(), out, np.nan)


def crack_label_volume(state: CellState) -> np.ndarray:
    """Crack id per voxel of the SE slab (0 none, k = index of the crack + 1), int16 (z_se, y, x)."""
    g = state.geometry
    lab = np.zeros((g.se_voxels, g.n_lateral, g.n_lateral), dtype=np.int16)
    pellet = g.pellet_mask()
    for k, (box, crack, _li) in enumerate(crack_voxel_masks(state), start=1):
        view = lab[box]
        view[crack & pellet[box[1], box[2]][None] & (view == 0)] = k
    return lab


def void_height_map_um(semantic: np.ndarray, geometry: CellGeometry, side: str) -> np.ndarray:
    """Interfacial void height per column on the voxel truth, um (y, x)."""
    code = Semantic.VOID_TOP if side == "top" else Semantic.VOID_BOTTOM
    return (semantic == code).sum(axis=0) * geometry.voxel_size_um
