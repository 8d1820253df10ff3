"""Metrics: pure functions of a label volume (and grey volume) plus voxel size, in physical units.

Public API
----------
measure(labels, voxel_size_um, **options) -> dict
    Every single-volume metric under the registry's names.
compare(previous, current, elapsed_s, charge_C, voxel_size_um, **options) -> dict
    Pairwise metrics: local current-density map with uncertainty, hotspots,
    displacements, thickness changes, crack growth.

The per-metric functions live in ``layout``, ``interface``, ``cracks``,
``electrolyte`` and ``pairwise``. Nothing here imports the twin.
"""

from .cracks import crack_mask, crack_metrics, crack_widths_um
from .electrolyte import porosity, porosity_factor_maps, subsurface_porosity_map
from .interface import interface_metrics
from .layout import CellLayout, NoCellError, find_layout
from .measure import EXTRA_METRICS, MEASURED_METRICS, measure
from .pairwise import compare, current_density_mA_cm2_per_um, li_thickness_maps

__all__ = [
    "EXTRA_METRICS",
    "MEASURED_METRICS",
    "CellLayout",
    "NoCellError",
    "compare",
    "crack_mask",
    "crack_metrics",
    "crack_widths_um",
    "current_density_mA_cm2_per_um",
    "find_layout",
    "interface_metrics",
    "li_thickness_maps",
    "measure",
    "porosity",
    "porosity_factor_maps",
    "subsurface_porosity_map",
]
