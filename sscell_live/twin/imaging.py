"""The twin's X-ray imaging: from a label volume to detector frames.

The chain, each step a pure function:

1. **Line integrals** (:func:`path_lengths`, :func:`attenuation_and_phase`):
   exact ray-voxel lengths from :mod:`sscell_live.twin.projector`, weighted
   by each material's attenuation ``mu`` and refractive decrement ``delta``
   from xraydb (:mod:`sscell_live.twin.xray`).
2. **Exit wave and propagation** (:func:`fresnel_propagate`): the wave leaving
   the sample is ``psi = exp(-B/2 - i Phi)`` with ``B = sum_m mu_m L_m`` and
   ``Phi = k sum_m delta_m L_m``; it is Fresnel-propagated over the
   sample-detector distance (propagation phase contrast, what makes Li
   visible against voids) and recorded as ``|psi_d|^2``. A pink beam sums
   intensities over its spectrum. Without phase contrast this is plain
   Beer-Lambert, ``I = exp(-B)``.
3. **Detector** (:func:`counts_from_intensity`, :func:`simulate_flats`,
   :func:`simulate_darks`): a smooth beam profile, per-pixel gain, dark
   offsets, Poisson and read noise, 16-bit quantisation, and defective
   pixels whose gain during the projections differs from their gain during
   the flats (or that are dead), so flat-field correction leaves stripes in
   sinograms and rings in slices, as on a real camera.

:func:`simulate_scan` runs the whole chain and returns projections, flats,
darks, angles and the true rotation centre.

Geometry: volumes ``(z, y, x)``, z the rotation axis, detector row ``r``
sees slice ``r`` (or ``b`` slices when the detector pixel is ``b`` voxels);
frames ``(angle, row, column)``; angles in radians with the scikit-image
orientation; the rotation axis passes through voxel column ``nx // 2`` and
is seen at detector column ``n_det / 2 + centre_offset_px``.

A twin scans the same state repeatedly (and the same geometry always), so
noise-free intensities are cached by a caller-supplied key (the twin's state
version) and only the noise is redrawn; the projector caches its matrix.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage

from sscell_live.registry import Material
from sscell_live.twin.projector import get_projector
from sscell_live.twin.xray import _merged_compositions, material_optics, pink_spectrum, wavelength_um

__all__ = [
    "Beam",
    "Detector",
    "SimulatedScan",
    "path_lengths",
    "attenuation_and_phase",
    "fresnel_propagate",
    "transmitted_intensity",
    "detector_maps",
    "counts_from_intensity",
    "simulate_projections",
    "simulate_flats",
    "simulate_darks",
    "simulate_scan",
    "clear_intensity_cache",
]

_KNOWN_CODES = frozenset(int(m) for m in Material)
#: Largest count a 16-bit camera reports.
_SATURATION = 65535.0
#: Above this mean a Poisson draw is replaced by a normal one with the same
#: mean and variance (skewness 1/sqrt(1000) = 3 %): four times faster, and the
#: difference is far below anything the reconstruction can see.
_POISSON_EXACT_BELOW = 1000.0
#: Frames propagated per FFT batch (bounds the complex work arrays).
_FFT_BATCH = 16


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------
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


def _check_labels(labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate a label volume; return it and the material codes present."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be a 3-D (z, y, x) volume, got {lab.ndim}-D shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of Material codes, got dtype {lab.dtype}")
    if lab.size == 0:
        raise ValueError(f"labels volume is empty (shape {lab.shape})")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi > max(_KNOWN_CODES):
        bad = lo if lo < 0 else hi
        raise ValueError(f"labels contain unknown material code {bad}; known codes: {sorted(_KNOWN_CODES)}")
    counts = np.zeros(max(_KNOWN_CODES) + 1, dtype=np.int64)
    step = max(1, (1 << 22) // max(1, lab[0].size))  # bounded temporaries: bincount wants intp
    for z0 in range(0, lab.shape[0], step):
        counts += np.bincount(lab[z0:z0 + step].ravel().astype(np.intp), minlength=counts.size)
    present = np.flatnonzero(counts)
    return lab, present


def _check_angles(angles_rad) -> np.ndarray:
    a = np.asarray(angles_rad, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("angles_rad is empty: a scan needs at least one projection angle")
    if not np.all(np.isfinite(a)):
        raise ValueError("angles_rad contains NaN or infinite values")
    return a


# ---------------------------------------------------------------------------
# Beam and detector descriptions
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Beam:
    """The X-ray beam and the propagation distance.

    Parameters
    ----------
    energy_keV : float
        Photon energy of a monochromatic beam, keV (ignored when ``spectrum``
        is given). 25 keV is the APS 2-BM value for sulfide cells.
    spectrum : (energies_keV, weights), optional
        Pink beam: discrete energies (keV) and detected-photon weights (any
        positive scale; normalised to sum 1). See :meth:`pink`.
    sample_detector_distance_mm : float
        Propagation distance, mm (100 mm at 2-BM). Must be > 0 when
        ``phase_contrast`` is on.
    phase_contrast : bool
        Propagate the exit wave (edge fringes); ``False`` gives Beer-Lambert.
    """

    energy_keV: float = 25.0
    spectrum: tuple | None = None
    sample_detector_distance_mm: float = 100.0
    phase_contrast: bool = True

    def __post_init__(self):
        _positive("Beam.energy_keV", self.energy_keV)
        if self.spectrum is not None:
            try:
                e, w = self.spectrum
                e = np.asarray(e, dtype=np.float64).ravel()
                w = np.asarray(w, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                raise ValueError("Beam.spectrum must be a pair (energies_keV, weights)") from None
            if e.size == 0 or e.size != w.size:
                raise ValueError(f"Beam.spectrum needs equal, non-zero numbers of energies and weights, "
                                 f"got {e.size} and {w.size}")
            if not (np.all(np.isfinite(e)) and np.all(e > 0)):
                raise ValueError("Beam.spectrum energies must be positive finite keV values")
            if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
                raise ValueError("Beam.spectrum weights must be non-negative and not all zero")
            # tuples keep the dataclass hashable (it is part of cache keys)
            object.__setattr__(self, "spectrum", (tuple(e.tolist()), tuple((w / w.sum()).tolist())))
        if self.phase_contrast:
            _positive("Beam.sample_detector_distance_mm", self.sample_detector_distance_mm)
        else:
            _non_negative("Beam.sample_detector_distance_mm", self.sample_detector_distance_mm)

    @classmethod
    def pink(cls, kind: str = "diamond_i13", n_energies: int = 13, **kwargs) -> "Beam":
        """A pink beam from :func:`sscell_live.twin.xray.pink_spectrum`."""
        e, w = pink_spectrum(kind, n_energies)
        return cls(energy_keV=float((e * w).sum()), spectrum=(e, w), **kwargs)

    def energies_and_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Energies (keV) and normalised weights; one energy for a monochromatic beam."""
        if self.spectrum is None:
            return np.array([float(self.energy_keV)]), np.array([1.0])
        return np.asarray(self.spectrum[0]), np.asarray(self.spectrum[1])

    @property
    def mean_energy_keV(self) -> float:
        """Weighted mean photon energy, keV."""
        e, w = self.energies_and_weights()
        return float((e * w).sum())


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


@dataclass
class SimulatedScan:
    """One simulated tomography scan.

    Attributes
    ----------
    projections : ndarray float32 (n_angles, n_rows, n_det)
        Raw counts with the sample in the beam.
    flats : ndarray float32 (n_flats, n_rows, n_det)
        Raw counts, sample out.
    darks : ndarray float32 (n_darks, n_rows, n_det)
        Raw counts, shutter closed.
    angles_rad : ndarray (n_angles,)
        Projection angles, radians, in acquisition order.
    centre_px : float
        True detector column of the rotation axis (the value a centre finder
        should recover).
    pixel_size_um : float
        Detector pixel size at the sample, um.
    energy_keV : float
        (Mean) photon energy, keV.
    """

    projections: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    angles_rad: np.ndarray
    centre_px: float
    pixel_size_um: float
    energy_keV: float
    metadata: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Geometry between volume and detector
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    binning: int
    n_rows: int  # detector rows
    n_det: int  # detector columns
    centre_px: float  # detector pixels
    n_fine: int  # columns at voxel resolution
    centre_fine: float
    pixel_size_um: float


def _geometry(shape: tuple, voxel_size_um: float, detector: Detector) -> _Geometry:
    nz, _, nx = shape
    pixel = voxel_size_um if detector.pixel_size_um is None else float(detector.pixel_size_um)
    ratio = pixel / voxel_size_um
    b = int(round(ratio))
    if b < 1 or abs(ratio - b) > 1e-6 * ratio:
        raise ValueError(f"Detector.pixel_size_um ({pixel} um) must be an integer multiple of the voxel size "
                         f"({voxel_size_um} um)")
    if nz < b:
        raise ValueError(f"labels have {nz} slices, fewer than the binning factor {b} (one detector row)")
    n_det = int(nx // b if detector.n_det is None else detector.n_det)
    if n_det < 1:
        raise ValueError(f"detector would have no columns (volume width {nx}, binning {b})")
    centre = n_det / 2 + float(detector.centre_offset_px)
    # binned column C spans voxel-resolution columns C*b .. C*b + b - 1
    return _Geometry(b, nz // b, n_det, centre, n_det * b, centre * b + (b - 1) / 2, pixel)


# ---------------------------------------------------------------------------
# Line integrals
# ---------------------------------------------------------------------------
def _unique_slices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of distinct z-slices and, per slice, its distinct slice's position.

    Layered cells repeat whole slices (collectors, housing, bulk Li), and a
    repeated slice projects identically: project each distinct one once.
    """
    seen: dict[bytes, int] = {}
    first, inverse = [], np.empty(labels.shape[0], dtype=np.intp)
    for z in range(labels.shape[0]):
        key = hashlib.blake2b(np.ascontiguousarray(labels[z]).tobytes(), digest_size=16).digest()
        if key not in seen:
            seen[key] = len(first)
            first.append(z)
        inverse[z] = seen[key]
    return np.asarray(first, dtype=np.intp), inverse


def _project_lut(labels: np.ndarray, lut: np.ndarray, angles: np.ndarray, n_det: int, centre_px: float,
                 n_subrays: int, expand: bool = True):
    """Project ``lut[labels]`` channel by channel.

    Returns (n_channels, n_angles, nz, n_det), or with ``expand=False`` the
    projections of the distinct slices (n_channels, n_angles, n_distinct, n_det)
    and the distinct-slice index of every slice.
    """
    first, inverse = _unique_slices(labels)
    proj = get_projector(labels.shape[1], labels.shape[2], angles, n_det, centre_px, n_subrays)
    out = proj.project_lut(labels[first], lut)
    if not expand:
        return out, inverse
    if first.size == labels.shape[0]:
        return out
    return np.ascontiguousarray(out[:, :, inverse, :])


def path_lengths(labels, voxel_size_um: float, angles_rad, *, n_det: int | None = None,
                 centre_px: float | None = None, materials: Sequence[int] | None = None,
                 n_subrays: int = 2) -> dict[int, np.ndarray]:
    """Projected path length through each material.

    Parameters
    ----------
    labels : ndarray int (nz, ny, nx)
        Material codes (``sscell_live.registry.Material``).
    voxel_size_um : float
        Voxel edge, um.
    angles_rad : array_like (n_angles,)
        Projection angles, radians.
    n_det : int, optional
        Detector columns (voxel-size pixels); default ``nx``.
    centre_px : float, optional
        Detector column of the rotation axis; default ``n_det / 2``.
    materials : sequence of int, optional
        Codes to return; default every non-vacuum code present.
    n_subrays : int
        Rays averaged per detector pixel.

    Returns
    -------
    dict
        Material code -> ndarray float32 (n_angles, nz, n_det): length of
        each ray inside that material, um.
    """
    lab, present = _check_labels(labels)
    voxel = _positive("voxel_size_um", voxel_size_um)
    angles = _check_angles(angles_rad)
    if materials is None:
        codes = [int(c) for c in present if c != int(Material.VACUUM)]
    else:
        codes = [int(c) for c in materials]
        unknown = [c for c in codes if c not in _KNOWN_CODES]
        if unknown:
            raise ValueError(f"unknown material code(s) {unknown}; known codes: {sorted(_KNOWN_CODES)}")
    n_det = lab.shape[2] if n_det is None else int(n_det)
    centre = n_det / 2 if centre_px is None else float(centre_px)
    if not codes:
        return {}
    lut = np.zeros((max(_KNOWN_CODES) + 1, len(codes)), dtype=np.float32)
    for i, c in enumerate(codes):
        lut[c, i] = voxel  # projections of voxel-length indicators are lengths in um
    proj = _project_lut(lab, lut, angles, n_det, centre, n_subrays)
    return {c: proj[i] for i, c in enumerate(codes)}


def attenuation_and_phase(labels, voxel_size_um: float, angles_rad, energy_keV: float, *,
                          n_det: int | None = None, centre_px: float | None = None, chemistry: str = "lps",
                          compositions: Mapping | None = None, n_subrays: int = 2,
                          with_phase: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Attenuation exponent and phase shift of every ray at one energy.

    Parameters
    ----------
    labels, voxel_size_um, angles_rad, n_det, centre_px, n_subrays
        As in :func:`path_lengths`.
    energy_keV : float
        Photon energy, keV.
    chemistry, compositions
        Material compositions (see :func:`sscell_live.twin.xray.material_optics`).
    with_phase : bool
        Also compute the phase (one more projected channel).

    Returns
    -------
    attenuation : ndarray float32 (n_angles, nz, n_det)
        ``B = sum_m mu_m L_m`` (dimensionless); Beer-Lambert transmission is
        ``exp(-B)``.
    phase : ndarray float32 (n_angles, nz, n_det) or None
        ``Phi = (2 pi / lambda) sum_m delta_m L_m``, radians (the exit wave is
        ``exp(-B/2 - i Phi)``).
    """
    lab, _ = _check_labels(labels)
    voxel = _positive("voxel_size_um", voxel_size_um)
    energy = _positive("energy_keV", energy_keV)
    angles = _check_angles(angles_rad)
    n_det = lab.shape[2] if n_det is None else int(n_det)
    centre = n_det / 2 if centre_px is None else float(centre_px)
    lut = _optics_lut(energy, voxel, chemistry, compositions, with_phase)
    proj = _project_lut(lab, lut, angles, n_det, centre, n_subrays)
    return proj[0], (proj[1] if with_phase else None)


def _optics_lut(energy_keV: float, voxel_um: float, chemistry: str, compositions, with_phase: bool) -> np.ndarray:
    """Per-code (mu * voxel, k * delta * voxel): projecting it gives B and Phi."""
    optics = material_optics(energy_keV, compositions, chemistry)
    k = 2 * np.pi / wavelength_um(energy_keV)
    lut = np.zeros((max(_KNOWN_CODES) + 1, 2 if with_phase else 1), dtype=np.float32)
    for code, (mu, delta) in optics.items():
        lut[code, 0] = mu * voxel_um
        if with_phase:
            lut[code, 1] = k * delta * voxel_um
    return lut


# ---------------------------------------------------------------------------
# Propagation
# ---------------------------------------------------------------------------
def _fresnel_pad(wavelength_um_: float, distance_um: float, pixel_size_um: float) -> int:
    # Content at the Nyquist frequency moves sideways by lambda z / (2 p)
    # during propagation; twice that plus a margin keeps the periodic FFT's
    # wrap-around out of the frame.
    return int(math.ceil(wavelength_um_ * distance_um / pixel_size_um**2)) + 8


@functools.lru_cache(maxsize=32)
def _transfer_function(rows: int, cols: int, lam: float, z: float, p: float) -> np.ndarray:
    fy = np.fft.fftfreq(rows, d=p)
    fx = np.fft.fftfreq(cols, d=p)
    H = np.exp(-1j * np.pi * lam * z * (fy[:, None] ** 2 + fx[None, :] ** 2)).astype(np.complex64)
    H.setflags(write=False)
    return H


def fresnel_propagate(attenuation: np.ndarray, phase: np.ndarray, wavelength_um_: float, distance_um: float,
                      pixel_size_um: float, *, pad_px: int | None = None, workers: int | None = None) -> np.ndarray:
    """Intensity after free-space propagation of the exit wave.

    The exit wave ``psi = exp(-B/2 - i Phi)`` is propagated with the Fresnel
    transfer function ``H = exp(-i pi lambda z (fx^2 + fy^2))`` (paraxial,
    the convention in which a weak phase object gives the transport-of-
    intensity result ``I = 1 + (lambda z / 2 pi) laplacian(Phi)``). Frames are
    edge-padded so the FFT's periodic wrap-around stays outside them.

    Parameters
    ----------
    attenuation : ndarray (..., rows, cols)
        ``B``, dimensionless.
    phase : ndarray (..., rows, cols)
        ``Phi``, radians.
    wavelength_um_ : float
        Wavelength, um.
    distance_um : float
        Sample-detector distance, um.
    pixel_size_um : float
        Sampling of the frames, um.
    pad_px : int, optional
        Padding per side; default from the propagation blur.
    workers : int, optional
        FFT threads; default all CPUs.

    Returns
    -------
    ndarray float32, same shape
        Intensity relative to the incident beam.
    """
    lam = _positive("wavelength_um", wavelength_um_)
    z = _positive("distance_um", distance_um)
    p = _positive("pixel_size_um", pixel_size_um)
    B = np.asarray(attenuation, dtype=np.float32)
    Phi = np.asarray(phase, dtype=np.float32)
    if B.shape != Phi.shape or B.ndim < 2:
        raise ValueError(f"attenuation and phase must be frames of equal shape (..., rows, cols), "
                         f"got {B.shape} and {Phi.shape}")
    lead, (rows, cols) = B.shape[:-2], B.shape[-2:]
    B = B.reshape(-1, rows, cols)
    Phi = Phi.reshape(-1, rows, cols)
    pad = _fresnel_pad(lam, z, p) if pad_px is None else int(pad_px)
    R = scipy.fft.next_fast_len(rows + 2 * pad)
    C = scipy.fft.next_fast_len(cols + 2 * pad)
    H = _transfer_function(R, C, lam, z, p)
    widths = ((0, 0), (pad, R - rows - pad), (pad, C - cols - pad))
    workers = workers or os.cpu_count() or 1
    out = np.empty(B.shape, dtype=np.float32)
    for i in range(0, B.shape[0], _FFT_BATCH):
        b = np.pad(B[i:i + _FFT_BATCH], widths, mode="edge")
        ph = np.pad(Phi[i:i + _FFT_BATCH], widths, mode="edge")
        psi = np.exp(-0.5 * b) * (np.cos(ph) - 1j * np.sin(ph)).astype(np.complex64)
        psi = scipy.fft.fft2(psi, axes=(-2, -1), workers=workers, overwrite_x=True)
        psi *= H
        psi = scipy.fft.ifft2(psi, axes=(-2, -1), workers=workers, overwrite_x=True)
        det = psi[:, pad:pad + rows, pad:pad + cols]
        out[i:i + _FFT_BATCH] = det.real**2 + det.imag**2
    return out.reshape(*lead, rows, cols)


# ---------------------------------------------------------------------------
# Noise-free intensities (cached)
# ---------------------------------------------------------------------------
_intensity_cache: OrderedDict = OrderedDict()
_intensity_lock = threading.Lock()
_INTENSITY_CACHE_ENTRIES = 2


def clear_intensity_cache() -> None:
    """Forget all cached noise-free intensities."""
    with _intensity_lock:
        _intensity_cache.clear()


def _digest(a: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _bin(frames: np.ndarray, b: int, n_rows: int) -> np.ndarray:
    if b == 1:
        return frames
    n, _, cols = frames.shape
    f = frames[:, :n_rows * b].reshape(n, n_rows, b, cols // b, b)
    return f.mean(axis=(2, 4), dtype=np.float32)


def transmitted_intensity(labels, voxel_size_um: float, angles_rad, beam: Beam | None = None,
                          detector: Detector | None = None, *, chemistry: str = "lps",
                          compositions: Mapping | None = None, n_subrays: int = 2, cache_key=None,
                          use_cache: bool = True) -> np.ndarray:
    """Noise-free intensity at the detector relative to the incident beam.

    Parameters
    ----------
    labels : ndarray int (nz, ny, nx)
        Material codes.
    voxel_size_um : float
        Voxel edge, um.
    angles_rad : array_like (n_angles,)
        Projection angles, radians.
    beam : Beam, optional
        Default ``Beam()`` (25 keV, 100 mm, phase contrast on).
    detector : Detector, optional
        Only its geometry (pixel size / binning, columns, centre offset) and
        point-spread function are used here. Default ``Detector()``.
    chemistry, compositions
        Material compositions (see :func:`sscell_live.twin.xray.material_optics`).
    n_subrays : int
        Rays per detector pixel (at voxel resolution).
    cache_key : hashable, optional
        Identifies the label volume (for example the twin's state version);
        ``None`` hashes the labels' contents (about 10 ms per 10 MB). The
        caller guarantees that equal keys mean equal labels.
    use_cache : bool
        Look up / store the result in the small (2-entry) cache.

    Returns
    -------
    ndarray float32 (n_angles, n_rows, n_det), read-only
        ``I / I0`` per detector pixel (1 = unattenuated beam), after the
        detector's point-spread function.
    """
    lab, present = _check_labels(labels)
    voxel = _positive("voxel_size_um", voxel_size_um)
    angles = _check_angles(angles_rad)
    beam = Beam() if beam is None else beam
    detector = Detector() if detector is None else detector
    if not isinstance(beam, Beam):
        raise ValueError(f"beam must be a Beam, got {type(beam).__name__}")
    if not isinstance(detector, Detector):
        raise ValueError(f"detector must be a Detector, got {type(detector).__name__}")
    geo = _geometry(lab.shape, voxel, detector)
    merged = _merged_compositions(chemistry, compositions)
    key = None
    if use_cache:
        labels_id = ("key", cache_key) if cache_key is not None else ("digest", _digest(lab))
        key = (labels_id, lab.shape, voxel, _digest(angles), beam, merged, geo, int(n_subrays),
               float(detector.psf_sigma_px))
        with _intensity_lock:
            if key in _intensity_cache:
                _intensity_cache.move_to_end(key)
                return _intensity_cache[key]
    fine = _fine_intensity(lab, present, voxel, angles, beam, geo, chemistry, compositions, int(n_subrays))
    if detector.psf_sigma_px > 0:  # the scintillator blurs before the pixels integrate
        fine = scipy.ndimage.gaussian_filter(fine, (0, detector.psf_sigma_px, detector.psf_sigma_px), mode="nearest")
    result = _bin(fine, geo.binning, geo.n_rows)
    result.setflags(write=False)
    if use_cache:
        with _intensity_lock:
            _intensity_cache[key] = result
            while len(_intensity_cache) > _INTENSITY_CACHE_ENTRIES:
                _intensity_cache.popitem(last=False)
    return result


def _fine_intensity(lab, present, voxel, angles, beam: Beam, geo: _Geometry, chemistry, compositions,
                    n_subrays) -> np.ndarray:
    """Intensity at voxel resolution (before binning).

    A monochromatic beam projects two channels, B and Phi, directly (the
    cheapest). A pink beam projects one path-length channel per material
    present and forms B and Phi per energy from them.
    """
    energies, weights = beam.energies_and_weights()
    distance_um = float(beam.sample_detector_distance_mm) * 1e3
    if energies.size == 1:
        lut = _optics_lut(float(energies[0]), voxel, chemistry, compositions, beam.phase_contrast)
        coef_b = np.eye(lut.shape[1], dtype=np.float32)[:1]  # (1 energy, channels)
        coef_phi = np.eye(lut.shape[1], dtype=np.float32)[1:] if beam.phase_contrast else None
    else:
        codes = [int(c) for c in present if c != int(Material.VACUUM)]
        lut = np.zeros((max(_KNOWN_CODES) + 1, max(1, len(codes))), dtype=np.float32)
        for i, c in enumerate(codes):
            lut[c, i] = voxel  # path length in um per voxel
        coef_b = np.zeros((energies.size, lut.shape[1]), dtype=np.float32)
        coef_phi = np.zeros_like(coef_b)
        for j, e in enumerate(energies):
            optics = material_optics(float(e), compositions, chemistry)
            k = 2 * np.pi / wavelength_um(float(e))
            for i, c in enumerate(codes):
                coef_b[j, i], coef_phi[j, i] = optics[c][0], k * optics[c][1]
    proj, inverse = _project_lut(lab, lut, angles, geo.n_fine, geo.centre_fine, n_subrays, expand=False)
    out = np.zeros((angles.size, lab.shape[0], geo.n_fine), dtype=np.float32)
    for i in range(0, angles.size, _FFT_BATCH):  # expand repeated slices batch by batch
        chans = proj[:, i:i + _FFT_BATCH][:, :, inverse]  # (channels, batch, nz, n_fine)
        for j, (e, w) in enumerate(zip(energies, weights)):
            B = np.tensordot(coef_b[j], chans, axes=1)
            if beam.phase_contrast:
                Phi = np.tensordot(coef_phi[j], chans, axes=1)
                frames = fresnel_propagate(B, Phi, wavelength_um(float(e)), distance_um, voxel)
            else:
                frames = np.exp(-B)
            out[i:i + _FFT_BATCH] += np.float32(w) * frames
    return out


# ---------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------
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


def simulate_projections(labels, voxel_size_um: float, angles_rad, beam: Beam | None = None,
                         detector: Detector | None = None, rng=None, *, chemistry: str = "lps",
                         compositions: Mapping | None = None, n_subrays: int = 2, cache_key=None) -> np.ndarray:
    """Raw projection counts of a label volume.

    Parameters are those of :func:`transmitted_intensity`, plus ``rng`` (numpy
    Generator or int seed) for the noise.

    Returns
    -------
    ndarray float32 (n_angles, n_rows, n_det)
        Counts, as the camera writes them.
    """
    detector = Detector() if detector is None else detector
    intensity = transmitted_intensity(labels, voxel_size_um, angles_rad, beam, detector, chemistry=chemistry,
                                      compositions=compositions, n_subrays=n_subrays, cache_key=cache_key)
    return counts_from_intensity(intensity, detector, rng)


def simulate_scan(labels, voxel_size_um: float, angles_rad, beam: Beam | None = None,
                  detector: Detector | None = None, rng=None, *, n_flats: int = 20, n_darks: int = 10,
                  chemistry: str = "lps", compositions: Mapping | None = None, n_subrays: int = 2,
                  cache_key=None) -> SimulatedScan:
    """A whole tomography scan: darks, flats and projections.

    Parameters
    ----------
    labels : ndarray int (nz, ny, nx)
        Material codes (``sscell_live.registry.Material``); z is the rotation axis.
    voxel_size_um : float
        Voxel edge, um.
    angles_rad : array_like (n_angles,)
        Projection angles in acquisition order, radians (may descend or span
        360 degrees).
    beam : Beam, optional
        Default 25 keV monochromatic, 100 mm, phase contrast on.
    detector : Detector, optional
        Default ``Detector()``: pixel = voxel, 2e4 counts in flats.
    rng : numpy Generator or int, optional
        Noise source (deterministic for a seed).
    n_flats, n_darks : int
        Frames of each kind.
    chemistry, compositions
        Material compositions (see :func:`sscell_live.twin.xray.material_optics`).
    n_subrays : int
        Rays per voxel-size detector pixel.
    cache_key : hashable, optional
        The twin's state version: scanning an unchanged state again reuses
        the noise-free intensities and only redraws noise.

    Returns
    -------
    SimulatedScan
    """
    beam = Beam() if beam is None else beam
    detector = Detector() if detector is None else detector
    rng = _rng(rng)
    lab, _ = _check_labels(labels)
    voxel = _positive("voxel_size_um", voxel_size_um)
    angles = _check_angles(angles_rad)
    geo = _geometry(lab.shape, voxel, detector)
    darks = simulate_darks(n_darks, geo.n_rows, geo.n_det, detector, rng)
    flats = simulate_flats(n_flats, geo.n_rows, geo.n_det, detector, rng)
    projections = simulate_projections(lab, voxel, angles, beam, detector, rng, chemistry=chemistry,
                                       compositions=compositions, n_subrays=n_subrays, cache_key=cache_key)
    return SimulatedScan(
        projections=projections, flats=flats, darks=darks, angles_rad=angles.copy(), centre_px=geo.centre_px,
        pixel_size_um=geo.pixel_size_um, energy_keV=beam.mean_energy_keV,
        metadata={
            "beam": ({"energy_keV": beam.energy_keV} if beam.spectrum is None
                     else {"spectrum": [list(beam.spectrum[0]), list(beam.spectrum[1])]}),
            "sample_detector_distance_mm": beam.sample_detector_distance_mm,
            "phase_contrast": beam.phase_contrast,
            "pixel_size_um": geo.pixel_size_um,
            "binning": geo.binning,
            "chemistry": chemistry,
        },
    )
