"""Twin scans for tests, benchmarks and tuning (never used by ``segment`` itself).

Imports the twin lazily: the segmentation and metric code never depends on it.
Each state is evolved with the protocols of ``tests/test_metrics_truth.py``,
scanned with noise, phase contrast, a 0.7-pixel PSF and defective pixels
(rings), and reconstructed with :func:`reconstruct_scan` after a partial
Paganin retrieval (``PAGANIN_DELTA_BETA``).
"""

from __future__ import annotations

import numpy as np

from ._recon import reconstruct_scan

__all__ = ["METRIC_CHECKS", "N_ANGLES", "PAGANIN_DELTA_BETA", "PROTOCOLS", "scan_and_reconstruct", "state_name",
           "twin_states"]

#: chemistry -> (current mA/cm2, half-cycle s, half cycles at which a state is taken)
PROTOCOLS = {
    "lps": (0.15, 1800.0, (0, 1, 3, 12)),
    "lsps": (1.0, 2.5 * 3600.0, (0, 1, 3)),
    "llzo": (0.035, 3600.0, (0, 1, 2)),
}
#: States the classical pipeline is tuned and benchmarked on, in half cycles of ``PROTOCOLS`` (fractions
#: allowed). LSPS adds states inside its first half cycles (1 h, 5 h, 9 h at 1 mA/cm2): the plated
#: face's interphase is then one voxel thick and the Li behind it dims, a state the 2.5-h steps never
#: show (a column model tuned without it read 0.11 contact for 0.24 after 1 h). The U-Net trains on
#: them too (on ``PROTOCOLS`` alone it lost the one-voxel interphases: IoU 0.892 against 0.923).
METRIC_CHECKS = {"lps": (0, 1, 3, 12), "lsps": (0, 0.4, 1, 2, 3, 3.6), "llzo": (0, 1, 2)}
#: delta/beta of the partial phase retrieval: a low-pass of about 2.5 pixels at
#: 25 keV, 1.5 um that turns the edge fringes into contrast (SCIENCE.md 1)
#: without the 7-pixel blur of the SE-matched value (about 210).
PAGANIN_DELTA_BETA = 50.0
#: 180 projections over 180 degrees sample a 96-pixel-wide detector above Nyquist (pi/2 * 96).
N_ANGLES = 180


def state_name(chemistry: str, seed: int, half_cycles: float) -> str:
    """Name of a state: ``<chemistry>-s<seed>-h<half cycles done>`` (``lsps-s1-h0.4``)."""
    return f"{chemistry}-s{seed}-h{round(float(half_cycles), 6):g}"


def twin_states(chemistry: str, seed: int, checks=None, n_lateral: int = 96):
    """Yield ``(name, twin)`` at each check of the protocol, pristine first; stops after failure.

    ``checks`` are half cycles done (default ``PROTOCOLS``' own); a fraction
    stops inside a half cycle (0.4: 40 % of the first one).
    """
    from sscell_live.twin import CellTwin

    j, half, default_checks = PROTOCOLS[chemistry]
    checks = default_checks if checks is None else checks
    twin = CellTwin.create(chemistry, "mini", seed=seed, n_lateral=n_lateral)
    done = 0.0
    for n in checks:
        while done < n - 1e-9 and not twin.failed:
            k = int(np.floor(done + 1e-9))  # the half cycle under way
            sign = 1 if (k // (2 if chemistry == "lsps" else 1)) % 2 == 0 else -1
            step = min(float(n), k + 1.0) - done
            twin.run(sign * j, step * half, sample_period_s=900)
            done = round(done + step, 9)
        yield state_name(chemistry, seed, done), twin
        if twin.failed:
            return


def scan_and_reconstruct(twin, n_angles: int = N_ANGLES, delta_beta: float | None = PAGANIN_DELTA_BETA,
                         bad_pixel_fraction: float = 0.002, rng=None, detector=None) -> np.ndarray:
    """Simulated scan of the twin's state, reconstructed into a (z, y, x) float32 volume.

    ``detector``: a ``twin.Detector`` to scan with instead of the default (0.7-px PSF,
    ``bad_pixel_fraction`` defective pixels); ``rng``: the noise draw (None: the twin's own).
    """
    from sscell_live.twin import Detector

    if detector is None:
        detector = Detector(psf_sigma_px=0.7, bad_pixel_fraction=bad_pixel_fraction)
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    scan = twin.scan(angles, detector=detector, rng=rng)
    paganin = None
    if delta_beta:
        paganin = {"energy_keV": float(scan.energy_keV),
                   "distance_mm": float(scan.metadata.get("sample_detector_distance_mm", 100.0)),
                   "pixel_size_um": float(scan.pixel_size_um), "delta_beta": float(delta_beta)}
    return reconstruct_scan(scan.projections, scan.angles_rad, scan.flats, scan.darks, scan.centre_px,
                            paganin=paganin, ring_removal="sorting")
