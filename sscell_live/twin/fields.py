"""Seeded random fields for the twin's microstructure (pure numpy/scipy)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

__all__ = ["smooth_field_2d", "pore_mask_3d"]


def smooth_field_2d(shape: tuple[int, int], corr_vox: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with unit standard deviation, float64 (y, x).

    Parameters
    ----------
    shape : (int, int)
    corr_vox : float
        Correlation length (Gaussian sigma) in voxels.
    rng : numpy.random.Generator
    """
    noise = rng.standard_normal(shape)
    field = ndimage.gaussian_filter(noise, sigma=max(corr_vox, 0.5), mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def _kernel_std(sigma: float) -> float:
    """Std of 3D Gaussian-filtered unit white noise (exact for the discrete kernel)."""
    delta = np.zeros(int(8 * sigma) * 2 + 1)
    delta[delta.size // 2] = 1.0
    k = ndimage.gaussian_filter1d(delta, sigma, mode="constant")
    return float(np.sum(k**2) ** 1.5)


def pore_mask_3d(
    shape: tuple[int, int, int],
    porosity: float,
    pore_size_vox: float,
    heterogeneity: float,
    block_vox: int,
    seed: int,
    slab: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Heterogeneous pore space of an SE pellet, built slab by slab.

    A fine Gaussian random field (correlation ``pore_size_vox``) is
    thresholded at a *local* level so that the expected local porosity is
    ``porosity * (1 + heterogeneity * g)``, with ``g`` a coarse unit field on
    blocks of ``block_vox`` (the porosity-factor map of Dixit-LPS). Slabs
    along z with a halo keep memory at a few slabs, so 1024^3 builds fit in
    a few GiB; every z plane's noise comes from its own seed, so the result
    does not depend on the slab size.

    Returns
    -------
    pores : ndarray of bool, shape ``shape``
    porosity_factor : ndarray of float32, the local expected porosity / porosity - 1,
        per block, shape ``ceil(shape / block_vox)``
    """
    nz, ny, nx = shape
    if not 0.0 <= porosity < 1.0:
        raise ValueError(f"porosity must be in [0, 1), got {porosity}")
    pores = np.zeros(shape, dtype=bool)
    coarse_shape = tuple(int(np.ceil(n / block_vox)) for n in shape)
    coarse_rng = np.random.default_rng([seed, 999_999])
    g = coarse_rng.standard_normal(coarse_shape)
    factor = np.clip(heterogeneity * g, -0.9, 3.0)
    local_phi_coarse = np.clip(porosity * (1 + factor), 0.0, 0.95)
    # Gaussian threshold giving the block's porosity, computed once per block
    threshold_coarse = np.sqrt(2.0) * special.erfinv(1.0 - 2.0 * np.clip(local_phi_coarse, 1e-6, 1 - 1e-6))
    if porosity == 0.0:
        return pores, factor.astype(np.float32)

    sigma = max(pore_size_vox / 2.0, 0.7)
    halo = int(np.ceil(4 * sigma))
    norm = _kernel_std(sigma)
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        zs, ze = max(0, z0 - halo), min(nz, z1 + halo)
        noise = np.stack(
            [np.random.default_rng([seed, k]).standard_normal((ny, nx), dtype=np.float32) for k in range(zs, ze)]
        )
        fine = ndimage.gaussian_filter(noise, sigma=sigma, mode="reflect")[z0 - zs : z0 - zs + (z1 - z0)] / norm
        # local threshold from the block porosity (nearest block, no interpolation:
        # the porosity factor map is defined on those blocks)
        zi = np.arange(z0, z1) // block_vox
        yi = np.arange(ny) // block_vox
        xi = np.arange(nx) // block_vox
        pores[z0:z1] = fine > threshold_coarse[np.ix_(zi, yi, xi)]
    return pores, factor.astype(np.float32)
