"""Chemistry presets of the twin, each failing its own way (SCIENCE.md).

Every parameter carries its unit in its name and its source in a comment.
Rates that set *how far* something penetrates the pellet (cracks, Li
filaments) are expressed per SE thickness, so a ``mini`` cell fails after
the same number of cycles as a full-size one ("same physics, thinner
layers").

``lsps``  Li10SnP2S12, Lewis-LSPS: reactive mixed-conducting interphase at the
          reducing interface, contact loss at the stripping interface,
          polarization runaway to the cut-off.
``lps``   Li3PS4, Hao-LPS / Dixit-LPS: brittle, cracks start at the plating
          interface and alternate with the current direction, fill partly
          with Li, short when a Li path connects the electrodes.
``llzo``  Li7La3Zr2O12 garnet, Dixit-LLZO / Siniscalchi-LLZTO: dense, no
          stack pressure, Li plates into sub-surface pores and a filament
          grows above the critical current density (about 26 uA/cm2), short.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["Chemistry", "PRESETS", "preset"]


@dataclass(frozen=True)
class Chemistry:
    """Parameters of one solid-electrolyte chemistry.

    Attributes are grouped: microstructure, interface, transport, voltage,
    interphase, cracks, filaments. Zero disables a mechanism.
    """

    name: str
    se_formula: str
    se_density_g_cm3: float
    energy_keV: float  # default beam energy for this SE (SCIENCE.md section 1)

    # -- SE microstructure -------------------------------------------------
    porosity: float  # SE pore volume fraction (0.05 annealed .. 0.48 amorphous LPS, Dixit-LPS)
    pore_size_um: float  # correlation length of the pore field
    porosity_heterogeneity: float  # relative std of the local porosity factor d = phi/phi0 - 1

    # -- interface ---------------------------------------------------------
    initial_contact: float  # contact fraction at t = 0 (Lewis-LSPS: 0.20-0.25 of nominal)
    initial_void_um: float  # height of the initial interfacial gaps
    heterogeneity_sigma: float  # log-std of the local interfacial conductance (hotspots)
    hotspot_length_um: float  # correlation length of the conductance field
    edge_crowding: float  # extra current share at columns next to a void (current crowding)

    # -- Li supply at the stripping interface --------------------------------
    refill_mA_cm2: float  # local stripping rate that creep + diffusion can replenish
    refill_interphase_um: float  # interphase thickness that halves the refill (0: no effect)
    void_nucleation_per_mC_cm2: float  # void hazard per column per excess stripping charge
    void_closing_efficiency: float  # share of plated Li that refills voids at the plating side
    supply_limit_mA_cm2: float  # effective current density at which stripping polarization diverges

    # -- voltage -----------------------------------------------------------
    se_conductivity_S_cm: float  # bulk ionic conductivity
    exchange_current_mA_cm2: float  # Butler-Volmer exchange current density per interface
    interfacial_resistance_ohm_cm2: float  # extra interfacial resistance (garnet surface layers)
    interphase_conductivity_S_cm: float  # ionic conductivity of the interphase
    short_resistance_ohm: float  # resistance of a Li filament short (hundreds of Ohm)
    temperature_K: float

    # -- interphase (reactive SE) --------------------------------------------
    interphase_share: float  # share of the reducing current that forms interphase, not Li
    interphase_um_per_mC_cm2: float  # interphase thickness per reducing charge routed to it
    interphase_li_consumption: float  # Li volume consumed per interphase volume (shrinkage when > 1)
    interphase_void_per_um: float  # void hazard of a contact column per um of its interphase growth

    # -- cracks (brittle SE) -------------------------------------------------
    crack_nucleation_mA_cm2: float  # local plating current density that starts a crack (0: none)
    crack_nucleation_per_mC_cm2: float  # new cracks per plated charge once above threshold
    crack_growth_se_per_mC_cm2: float  # crack depth growth, in SE thicknesses per plated charge
    crack_width_um: float  # crack opening at the mouth (Hao-LPS: 3.0 growing to 4.4 um)
    crack_widening_um_per_mC_cm2: float  # opening growth while Li intrudes (3.0 -> 4.4 um over 15 cycles)
    crack_aspect: float  # lateral half-length / depth of a semi-elliptical crack
    crack_li_share: float  # share of the plating Li that intrudes into cracks
    filament_width_um: float  # lateral width of the Li filament inside a crack
    max_cracks: int

    # -- sub-surface deposition and filaments (garnet) -------------------------
    critical_current_mA_cm2: float  # local current density above which a filament grows (0: none)
    filament_growth_se_per_mC_cm2: float  # filament growth per excess charge, SE thicknesses
    subsurface_depth_um: float  # depth of sub-surface pores that take plated Li
    subsurface_li_share: float  # share of the plating Li deposited in sub-surface pores

    # -- cell-to-cell variability ----------------------------------------------
    variability_sigma: float  # log-std of per-cell rate multipliers (pellet density, pressure)

    @property
    def se_composition(self) -> tuple[str, float]:
        return (self.se_formula, self.se_density_g_cm3)

    def with_(self, **changes) -> "Chemistry":
        """A copy with some parameters changed (validated by name)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown chemistry parameters {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **changes)


_COMMON = dict(
    temperature_K=298.15,
    short_resistance_ohm=300.0,  # "hundreds of Ohm" (SCIENCE.md section 4.5)
    void_closing_efficiency=0.5,
    edge_crowding=0.5,
)

LSPS = Chemistry(
    name="lsps",
    se_formula="Li10SnP2S12",
    se_density_g_cm3=2.0,
    energy_keV=28.0,  # Lewis-LSPS at APS 2-BM (below the 29.2 keV Sn edge)
    porosity=0.08,
    pore_size_um=3.0,
    porosity_heterogeneity=0.4,
    initial_contact=0.25,  # Lewis-LSPS: 20-25 % real contact at t = 0
    initial_void_um=4.5,  # voids "about 5 um thick"
    heterogeneity_sigma=0.2,
    hotspot_length_um=8.0,
    refill_mA_cm2=7.0,
    refill_interphase_um=40.0,  # calibrated: the second interface runs away 1-5 h into its stripping
    void_nucleation_per_mC_cm2=2e-4,
    supply_limit_mA_cm2=10.0,
    se_conductivity_S_cm=1.0e-3,  # sulfides 0.4-2.4 mS/cm
    exchange_current_mA_cm2=1.0,
    interfacial_resistance_ohm_cm2=5.0,
    interphase_conductivity_S_cm=2.0e-5,
    interphase_share=0.28,  # Lewis-LSPS: only 72 % then 51 % of the current came from Li metal
    interphase_um_per_mC_cm2=1.0e-3,
    interphase_li_consumption=1.3,  # molar-volume mismatch: the stack shrinks
    interphase_void_per_um=0.015,  # calibrated: about -9 % contact over 5 h of reduction
    crack_nucleation_mA_cm2=0.0,
    crack_nucleation_per_mC_cm2=0.0,
    crack_growth_se_per_mC_cm2=0.0,
    crack_width_um=3.0,
    crack_widening_um_per_mC_cm2=1.7e-4,
    crack_aspect=0.5,
    crack_li_share=0.0,
    filament_width_um=6.0,
    max_cracks=0,
    critical_current_mA_cm2=0.0,
    filament_growth_se_per_mC_cm2=0.0,
    subsurface_depth_um=0.0,
    subsurface_li_share=0.0,
    variability_sigma=0.2,
    **{**_COMMON, "void_closing_efficiency": 0.02},  # rough initial gaps barely refill
)

LPS = Chemistry(
    name="lps",
    se_formula="Li3PS4",
    se_density_g_cm3=1.87,
    energy_keV=25.0,  # Dixit-LPS at 2-BM; Hao-LPS used a 22 keV pink beam
    porosity=0.10,  # 0.05 annealed .. 0.48 amorphous (Dixit-LPS)
    pore_size_um=3.0,
    porosity_heterogeneity=0.5,
    initial_contact=0.75,
    initial_void_um=3.0,
    heterogeneity_sigma=0.35,
    hotspot_length_um=8.0,
    refill_mA_cm2=2.0,
    refill_interphase_um=0.0,
    void_nucleation_per_mC_cm2=2e-3,
    supply_limit_mA_cm2=20.0,
    se_conductivity_S_cm=0.4e-3,  # LPS 0.4 mS/cm
    exchange_current_mA_cm2=0.5,
    interfacial_resistance_ohm_cm2=20.0,
    interphase_conductivity_S_cm=1.0e-5,
    interphase_share=0.0,
    interphase_um_per_mC_cm2=0.0,
    interphase_li_consumption=1.0,
    interphase_void_per_um=0.0,
    crack_nucleation_mA_cm2=0.1,  # brittle: cracks at 0.15 mA/cm2 in the first half cycle (Hao-LPS)
    crack_nucleation_per_mC_cm2=0.02,
    crack_growth_se_per_mC_cm2=0.01,  # calibrated: crosses the pellet within one 270 mC/cm2 half cycle
    crack_width_um=3.0,  # Hao-LPS: widths peak at 3.0 um, growing to 4.4 um
    crack_widening_um_per_mC_cm2=1.7e-4,
    crack_aspect=0.6,
    crack_li_share=0.02,  # calibrated: short after 10-20 cycles, fill a few % (Hao-LPS)
    filament_width_um=6.0,
    max_cracks=6,
    critical_current_mA_cm2=0.0,
    filament_growth_se_per_mC_cm2=0.0,
    subsurface_depth_um=0.0,
    subsurface_li_share=0.0,
    variability_sigma=0.3,
    **_COMMON,
)

LLZO = Chemistry(
    name="llzo",
    se_formula="Li7La3Zr2O12",
    se_density_g_cm3=5.1,
    energy_keV=76.0,  # Dixit-LLZO at 76.2 keV: garnets absorb strongly
    porosity=0.04,
    pore_size_um=3.0,
    porosity_heterogeneity=0.6,
    initial_contact=0.8,
    initial_void_um=3.0,
    heterogeneity_sigma=0.3,
    hotspot_length_um=8.0,
    refill_mA_cm2=0.2,  # no stack pressure: little creep
    refill_interphase_um=0.0,
    void_nucleation_per_mC_cm2=2e-3,
    supply_limit_mA_cm2=2.0,
    se_conductivity_S_cm=1.0e-3,  # LLZTO about 1 mS/cm (Siniscalchi)
    exchange_current_mA_cm2=0.2,
    interfacial_resistance_ohm_cm2=800.0,  # 500-2000 Ohm cm2 for contaminated garnet surfaces
    interphase_conductivity_S_cm=1.0e-5,
    interphase_share=0.0,
    interphase_um_per_mC_cm2=0.0,
    interphase_li_consumption=1.0,
    interphase_void_per_um=0.0,
    crack_nucleation_mA_cm2=0.0,
    crack_nucleation_per_mC_cm2=0.0,
    crack_growth_se_per_mC_cm2=0.0,
    crack_width_um=3.0,
    crack_widening_um_per_mC_cm2=1.7e-4,
    crack_aspect=0.15,
    crack_li_share=0.0,
    filament_width_um=4.5,
    max_cracks=4,
    critical_current_mA_cm2=0.058,  # local; calibrated: nominal CCD about 26 uA/cm2 (Dixit-LLZO)
    filament_growth_se_per_mC_cm2=0.005,  # calibrated: 35 uA/cm2 shorts in about 2.5 h
    subsurface_depth_um=12.0,
    subsurface_li_share=0.05,  # Siniscalchi-LLZTO: Li plates in occluded sub-surface pores
    variability_sigma=0.2,
    **_COMMON,
)

PRESETS: dict[str, Chemistry] = {c.name: c for c in (LSPS, LPS, LLZO)}


def preset(name: str) -> Chemistry:
    """Chemistry preset by name (``lsps``, ``lps``, ``llzo``)."""
    try:
        return PRESETS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown chemistry {name!r}; choose one of {sorted(PRESETS)}") from None
