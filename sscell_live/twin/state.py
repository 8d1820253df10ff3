"""The twin's cell state and its rasterisation into label volumes.

The state is kept in continuous, physical form (height maps in um per
column, crack objects in um, a pore mask fixed to the pellet) so that
Faraday's law can be checked exactly; ``render_semantic`` turns it into the
voxel truth the metrics are compared with. A voxel belongs to a layer when
its centre lies inside it.

Column layout, top electrode, from the top of the volume down::

    steel | Li | void | interphase | SE face
          ^ collector face at se_top_um - gap_top_um

``gap`` (collector face to SE face) = Li + void + interphase in every pellet
column: the rigid collector, under stack pressure, follows the mean Li loss
and creep keeps the Li against it, so voids open at the SE side (Lewis-LSPS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..registry import SEMANTIC_TO_MATERIAL, Semantic
from .geometry import CellGeometry

__all__ = ["Crack", "CellState", "render_semantic", "semantic_to_material", "SIDES"]

SIDES = ("top", "bottom")

#: Objects (voids, cracks, Li paths) are connected through faces, edges and corners.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)

_MATERIAL_LUT = np.zeros(256, dtype=np.uint8)
for _s, _m in SEMANTIC_TO_MATERIAL.items():
    _MATERIAL_LUT[int(_s)] = int(_m)


@dataclass
class Crack:
    """A semi-elliptical crack growing from one SE face into the pellet.

    The crack plane is vertical (through-plane crack), through the point
    ``(y_um, x_um)`` of the origin face, along the in-plane direction
    ``angle_rad``. A point at in-plane distance ``s`` along the crack, depth
    ``d`` below the origin face and distance ``n`` from the plane is inside
    when ``(s/half_length)^2 + (d/depth)^2 <= 1`` and ``|n|`` is below half
    the local opening, which tapers elliptically from ``width_um`` at the
    mouth centre. Li fills the crack from the mouth as a filament of lateral
    width ``li_width_um`` centred on ``s = 0``, down to ``li_depth_um``.
    """

    side: str  # origin face: "top" or "bottom"
    y_um: float  # position on the face, from the cell axis
    x_um: float
    angle_rad: float
    depth_um: float
    half_length_um: float
    width_um: float
    li_depth_um: float = 0.0
    li_width_um: float = 0.0
    li_far_um: float = 0.0  # Li entering a spanning crack from the far face
    filament: bool = False  # a garnet Li filament (Li-filled, narrow) rather than a crack
    born_s: float = 0.0

    def li_bridges(self, geometry: CellGeometry) -> bool:
        """Li in this crack reaches both SE faces on the voxel grid.

        True when every voxel layer of the pellet has a voxel centre covered
        by the Li from the origin face or from the far face, which is exactly
        when the rasterised Li path connects the electrodes; the twin shorts
        then, so the voxel truth and the electrical state never disagree.
        """
        v = geometry.voxel_size_um
        centres = (np.arange(geometry.se_voxels) + 0.5) * v
        covered = centres <= self.li_depth_um
        if self.li_far_um > 0 and self.depth_um >= geometry.se_thickness_um - 1e-9:
            covered |= centres >= self.depth_um - self.li_far_um
        return bool(covered.all())

    def li_volume_um3(self) -> float:
        """Li inside this crack, um3 (continuous: filament length x width x mean opening)."""
        lateral = min(self.li_width_um, 2 * self.half_length_um)
        return (self.li_depth_um + self.li_far_um) * lateral * self.width_um * np.pi / 4


@dataclass
class CellState:
    """Continuous state of the cell at one time.

    Lateral maps are float64 (y, x) in um over the whole grid; only pellet
    columns are meaningful.
    """

    geometry: CellGeometry
    time_s: float
    charge_mC_cm2: float  # signed charge passed since the start (positive strips top)
    charge_abs_mC_cm2: float
    gap_um: dict[str, float]  # collector face to SE face, per side
    void_um: dict[str, np.ndarray]
    interphase_um: dict[str, np.ndarray]
    conductance: dict[str, np.ndarray]  # local interfacial conductance factor (mean 1 over the pellet)
    pores: np.ndarray  # bool (se_voxels, y, x), SE pores (fixed to the pellet)
    li_in_pores: np.ndarray  # bool, same shape: pores filled with plated Li
    porosity_factor_blocks: np.ndarray  # d = phi/phi0 - 1 per microstructure block
    cracks: list[Crack] = field(default_factory=list)
    li_in_pores_um3: float = 0.0  # continuous volume plated into pores (raster follows it)
    shorted: bool = False
    shorted_at_s: float | None = None  # cell time of the short
    version: int = 0
    last_local_current: dict[str, np.ndarray] = field(default_factory=dict)

    # -- derived, continuous ----------------------------------------------------
    def li_thickness_um(self, side: str) -> np.ndarray:
        """Li metal thickness per column, um (continuous; zero outside the pellet)."""
        t = self.gap_um[side] - self.void_um[side] - self.interphase_um[side]
        return np.where(self.geometry.pellet_mask(), np.maximum(t, 0.0), 0.0)

    def collector_position_um(self, side: str) -> float:
        """z of the collector face, um from the volume top."""
        g = self.geometry
        return g.se_top_um - self.gap_um["top"] if side == "top" else g.se_bottom_um + self.gap_um["bottom"]

    def li_volume_electrodes_um3(self) -> float:
        """Li metal in both electrodes (continuous), um3."""
        a = self.geometry.column_area_um2
        return float(sum(self.li_thickness_um(s).sum() for s in SIDES) * a)

    def li_in_cracks_um3(self) -> float:
        """Li inside cracks (continuous filament volume), um3."""
        return float(sum(c.li_volume_um3() for c in self.cracks))

    def total_li_um3(self) -> float:
        """All Li metal in the cell: electrodes + cracks + pores, um3 (continuous)."""
        return self.li_volume_electrodes_um3() + self.li_in_cracks_um3() + self.li_in_pores_um3

    def interphase_volume_um3(self) -> float:
        a = self.geometry.column_area_um2
        mask = self.geometry.pellet_mask()
        return float(sum(self.interphase_um[s][mask].sum() for s in SIDES) * a)


# ---------------------------------------------------------------------------
# rasterisation
# ---------------------------------------------------------------------------
def render_semantic(state: CellState) -> np.ndarray:
    """Voxel truth of a state: semantic codes (``registry.Semantic``), uint8 (z, y, x).

    A voxel takes the class of the layer or object that contains its centre.
    Builds plane by plane so a 1024^3 volume needs about 1 GiB plus a few
    planes.
    """
    g = state.geometry
    v = g.voxel_size_um
    nz, ny, nx = g.shape
    out = np.empty(g.shape, dtype=np.uint8)
    pellet = g.pellet_mask()
    housing = g.housing_mask()
    base = np.full((ny, nx), Semantic.BACKGROUND, dtype=np.uint8)
    base[housing] = Semantic.HOUSING

    cc_top = state.collector_position_um("top")
    cc_bot = state.collector_position_um("bottom")
    inter_top_start = g.se_top_um - state.interphase_um["top"]  # upper edge of interphase
    void_top_start = inter_top_start - state.void_um["top"]
    inter_bot_end = g.se_bottom_um + state.interphase_um["bottom"]
    void_bot_end = inter_bot_end + state.void_um["bottom"]
    crack_sem = _render_cracks(state)
    se_i0 = g.se_top_index

    for k in range(nz):
        zc = (k + 0.5) * v
        plane = base.copy()
        if zc < g.se_top_um:
            layer = np.where(
                zc < cc_top,
                Semantic.STEEL_TOP,
                np.where(
                    zc < void_top_start,
                    Semantic.LI_TOP,
                    np.where(zc < inter_top_start, Semantic.VOID_TOP, Semantic.INTERPHASE_TOP),
                ),
            )
        elif zc < g.se_bottom_um:
            j = k - se_i0
            layer = np.full((ny, nx), Semantic.SE, dtype=np.uint8)
            layer[state.pores[j]] = Semantic.SE_PORE
            layer[state.li_in_pores[j]] = Semantic.LI_IN_PORE
            cs = crack_sem[j]
            layer[cs > 0] = cs[cs > 0]
        else:
            layer = np.where(
                zc >= cc_bot,
                Semantic.STEEL_BOTTOM,
                np.where(
                    zc >= void_bot_end,
                    Semantic.LI_BOTTOM,
                    np.where(zc >= inter_bot_end, Semantic.VOID_BOTTOM, Semantic.INTERPHASE_BOTTOM),
                ),
            )
        plane[pellet] = np.asarray(layer, dtype=np.uint8)[pellet] if np.ndim(layer) else layer
        out[k] = plane
    return out


def semantic_to_material(semantic: np.ndarray) -> np.ndarray:
    """Material codes (``registry.Material``) of a semantic volume, uint8."""
    return _MATERIAL_LUT[semantic]


def crack_voxel_masks(state: CellState) -> list[tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]]:
    """Per crack: (bounding box in SE-local voxels, crack mask, Li mask) within the box."""
    g = state.geometry
    v = g.voxel_size_um
    n = g.n_lateral
    nse = g.se_voxels
    out = []
    for c in state.cracks:
        reach = max(c.half_length_um, c.width_um) + 2 * v
        cy = c.y_um / v + n / 2
        cx = c.x_um / v + n / 2
        y0, y1 = max(0, int(cy - reach / v) - 1), min(n, int(cy + reach / v) + 2)
        x0, x1 = max(0, int(cx - reach / v) - 1), min(n, int(cx + reach / v) + 2)
        dvox = min(nse, int(np.ceil(c.depth_um / v)) + 1)
        if y1 <= y0 or x1 <= x0 or dvox <= 0:
            continue
        kk = np.arange(dvox)
        depth = (kk + 0.5) * v  # depth of voxel centres below the origin face
        yy = (np.arange(y0, y1) - n / 2) * v
        xx = (np.arange(x0, x1) - n / 2) * v
        d3 = depth[:, None, None]
        dy = yy[None, :, None] - c.y_um
        dx = xx[None, None, :] - c.x_um
        s = dx * np.cos(c.angle_rad) + dy * np.sin(c.angle_rad)
        nrm = -dx * np.sin(c.angle_rad) + dy * np.cos(c.angle_rad)
        rho2 = (s / c.half_length_um) ** 2 + (d3 / max(c.depth_um, 1e-9)) ** 2
        half_open = np.maximum(0.5 * c.width_um * np.sqrt(np.clip(1 - rho2, 0, 1)), 0.75 * v)
        crack = (rho2 <= 1.0) & (np.abs(nrm) <= half_open)
        li = crack & (np.abs(s) <= c.li_width_um / 2) & ((d3 <= c.li_depth_um) | (d3 >= c.depth_um - c.li_far_um))
        if c.side == "top":
            zsl = slice(0, dvox)
        else:  # depth counts upward from the bottom face
            crack, li = crack[::-1], li[::-1]
            zsl = slice(nse - dvox, nse)
        out.append(((zsl, slice(y0, y1), slice(x0, x1)), crack, li))
    return out


def _render_cracks(state: CellState) -> np.ndarray:
    g = state.geometry
    sem = np.zeros((g.se_voxels, g.n_lateral, g.n_lateral), dtype=np.uint8)
    pellet = g.pellet_mask()
    for box, crack, li in crack_voxel_masks(state):
        inside = pellet[box[1], box[2]][None]
        view = sem[box]
        view[crack & inside & (view != Semantic.LI_IN_CRACK)] = Semantic.CRACK
        view[li & inside] = Semantic.LI_IN_CRACK
    return sem


# ---------------------------------------------------------------------------
# bookkeeping on the voxel truth
# ---------------------------------------------------------------------------
def bookkeeping(state: CellState, semantic: np.ndarray | None = None) -> dict:
    """The twin's own record of every quantity the metrics measure.

    Counted on the rendered voxel truth (so metrics from true labels must
    agree exactly), plus continuous values that have no voxel form. Keys are
    the registry's metric names; units as the registry says.
    """
    g = state.geometry
    if semantic is None:
        semantic = render_semantic(state)
    v = g.voxel_size_um
    v3 = v**3
    pellet = g.pellet_mask()
    n_cols = int(pellet.sum())
    out: dict = {}
    for side, void_c, li_c, int_c in (
        ("top", Semantic.VOID_TOP, Semantic.LI_TOP, Semantic.INTERPHASE_TOP),
        ("bottom", Semantic.VOID_BOTTOM, Semantic.LI_BOTTOM, Semantic.INTERPHASE_BOTTOM),
    ):
        void = semantic == void_c
        li_cols = (semantic == li_c).sum(axis=0)
        int_cols = (semantic == int_c).sum(axis=0)
        void_cols = void.sum(axis=0)
        contact = pellet & (void_cols == 0) & (li_cols > 0)
        out[f"contact_map_{side}"] = contact
        out[f"contact_fraction_{side}"] = float(contact.sum() / n_cols)
        out[f"void_volume_{side}_um3"] = float(void_cols.sum() * v3)
        out[f"void_count_{side}"] = int(ndimage.label(void, structure=FULL_CONNECTIVITY)[1])
        out[f"li_volume_{side}_um3"] = float(li_cols.sum() * v3)
        out[f"li_thickness_map_{side}_um"] = (li_cols * v).astype(np.float32)
        out[f"li_thickness_{side}_um"] = float(li_cols[pellet].mean() * v)
        out[f"interphase_volume_{side}_um3"] = float(int_cols.sum() * v3)
        out[f"interphase_thickness_{side}_um"] = float(int_cols[pellet].mean() * v)
        out[f"collector_position_{side}_um"] = state.collector_position_um(side)
        out[f"interface_position_{side}_um"] = g.se_top_um if side == "top" else g.se_bottom_um

    se = semantic[g.se_top_index : g.se_bottom_index]
    se_cols = pellet[None]
    n_se = int(se_cols.sum()) * g.se_voxels
    pore = int(np.count_nonzero(se == Semantic.SE_PORE))
    li_pore = int(np.count_nonzero(se == Semantic.LI_IN_PORE))
    crack_vox = (se == Semantic.CRACK) | (se == Semantic.LI_IN_CRACK)
    li_crack = int(np.count_nonzero(se == Semantic.LI_IN_CRACK))
    n_crack = int(crack_vox.sum())
    out["se_porosity"] = (pore + li_pore) / n_se
    out["se_thickness_um"] = g.se_thickness_um
    out["xray_transparent_volume_um3"] = float((pore + li_pore + n_crack) * v3)
    out["crack_volume_um3"] = float(n_crack * v3)
    out["li_in_crack_volume_um3"] = float(li_crack * v3)
    out["crack_fill_fraction_imaged"] = li_crack / n_crack if n_crack else 0.0
    labels, count = ndimage.label(crack_vox, structure=FULL_CONNECTIVITY)
    out["crack_count"] = int(count)
    pen, spans = 0.0, False
    for sl, idx in zip(ndimage.find_objects(labels), range(1, count + 1)):
        z0, z1 = sl[0].start, sl[0].stop
        touches_top, touches_bot = z0 == 0, z1 == g.se_voxels
        spans |= touches_top and touches_bot
        if touches_top:
            pen = max(pen, z1 / g.se_voxels)
        if touches_bot:
            pen = max(pen, (g.se_voxels - z0) / g.se_voxels)
    out["crack_penetration_fraction"] = float(pen)
    out["crack_spans_pellet"] = bool(spans)
    connects, li_pen = li_path(se, g.se_voxels)
    out["li_path_connects"] = connects
    out["li_penetration_fraction"] = float(li_pen)
    widths = crack_widths_um(state, semantic)
    out["crack_width_median_um"] = float(np.median(widths)) if widths.size else 0.0
    out["crack_width_max_um"] = float(widths.max()) if widths.size else 0.0
    out["stack_thickness_um"] = state.collector_position_um("bottom") - state.collector_position_um("top")
    out["porosity_factor_blocks"] = state.porosity_factor_blocks  # 3D, per 30 um block (twin only)
    return out


def li_path(se_semantic: np.ndarray, se_voxels: int) -> tuple[bool, float]:
    """Li inside the SE: whether it connects the two faces, and its deepest reach.

    Parameters
    ----------
    se_semantic : ndarray
        Semantic labels of the SE layer, (z, y, x), z = 0 at the top face.
    se_voxels : int
        SE thickness, voxels.

    Returns
    -------
    connects : bool
        One 26-connected Li body (in cracks or pores) touches both faces.
    penetration_fraction : float
        Deepest reach of Li grown from either face, as a fraction of the SE thickness.
    """
    li_se = (se_semantic == Semantic.LI_IN_CRACK) | (se_semantic == Semantic.LI_IN_PORE)
    li_lab, li_n = ndimage.label(li_se, structure=FULL_CONNECTIVITY)
    connects, li_pen = False, 0.0
    if li_n:
        top_ids = set(np.unique(li_lab[0])) - {0}
        bot_ids = set(np.unique(li_lab[-1])) - {0}
        connects = bool(top_ids & bot_ids)
        for idx, sl in enumerate(ndimage.find_objects(li_lab), start=1):
            if idx in top_ids:
                li_pen = max(li_pen, sl[0].stop / se_voxels)
            if idx in bot_ids:
                li_pen = max(li_pen, (se_voxels - sl[0].start) / se_voxels)
    return connects, float(li_pen)


def crack_widths_um(state: CellState, semantic: np.ndarray) -> np.ndarray:
    """Local widths of every crack on the voxel truth, um.

    For each crack, runs of crack voxels are counted along the lattice axis
    (x or y) closest to the crack normal and scaled by the cosine between
    them; one value per run.
    """
    g = state.geometry
    v = g.voxel_size_um
    se = semantic[g.se_top_index : g.se_bottom_index]
    crack_all = (se == Semantic.CRACK) | (se == Semantic.LI_IN_CRACK)
    widths = []
    for c, (box, cmask, _li) in zip(state.cracks, crack_voxel_masks(state)):
        sub = crack_all[box] & cmask
        if not sub.any():
            continue
        nx_, ny_ = -np.sin(c.angle_rad), np.cos(c.angle_rad)  # crack normal (x, y)
        axis = 2 if abs(nx_) >= abs(ny_) else 1
        cosang = max(abs(nx_), abs(ny_))
        moved = np.moveaxis(sub, axis, -1).reshape(-1, sub.shape[axis]).astype(np.int8)
        padded = np.pad(moved, ((0, 0), (1, 1)))
        d = np.diff(padded, axis=1)
        starts = np.argwhere(d == 1)
        ends = np.argwhere(d == -1)
        runs = ends[:, 1] - starts[:, 1]
        widths.append(runs * v * cosang)
    return np.concatenate(widths) if widths else np.zeros(0)
