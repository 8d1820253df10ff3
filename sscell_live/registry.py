"""The one registry of sscell_live: codes, names, units and conventions.

Everything that more than one part of the project must agree on lives here,
so that the twin, the devices, the plans, the monitor and Tiled all speak the
same language:

- material codes of label volumes (``Material``) and the derived semantic
  classes the twin reports as truth (``Semantic``);
- the stable metric names with their units (they become Tiled columns);
- the versioned start-document schema of every run;
- the geometry and current-sign conventions.

Nothing here imports the rest of the package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Material",
    "Semantic",
    "MetricSpec",
    "METRICS",
    "metric_unit",
    "START_SCHEMA_VERSION",
    "START_DOC_REQUIRED",
    "START_DOC_KEYS",
    "validate_start_metadata",
    "CONVENTIONS",
    "stripping_interface",
    "LI_MOLAR_VOLUME_CM3_MOL",
    "FARADAY_C_MOL",
    "GAS_CONSTANT_J_MOL_K",
]

# ---------------------------------------------------------------------------
# Physical constants used across the project (SCIENCE.md section 3)
# ---------------------------------------------------------------------------
#: Molar volume of lithium metal, cm3/mol.
LI_MOLAR_VOLUME_CM3_MOL = 13.0
#: Faraday constant, C/mol.
FARADAY_C_MOL = 96485.332
#: Gas constant, J/(mol K).
GAS_CONSTANT_J_MOL_K = 8.314462618


# ---------------------------------------------------------------------------
# Label volumes
# ---------------------------------------------------------------------------
class Material(enum.IntEnum):
    """Material codes of a label volume (uint8).

    Voids, pores, cracks and air are all ``VACUUM``: a tomogram cannot tell
    them apart by material, only by where they are (see ``Semantic``).
    """

    VACUUM = 0
    LI = 1
    SE = 2
    INTERPHASE = 3
    STEEL = 4
    HOUSING = 5


class Semantic(enum.IntEnum):
    """Semantic truth codes the twin reports beside the material labels.

    These are *derived* classes (the segmentation never outputs them as
    material codes); the twin keeps them so tests can compare metrics with
    ground truth.
    """

    BACKGROUND = 0  # air around the housing
    HOUSING = 1
    STEEL_TOP = 2
    STEEL_BOTTOM = 3
    LI_TOP = 4  # Li metal of the top electrode
    LI_BOTTOM = 5
    SE = 6  # dense solid electrolyte
    SE_PORE = 7  # empty pore inside the SE pellet
    VOID_TOP = 8  # interfacial void at the top Li|SE interface
    VOID_BOTTOM = 9
    INTERPHASE_TOP = 10
    INTERPHASE_BOTTOM = 11
    CRACK = 12  # empty crack in the SE
    LI_IN_CRACK = 13  # Li metal inside a crack (filament)
    LI_IN_PORE = 14  # Li plated inside a sub-surface SE pore


#: Material code of each semantic class.
SEMANTIC_TO_MATERIAL: dict[Semantic, Material] = {
    Semantic.BACKGROUND: Material.VACUUM,
    Semantic.HOUSING: Material.HOUSING,
    Semantic.STEEL_TOP: Material.STEEL,
    Semantic.STEEL_BOTTOM: Material.STEEL,
    Semantic.LI_TOP: Material.LI,
    Semantic.LI_BOTTOM: Material.LI,
    Semantic.SE: Material.SE,
    Semantic.SE_PORE: Material.VACUUM,
    Semantic.VOID_TOP: Material.VACUUM,
    Semantic.VOID_BOTTOM: Material.VACUUM,
    Semantic.INTERPHASE_TOP: Material.INTERPHASE,
    Semantic.INTERPHASE_BOTTOM: Material.INTERPHASE,
    Semantic.CRACK: Material.VACUUM,
    Semantic.LI_IN_CRACK: Material.LI,
    Semantic.LI_IN_PORE: Material.LI,
}


# ---------------------------------------------------------------------------
# Metrics: stable names and units (they become Tiled columns)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One stable metric: its name, unit and meaning."""

    name: str
    unit: str
    description: str


def _m(name: str, unit: str, description: str) -> MetricSpec:
    return MetricSpec(name, unit, description)


_METRIC_LIST = [
    # per interface (top / bottom)
    *[
        m
        for side in ("top", "bottom")
        for m in (
            _m(f"contact_fraction_{side}", "1",
               f"share of pellet columns in the field of view with no vacuum in the Li band next to the {side} interface"),
            _m(f"void_volume_{side}_um3", "um3", f"interfacial void volume at the {side} Li|SE interface (from grey scans: voids at most "
               "2 voxels high are measured only to -21/+11 %; sscell_live.segment.DETECTION_LIMITS)"),
            _m(f"void_count_{side}", "1", f"number of connected interfacial voids at the {side} interface"),
            _m(f"li_volume_{side}_um3", "um3", f"Li metal volume of the {side} electrode"),
            _m(f"li_thickness_{side}_um", "um", f"mean Li thickness of the {side} electrode over pellet columns"),
            _m(f"interphase_volume_{side}_um3", "um3", f"interphase volume at the {side} interface"),
            _m(f"interphase_thickness_{side}_um", "um", f"mean interphase thickness at the {side} interface"),
            _m(f"effective_current_density_{side}_mA_cm2", "mA/cm2",
               f"nominal current density divided by the {side} contact fraction"),
            _m(f"interface_position_{side}_um", "um", f"z position of the {side} Li|SE interface from the volume top"),
            _m(f"collector_position_{side}_um", "um", f"z position of the {side} current-collector face"),
        )
    ],
    # electrolyte
    _m("se_porosity", "1", "transparent SE voxels that are not cracks, over the SE pellet volume"),
    _m("se_thickness_um", "um", "mean SE pellet thickness"),
    _m("xray_transparent_volume_um3", "um3", "pores + cracks + Li inside the SE (Dixit's X-ray transparent region)"),
    _m("porosity_factor_map_in_plane", "1", "d = phi/phi0 - 1 on 30 um cubes, averaged through the thickness (y, x blocks)"),
    _m("porosity_factor_map_through_plane", "1", "d = phi/phi0 - 1 on 30 um cubes, averaged along y (z, x blocks)"),
    _m("porosity_phi0", "1", "porosity of the whole pellet, the phi0 of the porosity factor"),
    *[
        m
        for side in ("top", "bottom")
        for m in (
            _m(f"void_sizes_{side}_um3", "um3", f"volume of each interfacial void at the {side} interface, descending"),
            _m(f"void_map_{side}_um", "um", f"interfacial void height per column, {side} (y, x)"),
            _m(f"subsurface_porosity_map_{side}", "1", f"transparent share of the SE within 30 um of the {side} face (y, x)"),
        )
    ],
    _m("crack_widths_um", "um", "every local crack width (runs across each crack)"),
    # cracks
    _m("crack_volume_um3", "um3", "crack volume including the Li inside cracks"),
    _m("crack_count", "1", "number of connected cracks"),
    _m("crack_width_median_um", "um", "median local crack width"),
    _m("crack_width_max_um", "um", "largest local crack width"),
    _m("crack_penetration_fraction", "1", "deepest crack penetration as a fraction of SE thickness (from grey scans: "
       "garnet filaments are found where 2 voxels across and their 1-voxel tails followed; filaments at the pellet "
       "rim are missed; sscell_live.segment.DETECTION_LIMITS)"),
    _m("crack_spans_pellet", "bool", "a crack connects the two SE faces"),
    _m("li_in_crack_volume_um3", "um3", "Li metal volume inside cracks"),
    _m("crack_fill_fraction_imaged", "1", "Li seen in cracks / crack volume"),
    _m("crack_fill_fraction_from_charge", "1", "Li volume expected from the charge passed / crack volume (Hao-LPS)"),
    _m("li_path_connects", "bool", "a Li-filled path connects the two electrodes"),
    _m("li_penetration_fraction", "1",
       "deepest Li inside the SE (Li in cracks or pores connected to an electrode) as a fraction of SE thickness"),
    # whole stack
    _m("stack_thickness_um", "um", "distance between the current-collector faces"),
    # maps (arrays, stored as external HDF5 in analysis runs)
    _m("contact_map_top", "bool", "projected contact map of the top interface (y, x)"),
    _m("contact_map_bottom", "bool", "projected contact map of the bottom interface (y, x)"),
    _m("li_thickness_map_top_um", "um", "Li thickness per column, top electrode (y, x)"),
    _m("li_thickness_map_bottom_um", "um", "Li thickness per column, bottom electrode (y, x)"),
    _m("current_density_map", "mA/cm2", "local current density between two scans (Dixit-LLZO)"),
    # electrochemistry
    _m("voltage_V", "V", "cell voltage (top minus bottom)"),
    _m("current_mA", "mA", "applied current"),
    _m("current_mA_cm2", "mA/cm2", "applied current density over the nominal area; positive strips the top electrode"),
    _m("charge_passed_C", "C", "charge passed since the start of the experiment (signed)"),
    _m("charge_passed_abs_C", "C", "total charge throughput since the start (unsigned)"),
    _m("bulk_resistance_ohm", "Ohm", "bulk (SE) resistance, the impedance high-frequency intercept"),
    _m("polarization_V", "V", "|voltage| at the applied current"),
    _m("cell_time_s", "s", "time on the cell's clock"),
]

#: Stable metric names -> spec. Import this, never retype a name.
METRICS: dict[str, MetricSpec] = {m.name: m for m in _METRIC_LIST}


def metric_unit(name: str) -> str:
    """Unit of a registered metric.

    Raises
    ------
    KeyError
        If ``name`` is not a registered metric (a typo would otherwise become a
        new Tiled column silently).
    """
    try:
        return METRICS[name].unit
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {sorted(METRICS)}") from None


# ---------------------------------------------------------------------------
# Conventions
# ---------------------------------------------------------------------------
CONVENTIONS = {
    "volume_axes": "(z, y, x); z along the cell axis = rotation axis; z = 0 is detector row 0, at the top current collector",
    "projection_axes": "(angle, row, column)",
    "angles": "radians in code; degrees only in files that store degrees (Data Exchange theta)",
    "rotation_centre": "sub-pixel detector column of the rotation axis",
    "current_sign": "positive current strips the top electrode and plates the bottom one",
    "voltage_sign": "voltage is top electrode minus bottom electrode potential",
}


def stripping_interface(current_mA_cm2: float) -> str | None:
    """Which interface strips at a given current (the sign convention).

    Returns ``"top"`` for positive current, ``"bottom"`` for negative and
    ``None`` at open circuit.
    """
    if current_mA_cm2 > 0:
        return "top"
    if current_mA_cm2 < 0:
        return "bottom"
    return None


# ---------------------------------------------------------------------------
# Start-document schema
# ---------------------------------------------------------------------------
#: Bump when a key changes meaning; readers check it.
START_SCHEMA_VERSION = 1

#: Keys every sscell_live start document carries (beyond bluesky's own).
START_DOC_REQUIRED = {
    "sscell_schema_version": "int, START_SCHEMA_VERSION",
    "experiment_uid": "str, ties together all runs of one experiment",
    "run_kind": "str, one of 'tomo_scan', 'galvanostatic_step', 'analysis'",
    "step_index": "int, counter of galvanostatic steps so far in the experiment",
    "scan_index": "int, counter of tomography scans so far in the experiment",
    "cell": "dict: chemistry, diameter_um, area_cm2, li_top_um, se_um, li_bottom_um",
    "current_sign_convention": "str, CONVENTIONS['current_sign']",
}

#: Optional keys with their meaning (present where they apply).
START_DOC_KEYS = {
    **START_DOC_REQUIRED,
    "current_mA_cm2": "float, applied current density of a step or during a scan",
    "stripping_interface": "str, 'top', 'bottom' or None",
    "beam": "dict: energy_keV or spectrum ([keV], [weights])",
    "pixel_size_um": "float, detector pixel size at the sample",
    "sample_detector_distance_mm": "float",
    "exposure_s": "float",
    "angles_deg": "[start, stop, count] of the projection angles",
    "num_darks": "int",
    "num_flats": "int",
    "twin": "dict: seed, version, chemistry preset, geometry preset (simulated runs only)",
}

_RUN_KINDS = {"tomo_scan", "galvanostatic_step", "analysis"}


def validate_start_metadata(md: dict) -> None:
    """Check that start-document metadata follows the sscell_live schema.

    Parameters
    ----------
    md : dict
        The metadata a plan puts in its start document.

    Raises
    ------
    ValueError
        Naming every missing key or wrong value at once.
    """
    problems = [f"missing key {k!r} ({START_DOC_REQUIRED[k]})" for k in START_DOC_REQUIRED if k not in md]
    if "sscell_schema_version" in md and md["sscell_schema_version"] != START_SCHEMA_VERSION:
        problems.append(
            f"sscell_schema_version is {md['sscell_schema_version']!r}, this code reads {START_SCHEMA_VERSION}"
        )
    if "run_kind" in md and md["run_kind"] not in _RUN_KINDS:
        problems.append(f"run_kind {md['run_kind']!r} is not one of {sorted(_RUN_KINDS)}")
    cell = md.get("cell")
    if cell is not None:
        for key in ("chemistry", "diameter_um", "area_cm2"):
            if key not in cell:
                problems.append(f"cell metadata lacks {key!r}")
    if problems:
        raise ValueError("start metadata does not follow the sscell_live schema: " + "; ".join(problems))
