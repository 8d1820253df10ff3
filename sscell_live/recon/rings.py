"""Stripe (ring artifact) removal in sinograms: Vo, Atwood & Drakopoulos (2018).

Method (Opt. Express 26, 28396, "algorithm 3", sorting-based): a detector
pixel whose gain error survives flat-field correction adds a nearly constant
offset along its sinogram column, a stripe, which backprojects to a ring.
Sorting every column of the sinogram by intensity (along the angle axis)
turns the stripe into a step between otherwise smooth neighbouring columns;
a median filter *across* columns of the sorted sinogram removes the step
without touching real structure (which, once sorted, varies smoothly from
column to column); the inverse sort puts every value back at its angle.
This is the method of ``algotom.prep.removal.remove_stripe_based_sorting``
and ``tomopy.remove_stripe_based_sorting``.

Large stripes and dead (fully wrong) columns (Vo's algorithms 5 and 6) are
left to :func:`remove_dead_stripes`, a simpler detector: a column whose
smoothed mean departs from its neighbours by more than ``snr`` times the
noise is replaced by interpolation from good columns.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

__all__ = ["remove_dead_stripes", "remove_stripe_sorting", "ring_amplitude"]


def remove_stripe_sorting(sinograms: np.ndarray, size: int = 21) -> np.ndarray:
    """Sorting-based stripe removal (Vo et al. 2018, algorithm 3).

    Parameters
    ----------
    sinograms : ndarray (angle, column) or (row, angle, column)
        -log sinograms.
    size : int
        Width (columns) of the median filter across the sorted sinogram;
        larger removes wider stripes, at the cost of more smoothing.

    Returns
    -------
    ndarray float32, same shape
    """
    s = np.asarray(sinograms, dtype=np.float32)
    squeeze = s.ndim == 2
    if squeeze:
        s = s[None]
    if s.ndim != 3:
        raise ValueError(f"sinograms must be (angle, column) or (row, angle, column), got shape {s.shape}")
    size = int(size)
    if size < 3:
        raise ValueError(f"stripe filter size must be >= 3 columns, got {size}")
    order = np.argsort(s, axis=1, kind="stable")
    sorted_ = np.take_along_axis(s, order, axis=1)
    smoothed = ndi.median_filter(sorted_, size=(1, 1, size), mode="reflect")
    out = np.empty_like(s)
    np.put_along_axis(out, order, smoothed, axis=1)
    return out[0] if squeeze else out


def remove_dead_stripes(sinograms: np.ndarray, snr: float = 3.0, size: int = 51) -> np.ndarray:
    """Replace columns that are far off their neighbours (dead or saturated pixels).

    Parameters
    ----------
    sinograms : ndarray (angle, column) or (row, angle, column)
    snr : float
        Detection threshold in units of the robust spread of column means.
    size : int
        Width (columns) of the median used as the neighbours' reference.

    Returns
    -------
    ndarray float32, same shape
    """
    s = np.array(sinograms, dtype=np.float32, copy=True)
    squeeze = s.ndim == 2
    if squeeze:
        s = s[None]
    for sino in s:
        prof = sino.mean(axis=0)
        ref = ndi.median_filter(prof, size=size, mode="reflect")
        dev = np.abs(prof - ref)
        mad = np.median(dev) * 1.4826 + 1e-12
        bad = dev > snr * mad * 4
        if bad.any() and not bad.all():
            good = np.flatnonzero(~bad)
            cols = np.flatnonzero(bad)
            for a in range(sino.shape[0]):
                sino[a, cols] = np.interp(cols, good, sino[a, good])
    return s[0] if squeeze else s


def ring_amplitude(image: np.ndarray, center: tuple[float, float] | None = None, smooth: float = 5.0) -> float:
    """Rms amplitude of rings: the radial profile's departure from its smoothed self.

    Rings are concentric about the rotation axis, so they survive averaging
    over the polar angle while other structure averages out; what is left
    after removing the slow radial trend is the ring signal.

    Parameters
    ----------
    image : ndarray (y, x)
        A reconstructed slice (or a difference from truth).
    center : (float, float), optional
        (y, x) of the rotation axis in the slice; default ``(ny // 2, nx // 2)``.
    smooth : float
        Gaussian sigma (pixels) of the radial trend removed.

    Returns
    -------
    float
        Rms over radii inside the inscribed circle, image units.
    """
    img = np.asarray(image, dtype=np.float64)
    ny, nx = img.shape
    cy, cx = (ny // 2, nx // 2) if center is None else center
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - cy, xx - cx)
    rmax = min(cy, cx, ny - 1 - cy, nx - 1 - cx)
    ri = np.round(r).astype(int)
    inside = ri < rmax
    prof = np.bincount(ri[inside], img[inside]) / np.maximum(np.bincount(ri[inside]), 1)
    trend = ndi.gaussian_filter1d(prof, smooth, mode="nearest")
    return float(np.sqrt(np.mean((prof - trend)[2:] ** 2)))
