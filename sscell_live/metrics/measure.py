"""``measure``: every single-volume metric of a label volume, by registry name."""

from __future__ import annotations

import numpy as np

from ..registry import FARADAY_C_MOL, LI_MOLAR_VOLUME_CM3_MOL, METRICS, Material
from ._checks import check_labels, check_voxel_size
from .cracks import MIN_RUN_UM, MIN_VOLUME_UM3, crack_mask, crack_metrics
from .electrolyte import porosity, porosity_factor_maps, subsurface_porosity_map
from .interface import interface_metrics
from .layout import NoCellError, find_layout

__all__ = ["EXTRA_METRICS", "MEASURED_METRICS", "li_volume_from_charge_um3", "measure"]

SIDES = ("top", "bottom")

#: Outputs of ``measure`` that are not metrics: name -> (unit, meaning).
EXTRA_METRICS = {
    "notes": ("", "why a metric is None (empty or undefined), one line each"),
}

#: Registry metrics ``measure`` fills (the others are electrochemistry or pairwise).
MEASURED_METRICS = tuple(
    name for name in METRICS
    if name not in {"current_density_map", "voltage_V", "current_mA", "current_mA_cm2",
                    "charge_passed_C", "charge_passed_abs_C", "bulk_resistance_ohm", "polarization_V",
                    "cell_time_s"}
)


def li_volume_from_charge_um3(charge_C: float) -> float:
    """Li metal volume moved by a charge (Faraday, 13.0 cm3/mol), um3."""
    return abs(float(charge_C)) / FARADAY_C_MOL * LI_MOLAR_VOLUME_CM3_MOL * 1e12


def _empty(reason: str) -> dict:
    out = {name: None for name in MEASURED_METRICS}
    out.update({name: None for name in EXTRA_METRICS})
    out["notes"] = [reason]
    return out


def measure(labels, voxel_size_um, *, band_um: float = 8.5, crack_min_run_um: float = MIN_RUN_UM,
            crack_min_volume_um3: float = MIN_VOLUME_UM3, cube_um: float = 30.0, subsurface_depth_um: float = 30.0,
            current_mA_cm2: float | None = None, charge_C: float | None = None) -> dict:
    """Every single-volume metric of a material label volume.

    Parameters
    ----------
    labels : ndarray uint8 (z, y, x)
        Material codes (``registry.Material``); z along the cell axis, z = 0 at
        the top current collector.
    voxel_size_um : float
        Voxel edge, um (> 0).
    band_um : float
        Li band next to each interface checked for vacuum by the contact
        criterion (default 8.5 um, Lewis's 5 pixels of 1.7 um).
    crack_min_run_um, crack_min_volume_um3 : float
        Crack detection (see :mod:`sscell_live.metrics.cracks`).
    cube_um : float
        Cube edge of the porosity-factor maps (Dixit-LPS: 30 um).
    subsurface_depth_um : float
        Depth of the sub-surface porosity maps.
    current_mA_cm2 : float, optional
        Nominal current density during the scan; gives
        ``effective_current_density_*_mA_cm2`` = |j| / contact fraction.
    charge_C : float, optional
        Charge throughput (unsigned, C) up to this scan; gives
        ``crack_fill_fraction_from_charge`` (Hao-LPS: Li volume from the charge
        / crack volume).

    Returns
    -------
    dict
        Registry names (``MEASURED_METRICS``) plus ``EXTRA_METRICS``; scalars
        are Python floats/ints/bools, maps ndarrays. A metric that cannot be
        defined is ``None`` and ``notes`` says why; a volume without a cell
        (all vacuum, no SE) gives every metric ``None``.

    Raises
    ------
    TypeError
        ``labels`` not of an integer dtype.
    ValueError
        Bad shape, unknown codes, voxel size not a positive number.
    """
    v = check_voxel_size(voxel_size_um)
    labels = check_labels(labels)
    try:
        layout = find_layout(labels, v)
    except NoCellError as exc:
        return _empty(f"no cell in the volume: {exc}")
    notes: list[str] = []
    out: dict = {}
    for side in SIDES:
        out.update(interface_metrics(labels, layout, side, band_um=band_um))
        if out[f"collector_position_{side}_um"] is None:
            notes.append(f"collector_position_{side}_um: no steel in view on the {side} side")
        if out[f"li_volume_{side}_um3"] == 0:
            notes.append(f"no Li metal in the {side} electrode: contact fraction is 0")
        eff = f"effective_current_density_{side}_mA_cm2"
        if current_mA_cm2 is None:
            out[eff] = None
        elif out[f"contact_fraction_{side}"] > 0:
            out[eff] = abs(float(current_mA_cm2)) / out[f"contact_fraction_{side}"]
        else:
            out[eff] = None
            notes.append(f"{eff}: no contact at the {side} interface (unbounded)")
    if out["collector_position_top_um"] is not None and out["collector_position_bottom_um"] is not None:
        out["stack_thickness_um"] = out["collector_position_bottom_um"] - out["collector_position_top_um"]
    else:
        out["stack_thickness_um"] = None
        notes.append("stack_thickness_um: a current collector is out of view")

    pellet = layout.pellet
    se = labels[layout.se_top : layout.se_bottom]
    li_in_se = (se == Material.LI) & pellet[None]
    transparent = ((se == Material.VACUUM) & pellet[None]) | li_in_se
    cracks = crack_mask(transparent, v, crack_min_run_um, crack_min_volume_um3)
    pores = transparent & ~cracks
    out["se_thickness_um"] = layout.se_voxels * v
    out["se_porosity"] = porosity(pores, pellet)
    out["xray_transparent_volume_um3"] = float(np.count_nonzero(transparent) * v**3)
    out.update(crack_metrics(cracks, li_in_se, v))
    if charge_C is None or out["crack_volume_um3"] == 0:
        out["crack_fill_fraction_from_charge"] = None
        if charge_C is not None:
            notes.append("crack_fill_fraction_from_charge: no crack")
    else:
        out["crack_fill_fraction_from_charge"] = li_volume_from_charge_um3(charge_C) / out["crack_volume_um3"]
    out.update(porosity_factor_maps(pores, pellet, v, cube_um))
    for side in SIDES:
        out[f"subsurface_porosity_map_{side}"] = subsurface_porosity_map(transparent, pellet, v, side, subsurface_depth_um)
    out["notes"] = notes
    missing = [k for k in MEASURED_METRICS if k not in out]
    assert not missing, f"measure forgot {missing}"  # a registry name added without its code
    return out
