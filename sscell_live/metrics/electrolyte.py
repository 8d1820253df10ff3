"""Electrolyte metrics: porosity, porosity-factor maps, sub-surface porosity.

Definitions (issue 5): SE porosity counts transparent SE voxels (vacuum or
Li) that are not cracks, over the SE pellet volume (pellet columns x SE
thickness); the porosity factor is ``d = phi / phi0 - 1`` on cubes of
``cube_um`` (Dixit-LPS), with ``phi0`` the porosity of the whole pellet.
"""

from __future__ import annotations

import numpy as np

__all__ = ["porosity", "porosity_factor_maps", "subsurface_porosity_map"]


def porosity(pores: np.ndarray, pellet: np.ndarray) -> float:
    """Pore voxels over SE pellet voxels (1).

    Parameters
    ----------
    pores : ndarray bool (z_se, y, x)
        Non-crack transparent voxels of the SE slab.
    pellet : ndarray bool (y, x)
    """
    n = int(pellet.sum()) * pores.shape[0]
    return float(np.count_nonzero(pores & pellet[None]) / n) if n else 0.0


def _block_sum(a: np.ndarray, b: int, keep: tuple[int, ...]) -> np.ndarray:
    pad = [(0, (-n) % b) for n in a.shape]
    a = np.pad(a, pad)
    s = a.reshape(a.shape[0] // b, b, a.shape[1] // b, b, a.shape[2] // b, b).sum(axis=(1, 3, 5))
    return s.sum(axis=tuple(ax for ax in range(3) if ax not in keep))


def porosity_factor_maps(pores: np.ndarray, pellet: np.ndarray, voxel_size_um: float, cube_um: float = 30.0) -> dict:
    """Porosity factor ``d = phi / phi0 - 1`` on cubes of ``cube_um`` (Dixit-LPS).

    Cubes start at the top SE face and at index 0 of y and x.

    Returns
    -------
    dict
        ``porosity_factor_map_in_plane`` (y-blocks, x-blocks, averaged through
        the thickness), ``porosity_factor_map_through_plane`` (z-blocks,
        x-blocks, averaged along y), ``porosity_phi0``. Cubes without pellet
        voxels are NaN (no data, not zero porosity); all zeros when the pellet
        has no pores at all.
    """
    b = max(1, round(cube_um / voxel_size_um))
    pel = np.broadcast_to(pellet[None], pores.shape)
    porous = pores & pel
    n = int(np.count_nonzero(pel))
    phi0 = float(np.count_nonzero(porous) / n) if n else 0.0
    out = {"porosity_phi0": phi0}
    for name, keep in (("porosity_factor_map_in_plane", (1, 2)), ("porosity_factor_map_through_plane", (0, 2))):
        p = _block_sum(porous.astype(np.int64), b, keep)
        c = _block_sum(pel.astype(np.int64), b, keep)
        with np.errstate(invalid="ignore", divide="ignore"):
            phi = np.where(c > 0, p / np.maximum(c, 1), np.nan)
        out[name] = phi / phi0 - 1 if phi0 > 0 else np.where(c > 0, 0.0, np.nan)
    return out


def subsurface_porosity_map(transparent: np.ndarray, pellet: np.ndarray, voxel_size_um: float, side: str,
                            depth_um: float = 30.0) -> np.ndarray:
    """Transparent share of the SE within ``depth_um`` of one face, per column (y, x).

    Pores, cracks and Li in the SE all count (the X-ray transparent region);
    NaN outside the pellet.
    """
    d = max(1, round(depth_um / voxel_size_um))
    slab = transparent[:d] if side == "top" else transparent[-d:]
    return np.where(pellet, slab.mean(axis=0), np.nan)
