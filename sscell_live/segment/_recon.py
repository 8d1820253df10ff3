"""Stand-in reconstruction for tests, benchmarks and training data.

Uses ``sscell_live.recon.reconstruct`` when that module provides it (issue 4);
until then a plain filtered back-projection: flat/dark normalisation,
-log, scikit-image ``iradon`` per slice about the given centre. One function,
so the swap is one line. Never used by ``segment`` itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["reconstruct_scan"]


def reconstruct_scan(projections, theta_rad, flats, darks, center_px, output_size: int | None = None,
                     paganin: dict | None = None, ring_removal: str | None = None) -> np.ndarray:
    """Reconstruct a parallel-beam scan into a (z, y, x) float32 volume.

    Parameters
    ----------
    projections : ndarray (angles, rows, cols), raw counts
    theta_rad : ndarray (angles,)
    flats, darks : ndarray (n, rows, cols), raw counts
    center_px : float
        Detector column of the rotation axis.
    output_size : int, optional
        Slice width (default: detector width).
    paganin : dict, optional
        ``{"energy_keV", "distance_mm", "pixel_size_um", "delta_beta"}``: Paganin
        phase retrieval before -log (SCIENCE.md 1). Needs ``sscell_live.recon``.
    ring_removal : {None, "sorting", "sorting+dead"}
        Stripe removal before back-projection. Needs ``sscell_live.recon``.

    Returns
    -------
    ndarray float32 (rows, output_size, output_size), attenuation per pixel
    (1/voxel units as scikit-image returns them).
    """
    try:  # the project's reconstruction, once it exists
        from sscell_live.recon import reconstruct  # type: ignore[attr-defined]
    except ImportError:
        reconstruct = None
    if reconstruct is not None:
        kw = {"paganin": paganin, "ring_removal": ring_removal}
        if output_size is not None:
            kw["n_out"] = int(output_size)
        return np.asarray(reconstruct(projections, theta_rad, flats, darks, center_px, **kw), dtype=np.float32)
    if paganin is not None or ring_removal is not None:
        raise RuntimeError("paganin and ring_removal need sscell_live.recon.reconstruct")
    from skimage.transform import iradon

    proj = np.asarray(projections, dtype=np.float32)
    dark = np.asarray(darks, dtype=np.float32).mean(axis=0)
    flat = np.asarray(flats, dtype=np.float32).mean(axis=0)
    norm = (proj - dark) / np.maximum(flat - dark, 1e-3)
    sino_all = -np.log(np.clip(norm, 1e-6, None))
    n = sino_all.shape[2]
    size = n if output_size is None else int(output_size)
    shift = n // 2 - float(center_px)
    deg = np.degrees(np.asarray(theta_rad, dtype=np.float64))
    out = np.empty((sino_all.shape[1], size, size), dtype=np.float32)
    for r in range(sino_all.shape[1]):
        sino = sino_all[:, r, :]
        if abs(shift) > 1e-6:
            sino = ndimage.shift(sino, (0, shift), order=1, mode="nearest")
        out[r] = iradon(sino.T, theta=deg, circle=True, filter_name="ramp", output_size=size)
    return out
