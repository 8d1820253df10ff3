"""Sub-voxel edge positions from the grey volume (integral method).

For a step between two phases of grey levels ``a`` and ``b`` sampled over a
window of ``2w`` voxels centred on the labelled edge, the sum of
``(g - b) / (a - b)`` over the window is the number of voxels of phase
``a`` in it, to a fraction of a voxel. Blur and the propagation fringes
(nearly antisymmetric about the edge) leave that sum unchanged, and noise
averages over the window, which a threshold crossing would not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["collector_face_vox", "noise_level", "phase_level"]


def phase_level(grey: np.ndarray, mask: np.ndarray) -> float:
    """Median grey value of a phase (robust to edge voxels and outliers)."""
    vals = grey[mask]
    if vals.size == 0:
        raise ValueError("phase_level: the phase has no voxel")
    return float(np.median(vals))


def noise_level(grey: np.ndarray, mask: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x MAD) of the grey values of a phase."""
    vals = grey[mask]
    if vals.size == 0:
        raise ValueError("noise_level: the phase has no voxel")
    return float(1.4826 * np.median(np.abs(vals - np.median(vals))))


def collector_face_vox(grey: np.ndarray, edge_index: np.ndarray, steel_level: float, li_level: float,
                       side: str, window: int = 3) -> np.ndarray:
    """Sub-voxel z of the steel face per column, in voxels (float64 (y, x)).

    Parameters
    ----------
    grey : ndarray (z, y, x)
        Reconstructed grey volume.
    edge_index : ndarray int (y, x)
        Labelled face per column: the boundary between voxel ``k - 1`` and
        ``k`` (top side: ``k`` is the first non-steel voxel; bottom side:
        ``k`` is the first steel voxel). Columns with ``k < 0`` are skipped (NaN).
    steel_level, li_level : float
        Grey levels of the two phases.
    side : {"top", "bottom"}
    window : int
        Half-width of the window, voxels.
    """
    nz = grey.shape[0]
    k = np.asarray(edge_index)
    valid = (k - window >= 0) & (k + window <= nz)
    out = np.full(k.shape, np.nan)
    if not valid.any() or steel_level == li_level:
        return out
    yy, xx = np.nonzero(valid)
    kk = k[valid]
    offs = np.arange(-window, window)
    prof = grey[kk[:, None] + offs[None, :], yy[:, None], xx[:, None]].astype(np.float64)
    frac = (prof - li_level) / (steel_level - li_level)  # steel share of each voxel
    s = frac.sum(axis=1)
    out[valid] = (kk - window + s) if side == "top" else (kk + window - s)
    return out
