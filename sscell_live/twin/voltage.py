"""Cell voltage of the twin (Lewis-LSPS model, SCIENCE.md section 3).

V = sign(j) * [ ohmic drop across the SE and each interphase
               + Butler-Volmer overpotential at each interface
               + interfacial resistance drop
               + supply (concentration) overpotential at the stripping interface ]

with every interfacial term evaluated at that interface's *effective*
current density ``|j| / contact fraction``. Positive current strips the top
electrode and gives a positive voltage (top minus bottom). A short puts the
Li filament's resistance in parallel with the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..registry import FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K
from .chemistry import Chemistry
from .state import SIDES, CellState

__all__ = ["VoltageBreakdown", "cell_voltage", "bulk_resistance_ohm", "butler_volmer_overpotential_V", "COMPLIANCE_V"]

#: Potentiostat compliance: the voltage never exceeds this in magnitude, V.
COMPLIANCE_V = 10.0


@dataclass(frozen=True)
class VoltageBreakdown:
    """Voltage and its parts, V (magnitudes; ``voltage_V`` carries the sign)."""

    voltage_V: float
    ohmic_se_V: float
    ohmic_interphase_V: float
    butler_volmer_V: float
    interfacial_resistance_V: float
    supply_V: float
    effective_current_density_mA_cm2: dict
    contact_fraction: dict
    shorted: bool
    supply_limited: bool


def butler_volmer_overpotential_V(j_mA_cm2: float, j0_mA_cm2: float, temperature_K: float) -> float:
    """Symmetric Butler-Volmer overpotential (alpha = 0.5), V, for |j| >= 0.

    Solves ``j = 2 j0 sinh(F eta / (2 R T))`` for eta.
    """
    f = FARADAY_C_MOL / (GAS_CONSTANT_J_MOL_K * temperature_K)
    return float(2.0 / f * np.arcsinh(abs(j_mA_cm2) / (2.0 * j0_mA_cm2)))


def _contact_fraction(state: CellState, side: str) -> float:
    pellet = state.geometry.pellet_mask()
    contact = pellet & (state.void_um[side] <= 0) & (state.li_thickness_um(side) > 0)
    return float(contact.sum() / pellet.sum())


def bulk_resistance_ohm(state: CellState, chem: Chemistry) -> float:
    """SE bulk resistance (impedance high-frequency intercept), Ohm.

    Pores lower the effective conductivity (Bruggeman, exponent 1.5); a Li
    filament or Li-filled crack shortens the ionic path it spans, so the
    resistance falls as Li penetrates (Siniscalchi-LLZTO) and collapses to
    the filament's resistance at a short.
    """
    g = state.geometry
    phi = float(state.pores.mean() / max(g.pellet_mask().mean(), 1e-12))
    kappa = chem.se_conductivity_S_cm * (1.0 - phi) ** 1.5
    if state.shorted:
        # the filament's resistance in parallel with the whole ionic path
        r_se = (g.se_thickness_um * 1e-4) / (kappa * g.area_cm2)
        return float(1.0 / (1.0 / r_se + 1.0 / chem.short_resistance_ohm))
    li_depth = max((c.li_depth_um + c.li_far_um for c in state.cracks), default=0.0)
    path_um = max(g.se_thickness_um - li_depth, 0.0)
    return float((path_um * 1e-4) / (kappa * g.area_cm2))


def cell_voltage(state: CellState, chem: Chemistry, current_mA_cm2: float, *, supply_limit_factor: float = 1.0) -> VoltageBreakdown:
    """Voltage of the cell at a current density.

    Parameters
    ----------
    state : CellState
    chem : Chemistry
    current_mA_cm2 : float
        Nominal current density; positive strips the top electrode.
    supply_limit_factor : float
        Per-cell multiplier of the chemistry's supply limit (cell variability).

    Returns
    -------
    VoltageBreakdown
        ``voltage_V`` is clipped to the potentiostat compliance (+-10 V).
    """
    j = float(current_mA_cm2)
    if not math.isfinite(j):
        raise ValueError(f"current must be a finite number of mA/cm2, got {current_mA_cm2!r}")
    g = state.geometry
    contact = {s: _contact_fraction(state, s) for s in SIDES}
    j_eff = {s: (abs(j) / contact[s] if contact[s] > 0 else math.inf) for s in SIDES}
    if j == 0:
        return VoltageBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, j_eff, contact, state.shorted, False)
    j_A = abs(j) * 1e-3
    if state.shorted:
        v = j_A * g.area_cm2 * bulk_resistance_ohm(state, chem)
        return VoltageBreakdown(math.copysign(v, j), v, 0.0, 0.0, 0.0, 0.0, j_eff, contact, True, False)

    r_bulk = bulk_resistance_ohm(state, chem)
    ohmic_se = j_A * g.area_cm2 * r_bulk
    ohmic_int = bv = r_int = 0.0
    pellet = g.pellet_mask()
    for s in SIDES:
        if not math.isfinite(j_eff[s]):
            continue
        t_int_cm = float(state.interphase_um[s][pellet].mean()) * 1e-4
        ohmic_int += j_eff[s] * 1e-3 * t_int_cm / chem.interphase_conductivity_S_cm
        bv += butler_volmer_overpotential_V(j_eff[s], chem.exchange_current_mA_cm2, chem.temperature_K)
        r_int += j_eff[s] * 1e-3 * chem.interfacial_resistance_ohm_cm2
    strip = "top" if j > 0 else "bottom"
    j_lim = chem.supply_limit_mA_cm2 * supply_limit_factor
    limited = not (j_eff[strip] < j_lim)
    if limited:
        supply = COMPLIANCE_V
    else:
        rt_f = GAS_CONSTANT_J_MOL_K * chem.temperature_K / FARADAY_C_MOL
        supply = -rt_f * math.log(1.0 - j_eff[strip] / j_lim)
    total = min(ohmic_se + ohmic_int + bv + r_int + supply, COMPLIANCE_V)
    return VoltageBreakdown(
        voltage_V=math.copysign(total, j),
        ohmic_se_V=ohmic_se,
        ohmic_interphase_V=ohmic_int,
        butler_volmer_V=bv,
        interfacial_resistance_V=r_int,
        supply_V=supply,
        effective_current_density_mA_cm2=j_eff,
        contact_fraction=contact,
        shorted=False,
        supply_limited=limited,
    )
