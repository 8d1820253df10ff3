"""Single-distance phase retrieval (Paganin et al. 2002, J. Microsc. 206, 33).

For a homogeneous object (fixed delta/beta) in the near field, the
flat-corrected intensity ``I/I0`` at distance ``z`` is low-pass filtered by

    T_retrieved = F^-1[ F[I/I0] / (1 + pi * lambda * z * (delta/beta) * |f|^2) ]

with f in cycles per metre; ``-ln`` of the result is the projected
attenuation, free of the edge fringes that make Li and voids hard to tell
apart. It acts on whole 2-D projections, so a block of detector rows needs
a margin (:func:`paganin_margin_rows`) to be exact in its interior.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["paganin_filter", "paganin_margin_rows", "wavelength_m"]

_HC_KEV_M = 1.239841984e-9  # h c in keV * m


def wavelength_m(energy_keV: float) -> float:
    """X-ray wavelength, metres, for a photon energy in keV."""
    if not energy_keV > 0:
        raise ValueError(f"energy must be positive (keV), got {energy_keV}")
    return _HC_KEV_M / energy_keV


def _alpha(energy_keV: float, distance_mm: float, pixel_size_um: float, delta_beta: float) -> float:
    """pi * lambda * z * delta/beta in pixel^2 units (multiplies |f|^2 with f in cycles/pixel)."""
    for name, v in (("distance_mm", distance_mm), ("pixel_size_um", pixel_size_um), ("delta_beta", delta_beta)):
        if not v > 0:
            raise ValueError(f"Paganin {name} must be positive, got {v}")
    px = pixel_size_um * 1e-6
    return np.pi * wavelength_m(energy_keV) * distance_mm * 1e-3 * delta_beta / px**2


def paganin_margin_rows(energy_keV: float, distance_mm: float, pixel_size_um: float, delta_beta: float) -> int:
    """Rows of margin a block of rows needs so the filter is exact to about 1e-3 inside it."""
    # 1/(1 + alpha f^2) is the transform of a kernel decaying as exp(-|x| / l), l = sqrt(alpha) / (2 pi)
    ell = np.sqrt(_alpha(energy_keV, distance_mm, pixel_size_um, delta_beta)) / (2 * np.pi)
    return int(np.ceil(7 * ell)) + 2


def paganin_filter(transmission: np.ndarray, *, energy_keV: float, distance_mm: float, pixel_size_um: float,
                   delta_beta: float, pad: int | None = None) -> np.ndarray:
    """Paganin-filtered transmission (take -log afterwards).

    Parameters
    ----------
    transmission : ndarray (angle, row, column) or (row, column)
        Flat/dark-corrected intensity I/I0.
    energy_keV : float
        Photon energy, keV.
    distance_mm : float
        Sample-detector distance, mm.
    pixel_size_um : float
        Detector pixel size at the sample, um.
    delta_beta : float
        Ratio of the refractive index decrement to the absorption index of
        the material the retrieval is tuned for.
    pad : int, optional
        Edge padding (pixels) against wrap-around; default the filter margin.

    Returns
    -------
    ndarray float32, same shape, positive
    """
    t = np.asarray(transmission, dtype=np.float32)
    squeeze = t.ndim == 2
    if squeeze:
        t = t[None]
    alpha = _alpha(energy_keV, distance_mm, pixel_size_um, delta_beta)
    pad = paganin_margin_rows(energy_keV, distance_mm, pixel_size_um, delta_beta) if pad is None else int(pad)
    padded = np.pad(t, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    ny, nx = padded.shape[1:]
    fy = scipy.fft.fftfreq(ny)[:, None]
    fx = scipy.fft.rfftfreq(nx)[None, :]
    filt = (1.0 / (1.0 + alpha * (fy**2 + fx**2))).astype(np.float32)
    out = scipy.fft.irfft2(scipy.fft.rfft2(padded, workers=-1) * filt, s=(ny, nx), workers=-1)
    out = out[:, pad:pad + t.shape[1], pad:pad + t.shape[2]].astype(np.float32)
    np.maximum(out, 1e-6, out=out)
    return out[0] if squeeze else out
