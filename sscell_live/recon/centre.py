"""Automatic rotation-centre finding (Vo, Atwood & Drakopoulos 2014).

Method (Opt. Express 22, 19078): a parallel-beam sinogram over 180 degrees,
continued by its mirror image (``p(theta + pi, s) = p(theta, -s)``), is a
360-degree sinogram. It is smooth across the join only for the right centre.
A wrong centre breaks the continuity and puts energy into a region of the 2-D
Fourier transform of the 360-degree sinogram where a consistent sinogram has
almost none: high angular frequencies at low detector frequencies (outside
the "double wedge" ``|m| <= 2 pi r |k|`` filled by objects within radius r of
the axis). The metric is the mean spectral magnitude in that region,
minimised over candidate centres: coarse (1 px) then fine (sub-pixel, by
Fourier shifting the mirrored sinogram), then a parabola through the three
best fine points.

Why this method: it uses all angles (robust to noise and to rings, unlike
registering two single projections), needs no reconstruction, and is the
one TomoPy (``find_center_vo``) and algotom ship.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

__all__ = ["find_center", "find_center_vo", "half_turn"]


def half_turn(sinogram: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, float]:
    """Projections covering one half turn ``[theta0, theta0 + pi)`` in increasing angle order.

    Parameters
    ----------
    sinogram : ndarray (angle, column)
    theta : ndarray (angle,), radians, any order (counter-rotation allowed)

    Returns
    -------
    (ndarray (angle, column), float)
        The half-turn sinogram sorted by angle and its mean angular step, rad.
    """
    theta = np.asarray(theta, dtype=np.float64)
    order = np.argsort(theta)
    th = theta[order]
    if th[-1] - th[0] < np.pi * 0.9:
        raise ValueError(f"centre finding needs about 180 degrees of angles, got {np.degrees(th[-1] - th[0]):.1f}")
    keep = th < th[0] + np.pi - 1e-9
    sino = np.asarray(sinogram)[order][keep]
    step = np.pi / max(1, keep.sum())
    return sino, step


def _inverse_wedge_mask(height: int, width: int, radius: float, drop: int) -> np.ndarray:
    """1 where a 360-degree sinogram of an object within ``radius`` px of the axis has no energy."""
    m = np.abs(scipy.fft.fftfreq(height) * height)[:, None]  # angular harmonic per turn
    k = np.abs(scipy.fft.fftfreq(width))[None, :]  # cycles per pixel
    mask = (m > 2 * np.pi * radius * k).astype(np.float32)
    mask[m[:, 0] <= drop] = 0  # near-zero angular frequencies carry the object's mean, not the error
    mask[:, 0] = 0
    return mask


def _metric(sino: np.ndarray, center: float, half_width: int, mask: np.ndarray, taper: np.ndarray) -> float:
    """Vo's metric for one candidate centre.

    The sinogram is shifted (cubic spline, sub-pixel) so the candidate axis
    sits on a pixel centre, and both it and its mirror are cropped to the same
    ``2 * half_width + 1`` columns around the axis and tapered symmetrically:
    the comparison then never involves columns the other half turn did not see
    (a laterally truncated object) and the window itself is mirror-symmetric,
    so it adds no bias toward the detector centre.
    """
    c_int = int(np.floor(center))
    frac = center - c_int
    lo, hi = c_int - half_width - 2, c_int + half_width + 3
    part = sino[:, lo:hi]
    if frac:
        part = ndi.shift(part, (0, -frac), order=3, mode="nearest", prefilter=True)
    window = part[:, 2:-2] * taper[None, :]  # axis at the window's middle column
    full = np.concatenate([window, window[:, ::-1]], axis=0)
    spec = np.abs(scipy.fft.fft2(full))
    # relative to the window's total spectral magnitude: windows over air would otherwise always win
    return float((spec * mask).sum() / mask.sum() / (spec.mean() + 1e-30))


def find_center_vo(sinogram: np.ndarray, theta: np.ndarray, *, search: tuple[float, float] | None = None,
                   ratio: float = 0.5, drop: int | None = None, fine_step: float = 0.1) -> float:
    """Rotation centre of one sinogram by Vo's method.

    Parameters
    ----------
    sinogram : ndarray (angle, column)
        -log projections (line integrals) of one or a few averaged rows.
    theta : ndarray (angle,)
        Angles, radians; at least a half turn, evenly spaced.
    search : (float, float), optional
        Range of centres to search, pixels; default the middle half of the
        detector.
    ratio : float
        Assumed object radius as a fraction of the compared half width; the
        double wedge of such an object is left out of the metric (Vo's
        ``ratio``).
    drop : int, optional
        Lowest angular harmonics left out of the metric; default 5 % of the
        360-degree sinogram's height, at most 20 (as Vo).
    fine_step : float
        Step of the fine search, pixels.

    Returns
    -------
    float
        Detector column of the rotation axis, pixels.
    """
    sino, _ = half_turn(sinogram, theta)
    sino = np.asarray(sino, dtype=np.float64)
    n_ang, width = sino.shape
    # smooth along the angle axis only: noise would otherwise fill the masked region
    sino = ndi.gaussian_filter1d(sino, 3.0, axis=0, mode="reflect")
    sino = sino - sino.mean()
    lo, hi = search if search is not None else (width * 0.25, width * 0.75)
    lo, hi = max(lo, 8.0), min(hi, width - 9.0)
    if hi < lo:
        raise ValueError(f"centre search range ({lo}, {hi}) is empty for a {width}-column detector")
    # one window width for every candidate keeps the metrics comparable
    half_width = int(min(np.floor(lo), np.floor(width - 1 - hi))) - 3
    if half_width < 4:
        raise ValueError("centre search range reaches the detector edge; narrow it")
    taper = np.hanning(2 * half_width + 3)[1:-1]
    drop = min(20, int(0.05 * 2 * n_ang)) if drop is None else int(drop)
    mask = _inverse_wedge_mask(2 * n_ang, 2 * half_width + 1, ratio * half_width, drop)
    coarse = np.arange(np.ceil(lo), np.floor(hi) + 1, 1.0)
    m = np.array([_metric(sino, c, half_width, mask, taper) for c in coarse])
    c0 = coarse[int(np.argmin(m))]
    fine = np.arange(max(lo, c0 - 1.0), min(hi, c0 + 1.0) + fine_step / 2, fine_step)
    mf = np.array([_metric(sino, c, half_width, mask, taper) for c in fine])
    i = int(np.argmin(mf))
    if 0 < i < len(fine) - 1:
        y0, y1, y2 = mf[i - 1], mf[i], mf[i + 1]
        denom = y0 - 2 * y1 + y2
        if denom > 0:
            return float(fine[i] + 0.5 * fine_step * (y0 - y2) / denom)
    return float(fine[i])


def find_center(sinograms: np.ndarray, theta: np.ndarray, **kwargs) -> float:
    """Rotation centre from a stack of sinograms (median over a few rows).

    Parameters
    ----------
    sinograms : ndarray (row, angle, column) or (angle, column)
        -log sinograms.
    theta : ndarray (angle,)
        Angles, radians.
    **kwargs
        Passed to :func:`find_center_vo`.

    Returns
    -------
    float
        Detector column of the rotation axis, pixels.
    """
    s = np.asarray(sinograms)
    if s.ndim == 2:
        return find_center_vo(s, theta, **kwargs)
    if s.ndim != 3 or s.shape[0] == 0:
        raise ValueError(f"sinograms must be (row, angle, column) with at least one row, got shape {s.shape}")
    # a few evenly spaced rows, each averaged with its neighbours (noise), median across (robust)
    n = s.shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(n, 5)).round().astype(int))
    centres = []
    for r in picks:
        r0, r1 = max(0, r - 2), min(n, r + 3)
        centres.append(find_center_vo(s[r0:r1].mean(axis=0), theta, **kwargs))
    return float(np.median(centres))
