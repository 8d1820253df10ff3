"""Input checks shared by the metric functions: clear errors instead of NaN."""

from __future__ import annotations

import math

import numpy as np

from ..registry import Material

__all__ = ["MAX_CODE", "check_labels", "check_voxel_size"]

MAX_CODE = max(int(m) for m in Material)


def check_labels(labels, name: str = "labels") -> np.ndarray:
    """Validate a material label volume and return it as an ndarray.

    Parameters
    ----------
    labels : array_like, integer (z, y, x)
        Material codes (``registry.Material``).

    Raises
    ------
    TypeError
        If the array is not of an integer dtype (a grey volume passed by
        mistake would otherwise be truncated to nonsense codes).
    ValueError
        If it is not 3-D, is empty, or holds codes outside ``Material``.
    """
    lab = np.asarray(labels)
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(
            f"{name} must be an integer array of material codes (uint8), got dtype {lab.dtype}; "
            "a grey volume must be segmented first (sscell_live.segment.segment)"
        )
    if lab.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (z, y, x) volume, got shape {lab.shape}")
    if lab.size == 0:
        raise ValueError(f"{name} is empty (shape {lab.shape})")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi > MAX_CODE:
        raise ValueError(f"{name} hold code {lo if lo < 0 else hi}, outside the material codes 0..{MAX_CODE}")
    return lab


def check_voxel_size(voxel_size_um) -> float:
    """Validate a voxel size: a finite number > 0 um.

    Raises
    ------
    ValueError
        For zero, negative, NaN, infinite or non-numeric values.
    """
    try:
        v = float(voxel_size_um)
    except (TypeError, ValueError):
        raise ValueError(f"voxel_size_um must be a positive number of um, got {voxel_size_um!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"voxel_size_um must be a positive finite number of um, got {voxel_size_um!r}")
    return v
