"""Per-interface metrics: Lewis's column algorithm on a label volume.

For each interface the electrode region (between the volume end and the SE
face) is walked column by column *from the SE face outwards*:

1. interphase voxels sit on the SE face;
2. an interfacial void is the vacuum in the run of vacuum/interphase voxels
   that starts at the SE face (a vacuum pocket with Li between it and the
   face is a bulk pore of the Li, not an interfacial void; Lewis-LSPS rejects
   those the same way);
3. the Li band is the ``band_um`` of the column just beyond the interphase;
   the column is in contact when it has Li and no vacuum in that band.

With the twin's layering (steel | Li | void | interphase | SE) this equals
the twin's bookkeeping exactly: a void always touches the interphase, so a
column with any interfacial void has vacuum in its band.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..registry import Material
from .layout import CellLayout

__all__ = ["FULL_CONNECTIVITY", "electrode_region", "interface_metrics"]

#: Objects (voids, cracks, Li paths) connect through faces, edges and corners.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def electrode_region(labels: np.ndarray, layout: CellLayout, side: str) -> np.ndarray:
    """Labels of one electrode region, re-ordered so index 0 touches the SE face.

    Returns a view (top side flipped along z) of shape (depth, y, x).
    """
    if side == "top":
        return labels[: layout.se_top][::-1]
    if side == "bottom":
        return labels[layout.se_bottom :]
    raise ValueError(f"side must be 'top' or 'bottom', got {side!r}")


def _leading_run(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True starting at index 0, per column (int32 (y, x))."""
    if mask.shape[0] == 0:
        return np.zeros(mask.shape[1:], dtype=np.int32)
    # index of the first False (argmax of the inverse stops at it); a column without one is all True.
    # One boolean pass instead of a cumulative product over the whole depth (3x faster at 512^3).
    first = np.argmax(~mask, axis=0)
    whole = np.take_along_axis(mask, first[None], axis=0)[0]
    return np.where(whole, mask.shape[0], first).astype(np.int32)


def interface_metrics(labels: np.ndarray, layout: CellLayout, side: str, band_um: float = 8.5) -> dict:
    """Contact, voids, Li electrode and interphase at one interface.

    Parameters
    ----------
    labels : ndarray uint8 (z, y, x)
        Material codes.
    layout : CellLayout
        From :func:`sscell_live.metrics.layout.find_layout`.
    side : {"top", "bottom"}
    band_um : float
        Height of the Li band next to the interface checked for vacuum
        (Lewis-LSPS: 5 pixels of 1.7 um). Rounded to whole voxels, at least 1.

    Returns
    -------
    dict
        Registry names for ``side``: ``contact_fraction_*`` (1), ``contact_map_*``
        (bool (y, x)), ``void_volume_*_um3``, ``void_count_*``, ``li_volume_*_um3``,
        ``li_thickness_*_um`` (mean over pellet columns), ``li_thickness_map_*_um``
        (float32 (y, x), 0 outside the pellet), ``interphase_volume_*_um3``,
        ``interphase_thickness_*_um``, ``interface_position_*_um`` (SE face, um
        from the volume top), ``collector_position_*_um`` (steel face, mean over
        pellet columns with steel; None when no steel is in view); plus
        ``void_map_*_um`` (void height per column) and ``void_sizes_*_um3``
        (volume of each void, descending).
    """
    v = layout.voxel_size_um
    v3 = v**3
    pellet = layout.pellet
    n_cols = layout.n_columns
    region = electrode_region(labels, layout, side)
    depth = region.shape[0]
    band = max(1, round(band_um / v))

    inter = region == Material.INTERPHASE
    vac = (region == Material.VACUUM) & pellet[None]
    li = (region == Material.LI) & pellet[None]
    steel = region == Material.STEEL

    inter_run = _leading_run(inter)
    zone_len = _leading_run(inter | vac)  # vacuum/interphase stack on the SE face
    idx = np.arange(depth, dtype=np.int32)[:, None, None]
    void = vac & (idx < zone_len[None])
    in_band = (idx >= inter_run[None]) & (idx < inter_run[None] + band)
    band_vacuum = (vac & in_band).any(axis=0)

    li_cols = li.sum(axis=0)
    int_cols = (inter & pellet[None]).sum(axis=0)
    void_cols = void.sum(axis=0)
    contact = pellet & (li_cols > 0) & ~band_vacuum

    void_lab, n_void = ndimage.label(void, structure=FULL_CONNECTIVITY)
    sizes = np.bincount(void_lab.ravel())[1:] * v3 if n_void else np.zeros(0)

    # collector face: the steel voxel nearest the SE face in each column
    has_steel = steel.any(axis=0) & pellet
    collector = None
    if has_steel.any():
        first_steel = np.argmax(steel, axis=0)  # voxels from the SE face to the steel
        if side == "top":
            face_um = (layout.se_top - first_steel) * v
        else:
            face_um = (layout.se_bottom + first_steel) * v
        collector = float(face_um[has_steel].mean())

    out = {
        f"contact_fraction_{side}": float(contact.sum() / n_cols),
        f"contact_map_{side}": contact,
        f"void_volume_{side}_um3": float(void_cols.sum() * v3),
        f"void_count_{side}": int(n_void),
        f"void_sizes_{side}_um3": np.sort(sizes)[::-1].astype(np.float64),
        f"void_map_{side}_um": (void_cols * v).astype(np.float32),
        f"li_volume_{side}_um3": float(li_cols.sum() * v3),
        f"li_thickness_{side}_um": float(li_cols[pellet].mean() * v),
        f"li_thickness_map_{side}_um": (li_cols * v).astype(np.float32),
        f"interphase_volume_{side}_um3": float(int_cols.sum() * v3),
        f"interphase_thickness_{side}_um": float(int_cols[pellet].mean() * v),
        f"interface_position_{side}_um": float((layout.se_top if side == "top" else layout.se_bottom) * v),
        f"collector_position_{side}_um": collector,
    }
    return out
