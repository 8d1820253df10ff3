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

While streaming, the sinogram is never whole, so rings are removed from the
reconstructed slice instead (:func:`remove_rings_polar`, the polar-coordinate
approach of Sijbers & Postnov 2004, Phys. Med. Biol. 49, N247): in polar
coordinates about the rotation axis a ring is a line of constant radius, so
the radial profile (mean over the polar angle) holds the rings while other
structure averages out; a median filter along the radius keeps real steps
(pellet and housing edges, which are concentric too) and drops the narrow
ring peaks, and the difference is subtracted at every pixel's radius.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

__all__ = ["remove_dead_stripes", "remove_rings_polar", "remove_stripe_sorting", "ring_amplitude"]


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


def remove_rings_polar(image: np.ndarray, center: tuple[float, float] | None = None, width: int = 9,
                       min_radius: float = 3.0, bin_px: float = 0.5) -> np.ndarray:
    """Remove rings from a reconstructed slice (post-reconstruction polar filter).

    Parameters
    ----------
    image : ndarray (y, x)
        A reconstructed slice.
    center : (float, float), optional
        (y, x) of the rotation axis in the slice, pixels; default
        ``(ny // 2, nx // 2)`` (where every backend puts it).
    width : int
        Length of the radial median filter, in radial bins; rings narrower
        than about half of it are removed, wider radial structure is kept.
    min_radius : float
        Radius (pixels) inside which nothing is changed: too few pixels
        there to tell a ring from structure.
    bin_px : float
        Width of a radial bin, pixels (rings from one detector column are
        about one pixel wide).

    Returns
    -------
    ndarray float32 (y, x)
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2-D slice (y, x), got shape {img.shape}")
    if int(width) < 3:
        raise ValueError(f"width must be >= 3 radial bins, got {width}")
    ny, nx = img.shape
    cy, cx = (ny // 2, nx // 2) if center is None else center
    r = np.hypot(np.arange(ny)[:, None] - cy, np.arange(nx)[None, :] - cx) / bin_px
    ri = r.astype(np.int64)
    counts = np.bincount(ri.ravel())
    prof = np.bincount(ri.ravel(), img.ravel().astype(np.float64)) / np.maximum(counts, 1)
    # empty bins (near the centre with small bins) take their neighbours' value: no fake rings
    empty = counts == 0
    if empty.any():
        good = np.flatnonzero(~empty)
        prof[empty] = np.interp(np.flatnonzero(empty), good, prof[good])
    ring = prof - ndi.median_filter(prof, size=int(width), mode="nearest")
    ring[: int(np.ceil(min_radius / bin_px))] = 0.0
    # outside the inscribed circle bins are partial arcs (corners): their means are not ring estimates
    rmax = min(cy, cx, ny - 1 - cy, nx - 1 - cx) / bin_px
    ring[int(rmax):] = 0.0
    centres = np.arange(ring.size) + 0.5
    return (img - np.interp(r, centres, ring).astype(np.float32)).astype(np.float32)
