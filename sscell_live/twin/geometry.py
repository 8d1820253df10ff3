"""Cell geometry of the twin: layer thicknesses, pellet and housing, voxel grid.

Two documented presets:

``mini``
    A scaled cell for CI and tests: same physics, thinner layers, 1.5 um
    voxels, 64-256 voxels per side. Voids and cracks are several voxels
    across.
``full``
    True dimensions from SCIENCE.md (2 mm pellet, 0.8 mm SE, 300 um Li foils)
    at a coarse voxel, or at a finer voxel on a large grid (it builds at
    1024^3 within 24 GiB).

Frame: the SE pellet is the reference. Its faces sit on voxel boundaries and
never move; the current collectors move as the Li electrodes thin or thicken
(their displacement is reported as truth). z = 0 is the top of the volume,
inside the top steel collector (DESIGN.md geometry convention).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

__all__ = ["CellGeometry", "mini", "full"]


@functools.lru_cache(maxsize=32)
def _lateral_radius_um(n_lateral: int, voxel_size_um: float):
    """Column-centre radii, um, (y, x); cached and read-only (the twin asks for it thousands of times a run)."""
    import numpy as np

    idx = np.arange(n_lateral, dtype=np.float64) - n_lateral / 2
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    r = np.hypot(yy, xx) * voxel_size_um
    r.flags.writeable = False
    return r


@dataclass(frozen=True)
class CellGeometry:
    """Geometry of a symmetric steel | Li | SE | Li | steel cell on a voxel grid.

    Parameters
    ----------
    name : str
        Preset name (``"mini"``, ``"full"`` or a custom label).
    voxel_size_um : float
        Edge of a cubic voxel, um.
    n_lateral : int
        Voxels along y and x (the field of view is ``n_lateral * voxel_size_um``).
    steel_um : float
        Visible height of each steel current collector at the start, um. It
        must exceed the largest collector displacement of an experiment.
    li_top_um, se_um, li_bottom_um : float
        Initial layer thicknesses, um. ``se_um`` is rounded to whole voxels so
        that the pellet faces sit on voxel boundaries.
    pellet_diameter_um : float
        Diameter of the SE pellet, Li foils and collector rods, um.
    housing_outer_diameter_um : float
        Outer diameter of the PEEK housing ring around the stack, um. May
        exceed the field of view (a laterally truncated scan).
    """

    name: str
    voxel_size_um: float
    n_lateral: int
    steel_um: float
    li_top_um: float
    se_um: float
    li_bottom_um: float
    pellet_diameter_um: float
    housing_outer_diameter_um: float

    def __post_init__(self) -> None:
        checks = {
            "voxel_size_um": self.voxel_size_um,
            "steel_um": self.steel_um,
            "li_top_um": self.li_top_um,
            "se_um": self.se_um,
            "li_bottom_um": self.li_bottom_um,
            "pellet_diameter_um": self.pellet_diameter_um,
        }
        for key, value in checks.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"CellGeometry.{key} must be a positive number of um, got {value!r}")
        if self.n_lateral < 16:
            raise ValueError(f"CellGeometry.n_lateral must be at least 16 voxels, got {self.n_lateral}")
        if self.housing_outer_diameter_um <= self.pellet_diameter_um:
            raise ValueError("housing_outer_diameter_um must exceed pellet_diameter_um")
        if self.se_voxels < 8:
            raise ValueError(f"the SE pellet is only {self.se_voxels} voxels thick; use a smaller voxel")

    # -- derived sizes (voxels) ------------------------------------------------
    @property
    def se_voxels(self) -> int:
        """SE thickness in whole voxels."""
        return max(1, round(self.se_um / self.voxel_size_um))

    @property
    def se_thickness_um(self) -> float:
        """SE thickness actually used (whole voxels), um."""
        return self.se_voxels * self.voxel_size_um

    @property
    def se_top_index(self) -> int:
        """Index of the first SE voxel layer (the top SE face is its upper boundary)."""
        return round((self.steel_um + self.li_top_um) / self.voxel_size_um)

    @property
    def se_bottom_index(self) -> int:
        """One past the last SE voxel layer (the bottom SE face)."""
        return self.se_top_index + self.se_voxels

    @property
    def se_top_um(self) -> float:
        """z of the top SE face, um from the volume top."""
        return self.se_top_index * self.voxel_size_um

    @property
    def se_bottom_um(self) -> float:
        """z of the bottom SE face, um from the volume top."""
        return self.se_bottom_index * self.voxel_size_um

    @property
    def nz(self) -> int:
        """Voxels along the cell axis."""
        total = self.se_bottom_um + self.li_bottom_um + self.steel_um
        return int(math.ceil(total / self.voxel_size_um))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (z, y, x)."""
        return (self.nz, self.n_lateral, self.n_lateral)

    @property
    def pellet_radius_um(self) -> float:
        return self.pellet_diameter_um / 2

    @property
    def area_cm2(self) -> float:
        """Nominal electrode area (the pellet face), cm2."""
        return math.pi * (self.pellet_radius_um * 1e-4) ** 2

    @property
    def column_area_um2(self) -> float:
        """Area of one voxel column, um2."""
        return self.voxel_size_um**2

    def lateral_radius_um(self):
        """Distance of every column centre from the cell axis, um, shape (y, x).

        The cell axis sits at index ``n_lateral / 2`` on both axes, the
        TomoPy / scikit-image rotation-centre convention for even widths.
        """
        return _lateral_radius_um(int(self.n_lateral), float(self.voxel_size_um))

    def pellet_mask(self):
        """Columns inside the pellet (and the field of view), bool (y, x)."""
        return self.lateral_radius_um() <= self.pellet_radius_um

    def housing_mask(self):
        """Columns inside the housing ring (not the pellet), bool (y, x)."""
        r = self.lateral_radius_um()
        return (r > self.pellet_radius_um) & (r <= self.housing_outer_diameter_um / 2)

    def describe(self) -> dict:
        """Cell metadata for start documents (registry ``cell`` schema)."""
        return {
            "geometry": self.name,
            "diameter_um": self.pellet_diameter_um,
            "area_cm2": self.area_cm2,
            "li_top_um": self.li_top_um,
            "se_um": self.se_thickness_um,
            "li_bottom_um": self.li_bottom_um,
            "voxel_size_um": self.voxel_size_um,
            "shape_zyx": list(self.shape),
        }


def mini(n_lateral: int = 128, voxel_size_um: float = 1.5) -> CellGeometry:
    """Scaled cell for CI: 1.5 um voxels, pellet 78 % of the field of view.

    Layers: 15 um steel, 60 um Li, 90 um SE, 60 um Li, 15 um steel (160
    voxels tall). The Li foils are thick enough for about 12 mAh/cm2 of
    stripping (Lewis-LSPS strips about 5 mAh/cm2 per half cycle).
    """
    fov = n_lateral * voxel_size_um
    return CellGeometry(
        name="mini",
        voxel_size_um=voxel_size_um,
        n_lateral=n_lateral,
        steel_um=30.0,
        li_top_um=60.0,
        se_um=90.0,
        li_bottom_um=60.0,
        pellet_diameter_um=0.78 * fov,
        housing_outer_diameter_um=0.94 * fov,
    )


def full(voxel_size_um: float = 4.0, n_lateral: int | None = None) -> CellGeometry:
    """True-size cell (SCIENCE.md section 1): 2 mm pellet, 0.8 mm SE, 300 um Li.

    Parameters
    ----------
    voxel_size_um : float
        Voxel edge, um. 4 um gives a 560 x 560 x 450 volume; 2 um a
        1024-wide grid (the pellet then fills the field of view).
    n_lateral : int, optional
        Lateral voxels. Defaults to a field of view 12 % wider than the
        pellet, capped so that the field of view is never narrower than the
        pellet unless asked (a laterally truncated scan, as in Dixit-LPS).
    """
    if n_lateral is None:
        n_lateral = int(math.ceil(2000.0 * 1.12 / voxel_size_um / 8) * 8)
    return CellGeometry(
        name="full",
        voxel_size_um=voxel_size_um,
        n_lateral=n_lateral,
        steel_um=200.0,
        li_top_um=300.0,
        se_um=800.0,
        li_bottom_um=300.0,
        pellet_diameter_um=2000.0,
        housing_outer_diameter_um=4000.0,
    )
