"""The twin's X-ray imaging: from a label volume to detector frames.

The chain, each step a pure function:

1. **Line integrals** (:func:`path_lengths`, :func:`attenuation_and_phase`):
   exact ray-voxel lengths from :mod:`sscell_live.twin.projector`, weighted
   by each material's attenuation ``mu`` and refractive decrement ``delta``
   from xraydb (:mod:`sscell_live.twin.xray`).
2. **Exit wave and propagation** (:mod:`sscell_live.twin.propagation`): the wave leaving
   the sample is ``psi = exp(-B/2 - i Phi)`` with ``B = sum_m mu_m L_m`` and
   ``Phi = k sum_m delta_m L_m``; it is Fresnel-propagated over the
   sample-detector distance (propagation phase contrast, what makes Li
   visible against voids) and recorded as ``|psi_d|^2``. A pink beam sums
   intensities over its spectrum. Without phase contrast this is plain
   Beer-Lambert, ``I = exp(-B)``.
3. **Detector** (:mod:`sscell_live.twin.detector`: :func:`counts_from_intensity`, :func:`simulate_flats`,
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

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage

from sscell_live.registry import Material
from sscell_live.twin.detector import (
    Detector,
    _non_negative,
    _positive,
    _rng,
    counts_from_intensity,
    detector_maps,
    simulate_darks,
    simulate_flats,
)
from sscell_live.twin.projector import get_projector
from sscell_live.twin.propagation import _FFT_BATCH, fresnel_propagate
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
