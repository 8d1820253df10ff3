"""Detector model of the twin: beam profile, gain, darks, noise, defective pixels.

A scintillator + camera as the twin sees it: a smooth beam profile, per-pixel
gain, dark offsets, Poisson and read noise, 16-bit quantisation, and
defective pixels whose gain during the projections differs from their gain
during the flats (or that are dead), so flat-field correction leaves stripes
in sinograms and rings in slices, as on a real camera. Pure functions of a
``Detector`` description and a random generator.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

__all__ = ["Detector", "DetectorMaps", "detector_maps", "counts_from_intensity", "simulate_flats", "simulate_darks"]

#: Largest count a 16-bit camera reports.
_SATURATION = 65535.0
#: Above this mean a Poisson draw is replaced by a normal one with the same
#: mean and variance (skewness 1/sqrt(1000) = 3 %): four times faster, and the
#: difference is far below anything the reconstruction can see.
_POISSON_EXACT_BELOW = 1000.0


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _non_negative(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return v



@dataclass(frozen=True)
class Detector:
    """A scintillator + camera detector with its defects.

    Parameters
    ----------
    pixel_size_um : float, optional
        Pixel size at the sample, um. ``None``: the voxel size. Must be an
        integer multiple ``b`` of the voxel size (binning: ``b x b`` voxels
        per pixel, and ``nz // b`` detector rows).
    n_det : int, optional
        Detector columns; ``None``: volume width / binning. A narrower detector
        gives a laterally truncated scan.
    photons_per_pixel : float
        Mean flat-field counts at the beam-profile centre (counts).
    dark_counts : float
        Mean dark offset (counts), with a 3 % fixed pattern between pixels.
    read_noise_counts : float
        Gaussian read noise, counts rms.
    noise : bool
        Draw Poisson and read noise (``False``: expected counts).
    gain_nonuniformity : float
        Relative rms of the per-pixel gain (removed by flat-field correction).
    bad_pixel_fraction : float
        Fraction of pixels whose gain in projections differs from their gain
        in flats (by about ``bad_gain_error``): flat-field correction cannot
        remove them, so they make rings in their slice.
    bad_columns : tuple of int
        Whole columns with such a gain mismatch (rings in every slice).
    bad_gain_error : float
        Typical relative gain mismatch of a bad pixel (sign random, magnitude
        uniform in 0.5 to 1.5 times this).
    dead_pixel_fraction : float
        Fraction of pixels that read only dark counts (in flats too).
    dead_columns : tuple of int
        Whole dead columns.
    centre_offset_px : float
        Rotation axis position relative to ``n_det / 2``, detector pixels.
    beam_gradient : (float, float)
        Relative change of the beam profile from top to bottom row and from
        left to right column (a smooth, slightly tilted synchrotron beam).
    beam_curvature : float
        Relative drop of the beam profile at the left/right edges.
    defect_seed : int
        Seed of the defect and gain maps: a property of the camera, identical
        in every scan (the per-frame noise comes from the caller's rng).
    quantize : bool
        Round counts and clip to the 16-bit range, as a camera does.
    psf_sigma_px : float
        Gaussian point-spread function of the scintillator and optics, sigma
        in voxel-size pixels (0 = ideal). It softens the propagation fringes
        of voxel-sharp edges to what real cameras record.
    """

    pixel_size_um: float | None = None
    n_det: int | None = None
    photons_per_pixel: float = 2.0e4
    dark_counts: float = 100.0
    read_noise_counts: float = 2.0
    noise: bool = True
    gain_nonuniformity: float = 0.01
    bad_pixel_fraction: float = 0.0
    bad_columns: tuple = ()
    bad_gain_error: float = 0.05
    dead_pixel_fraction: float = 0.0
    dead_columns: tuple = ()
    centre_offset_px: float = 0.0
    beam_gradient: tuple = (0.06, 0.03)
    beam_curvature: float = 0.02
    defect_seed: int = 20240
    quantize: bool = True
    psf_sigma_px: float = 0.0

    def __post_init__(self):
        if self.pixel_size_um is not None:
            _positive("Detector.pixel_size_um", self.pixel_size_um)
        if self.n_det is not None and (int(self.n_det) != self.n_det or int(self.n_det) < 1):
            raise ValueError(f"Detector.n_det must be a positive integer, got {self.n_det!r}")
        _positive("Detector.photons_per_pixel", self.photons_per_pixel)
        _non_negative("Detector.dark_counts", self.dark_counts)
        _non_negative("Detector.read_noise_counts", self.read_noise_counts)
        _non_negative("Detector.gain_nonuniformity", self.gain_nonuniformity)
        _non_negative("Detector.bad_gain_error", self.bad_gain_error)
        for name in ("bad_pixel_fraction", "dead_pixel_fraction"):
            v = _non_negative(f"Detector.{name}", getattr(self, name))
            if v > 1:
                raise ValueError(f"Detector.{name} must be in [0, 1], got {v}")
        for name in ("bad_columns", "dead_columns"):
            cols = tuple(int(c) for c in np.atleast_1d(np.asarray(getattr(self, name), dtype=np.int64)))
            if any(c < 0 for c in cols):
                raise ValueError(f"Detector.{name} must be non-negative column indices, got {cols}")
            object.__setattr__(self, name, cols)
        off = float(self.centre_offset_px)
        if not math.isfinite(off):
            raise ValueError(f"Detector.centre_offset_px must be finite, got {self.centre_offset_px!r}")
        try:
            gy, gx = (float(g) for g in self.beam_gradient)
        except (TypeError, ValueError):
            raise ValueError(f"Detector.beam_gradient must be a pair of numbers, got {self.beam_gradient!r}") from None
        if not (math.isfinite(gy) and math.isfinite(gx) and abs(gy) < 1 and abs(gx) < 1):
            raise ValueError(f"Detector.beam_gradient entries must be finite and below 1 in magnitude, "
                             f"got {self.beam_gradient!r}")
        object.__setattr__(self, "beam_gradient", (gy, gx))
        _non_negative("Detector.psf_sigma_px", self.psf_sigma_px)
        c = _non_negative("Detector.beam_curvature", self.beam_curvature)
        if c >= 1:
            raise ValueError(f"Detector.beam_curvature must be below 1, got {c}")




@dataclass(frozen=True)
class DetectorMaps:
    """Fixed per-pixel maps of a detector (identical in every scan).

    Attributes
    ----------
    profile : ndarray (rows, cols)
        Relative beam intensity (smooth, about 1).
    gain_flat : ndarray (rows, cols)
        Pixel gain while flats are taken.
    gain_proj : ndarray (rows, cols)
        Pixel gain while projections are taken (differs at bad pixels, zero
        at dead ones).
    dark : ndarray (rows, cols)
        Mean dark counts.
    bad : ndarray bool (rows, cols)
        Pixels with a flat/projection gain mismatch.
    dead : ndarray bool (rows, cols)
        Dead pixels.
    """

    profile: np.ndarray
    gain_flat: np.ndarray
    gain_proj: np.ndarray
    dark: np.ndarray
    bad: np.ndarray
    dead: np.ndarray


_maps_cache: OrderedDict = OrderedDict()
_maps_lock = threading.Lock()


def detector_maps(detector: Detector, n_rows: int, n_cols: int) -> DetectorMaps:
    """Beam profile, gains, dark offsets and defects of a detector.

    Deterministic for ``detector.defect_seed`` (cached; arrays read-only).

    Parameters
    ----------
    detector : Detector
    n_rows, n_cols : int
        Frame shape in detector pixels.

    Returns
    -------
    DetectorMaps
    """
    n_rows, n_cols = int(n_rows), int(n_cols)
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"frame shape must be positive, got ({n_rows}, {n_cols})")
    for name in ("bad_columns", "dead_columns"):
        out = [c for c in getattr(detector, name) if c >= n_cols]
        if out:
            raise ValueError(f"Detector.{name} {out} outside the {n_cols} detector columns")
    key = (detector, n_rows, n_cols)
    with _maps_lock:
        if key in _maps_cache:
            return _maps_cache[key]
    rng = np.random.default_rng(detector.defect_seed)
    v = (np.arange(n_rows) + 0.5) / n_rows - 0.5
    u = (np.arange(n_cols) + 0.5) / n_cols - 0.5
    gy, gx = detector.beam_gradient
    profile = ((1 + gy * v)[:, None] * ((1 + gx * u) * (1 - detector.beam_curvature * (2 * u) ** 2))[None, :])
    gain_flat = 1 + detector.gain_nonuniformity * rng.standard_normal((n_rows, n_cols))
    n_pix = n_rows * n_cols
    bad = np.zeros(n_pix, dtype=bool)
    bad[rng.choice(n_pix, size=int(round(detector.bad_pixel_fraction * n_pix)), replace=False)] = True
    bad = bad.reshape(n_rows, n_cols)
    bad[:, list(detector.bad_columns)] = True
    dead = np.zeros(n_pix, dtype=bool)
    dead[rng.choice(n_pix, size=int(round(detector.dead_pixel_fraction * n_pix)), replace=False)] = True
    dead = dead.reshape(n_rows, n_cols)
    dead[:, list(detector.dead_columns)] = True
    # a bad pixel's response drifts between flats and projections (nonlinear
    # or unstable pixel): a stripe that flat-field correction cannot remove
    shape = (n_rows, n_cols)
    error = detector.bad_gain_error * rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    gain_proj = gain_flat * np.where(bad, 1 + error, 1.0)
    gain_flat = np.where(dead, 0.0, gain_flat)
    gain_proj = np.where(dead, 0.0, gain_proj)
    dark = detector.dark_counts * (1 + 0.03 * rng.standard_normal((n_rows, n_cols)))
    arrays = [np.clip(a, 0, None).astype(np.float32) for a in (profile, gain_flat, gain_proj, dark)]
    for a in (*arrays, bad, dead):
        a.setflags(write=False)
    maps = DetectorMaps(*arrays, bad, dead)
    with _maps_lock:
        _maps_cache[key] = maps
        while len(_maps_cache) > 4:
            _maps_cache.popitem(last=False)
    return maps


def _draw(expected: np.ndarray, dark: np.ndarray, detector: Detector, rng: np.random.Generator) -> np.ndarray:
    """Counts for expected photon numbers: shot noise, dark offset, read noise, quantisation."""
    if detector.noise:
        read = np.float32(detector.read_noise_counts)
        z = rng.standard_normal(expected.shape, dtype=np.float32)
        # shot and read noise in one normal draw where Poisson is near-normal
        counts = expected + dark + np.sqrt(expected + read * read) * z
        low = expected < _POISSON_EXACT_BELOW
        if low.any():
            counts[low] = rng.poisson(expected[low]) + np.broadcast_to(dark, expected.shape)[low] + read * z[low]
    else:
        counts = expected + dark
    if detector.quantize:
        np.rint(counts, out=counts)
        np.clip(counts, 0, _SATURATION, out=counts)
    return counts.astype(np.float32, copy=False)


def _rng(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def counts_from_intensity(intensity: np.ndarray, detector: Detector, rng=None) -> np.ndarray:
    """Raw projection counts for noise-free relative intensities.

    Parameters
    ----------
    intensity : ndarray (n_frames, rows, cols) or (rows, cols)
        ``I / I0`` at the detector.
    detector : Detector
    rng : numpy Generator or int, optional
        Source of the frame noise.

    Returns
    -------
    ndarray float32, same shape
        Counts: ``photons * profile * gain_proj * I`` with noise, plus dark.
    """
    rel = np.asarray(intensity, dtype=np.float32)
    if rel.ndim not in (2, 3):
        raise ValueError(f"intensity must be a frame or a stack of frames, got shape {rel.shape}")
    if not np.all(np.isfinite(rel)) or (rel < 0).any():
        raise ValueError("intensity must be finite and non-negative")
    maps = detector_maps(detector, *rel.shape[-2:])
    rng = _rng(rng)
    scale = np.float32(detector.photons_per_pixel) * maps.profile * maps.gain_proj
    frames = rel if rel.ndim == 3 else rel[None]
    out = np.empty(frames.shape, dtype=np.float32)
    for i in range(0, frames.shape[0], 32):  # bounded temporaries
        out[i:i + 32] = _draw(frames[i:i + 32] * scale, maps.dark, detector, rng)
    return out if rel.ndim == 3 else out[0]


def simulate_flats(n_flats: int, n_rows: int, n_cols: int, detector: Detector, rng=None) -> np.ndarray:
    """Flat fields (sample out of the beam), counts float32 (n_flats, n_rows, n_cols)."""
    if int(n_flats) < 0:
        raise ValueError(f"n_flats must be >= 0, got {n_flats}")
    maps = detector_maps(detector, n_rows, n_cols)
    expected = np.float32(detector.photons_per_pixel) * maps.profile * maps.gain_flat
    rng = _rng(rng)
    return np.stack([_draw(expected.copy(), maps.dark, detector, rng) for _ in range(int(n_flats))]) \
        if n_flats else np.zeros((0, n_rows, n_cols), np.float32)


def simulate_darks(n_darks: int, n_rows: int, n_cols: int, detector: Detector, rng=None) -> np.ndarray:
    """Dark fields (shutter closed), counts float32 (n_darks, n_rows, n_cols)."""
    if int(n_darks) < 0:
        raise ValueError(f"n_darks must be >= 0, got {n_darks}")
    maps = detector_maps(detector, n_rows, n_cols)
    rng = _rng(rng)
    zero = np.zeros((n_rows, n_cols), dtype=np.float32)
    return np.stack([_draw(zero.copy(), maps.dark, detector, rng) for _ in range(int(n_darks))]) \
        if n_darks else np.zeros((0, n_rows, n_cols), np.float32)

