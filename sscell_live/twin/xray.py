"""X-ray optical constants of the cell's materials, from xraydb.

Nothing here is hand-typed physics: attenuation comes from
``xraydb.material_mu`` (Elam tables, total cross section: photo-absorption
plus Compton and Rayleigh scattering, which dominates for Li) and the
refractive decrement delta from ``xraydb.xray_delta_beta`` (Chantler tables).
Only formulas and densities are chosen here.

Sanity values (SCIENCE.md section 1, checked by a test): mu(Li) ~ 0.09 /cm and
mu(Li3PS4) ~ 5.6 /cm at 25 keV; mu(LLZO) ~ 14 /cm at 76 keV.

Interphase choice per electrolyte
---------------------------------
Sulfides (LPS, LSPS) decompose against Li into Li2S (+ Li3P, Li-Sn); Li2S
dominates the volume, so the interphase is Li2S (1.66 g/cm3). Garnets
(LLZO, LLZTO) are stable against Li; their interphase is the Li2CO3/LiOH
surface contamination layer, modelled as Li2CO3 (2.11 g/cm3).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import xraydb

from sscell_live.registry import Material

__all__ = [
    "SE_PRESETS",
    "HC_KEV_ANGSTROM",
    "default_compositions",
    "material_optics",
    "pink_spectrum",
    "wavelength_um",
]

#: h*c in keV * Angstrom (CODATA), so lambda[A] = HC_KEV_ANGSTROM / E[keV].
HC_KEV_ANGSTROM = 12.398419843320026

#: Solid-electrolyte presets: name -> (SE formula, density g/cm3, interphase formula, density g/cm3).
SE_PRESETS: dict[str, tuple[str, float, str, float]] = {
    "lps": ("Li3PS4", 1.87, "Li2S", 1.66),
    "lsps": ("Li10SnP2S12", 2.0, "Li2S", 1.66),
    "llzo": ("Li7La3Zr2O12", 5.1, "Li2CO3", 2.11),
    "llzto": ("Li6.4La3Zr1.4Ta0.6O12", 5.3, "Li2CO3", 2.11),
}

# Materials that do not depend on the electrolyte.
_COMMON = {
    Material.LI: ("Li", 0.534),
    Material.STEEL: ("Fe0.70Cr0.18Ni0.12", 7.9),  # 304-type stainless steel (atomic fractions)
    Material.HOUSING: ("C19H12O3", 1.32),  # PEEK
}


def wavelength_um(energy_keV: float) -> float:
    """X-ray wavelength in micrometres for a photon energy in keV."""
    energy_keV = float(energy_keV)
    if not np.isfinite(energy_keV) or energy_keV <= 0:
        raise ValueError(f"energy_keV must be a positive number, got {energy_keV}")
    return HC_KEV_ANGSTROM / energy_keV * 1e-4


def default_compositions(chemistry: str = "lps") -> dict[int, tuple[str, float]]:
    """Formula and density of every non-vacuum material code.

    Parameters
    ----------
    chemistry : str
        Electrolyte preset, one of ``SE_PRESETS`` ('lps', 'lsps', 'llzo',
        'llzto'); it fixes the SE and interphase compositions.

    Returns
    -------
    dict
        ``Material`` code (int) -> (formula, density in g/cm3).
    """
    key = str(chemistry).lower()
    if key not in SE_PRESETS:
        raise ValueError(f"unknown chemistry {chemistry!r}; known presets: {sorted(SE_PRESETS)}")
    se, se_rho, inter, inter_rho = SE_PRESETS[key]
    comps = {int(m): v for m, v in _COMMON.items()}
    comps[int(Material.SE)] = (se, se_rho)
    comps[int(Material.INTERPHASE)] = (inter, inter_rho)
    return dict(sorted(comps.items()))


def _merged_compositions(chemistry: str, compositions: Mapping | None) -> tuple:
    """Defaults of ``chemistry`` overridden by ``compositions``, as a hashable tuple."""
    comps = default_compositions(chemistry)
    for code, value in (compositions or {}).items():
        code = int(code)
        if code == int(Material.VACUUM):
            raise ValueError("vacuum (code 0) has no composition; it is always transparent")
        if code not in {int(m) for m in Material}:
            raise ValueError(f"unknown material code {code}; known codes: {[int(m) for m in Material]}")
        try:
            formula, density = value
            density = float(density)
        except (TypeError, ValueError):
            raise ValueError(
                f"composition of material {code} must be (formula, density_g_cm3), got {value!r}"
            ) from None
        if not np.isfinite(density) or density <= 0:
            raise ValueError(f"density of material {code} ({formula}) must be positive, got {density}")
        comps[code] = (str(formula), density)
    return tuple(sorted(comps.items()))


@functools.lru_cache(maxsize=512)
def _optics_one(formula: str, density: float, energy_keV: float) -> tuple[float, float]:
    energy_eV = energy_keV * 1e3
    try:
        mu_per_cm = float(xraydb.material_mu(formula, energy_eV, density=density))
        delta = float(xraydb.xray_delta_beta(formula, density, energy_eV)[0])
    except Exception as exc:  # xraydb raises assorted errors for bad formulas / energies
        raise ValueError(f"xraydb cannot evaluate {formula!r} ({density} g/cm3) at {energy_keV} keV: {exc}") from exc
    if not (np.isfinite(mu_per_cm) and np.isfinite(delta)):
        raise ValueError(f"xraydb returned non-finite optics for {formula!r} at {energy_keV} keV")
    return mu_per_cm * 1e-4, delta  # 1/cm -> 1/um


def material_optics(energy_keV: float, compositions: Mapping | None = None,
                    chemistry: str = "lps") -> dict[int, tuple[float, float]]:
    """Linear attenuation coefficient and refractive decrement per material.

    Parameters
    ----------
    energy_keV : float
        Photon energy, keV.
    compositions : mapping, optional
        ``Material`` code -> (formula, density g/cm3) overriding the defaults
        of ``chemistry`` (see :func:`default_compositions`).
    chemistry : str
        Electrolyte preset for the SE and interphase defaults.

    Returns
    -------
    dict
        ``Material`` code (int) -> (mu in 1/um, delta dimensionless), every code
        of ``Material`` included; vacuum is (0, 0). The refractive index is
        ``n = 1 - delta + i beta`` with ``mu = 4 pi beta / lambda``.

    Raises
    ------
    ValueError
        Non-positive energy, unknown chemistry or material code, bad
        composition.
    """
    energy_keV = float(energy_keV)
    if not np.isfinite(energy_keV) or energy_keV <= 0:
        raise ValueError(f"energy_keV must be a positive number, got {energy_keV}")
    merged = _merged_compositions(chemistry, compositions)
    return dict(_optics_table(round(energy_keV, 9), merged))


@functools.lru_cache(maxsize=256)
def _optics_table(energy_keV: float, merged: tuple) -> tuple:
    table = [(int(Material.VACUUM), (0.0, 0.0))]
    table += [(code, _optics_one(formula, density, energy_keV)) for code, (formula, density) in merged]
    return tuple(table)


def pink_spectrum(kind: str = "diamond_i13", n_energies: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """A filtered pink-beam spectrum as discrete energies and weights.

    ``'diamond_i13'`` approximates Diamond I13-2 as used by Hao-LPS: filtered
    pink beam from 18 to 24 keV with a mean of 22.3 keV (SCIENCE.md section 1).
    The published numbers fix only the band and the mean, so the shape is a
    Gaussian bump truncated to the band whose centre is solved for the mean:
    the low-energy side is cut by the filters, the high side by the mirror.

    Parameters
    ----------
    kind : str
        Spectrum preset; only 'diamond_i13' is known.
    n_energies : int
        Number of discrete energies (each costs one propagation per frame).

    Returns
    -------
    energies_keV : ndarray (n_energies,)
    weights : ndarray (n_energies,)
        Detected-photon weights, summing to 1.
    """
    if kind != "diamond_i13":
        raise ValueError(f"unknown pink-beam spectrum {kind!r}; known: ['diamond_i13']")
    if int(n_energies) < 2:
        raise ValueError(f"n_energies must be >= 2, got {n_energies}")
    lo, hi, mean, sigma = 18.0, 24.0, 22.3, 1.6
    energies = np.linspace(lo, hi, int(n_energies))

    def weights(centre):
        w = np.exp(-0.5 * ((energies - centre) / sigma) ** 2)
        return w / w.sum()

    a, b = lo, hi + 4 * sigma  # the mean grows with the centre: bisect
    for _ in range(60):
        mid = 0.5 * (a + b)
        if (weights(mid) * energies).sum() < mean:
            a = mid
        else:
            b = mid
    return energies, weights(0.5 * (a + b))
