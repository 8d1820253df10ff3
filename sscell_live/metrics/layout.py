"""Where the cell's parts are in a label volume: pellet columns and the SE slab.

Every metric is measured relative to these, so they are found once, from the
labels alone (the metrics never see the twin's geometry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import Material

__all__ = ["CellLayout", "NoCellError", "find_layout"]

#: Materials that exist only inside the cell stack (the housing ring and the
#: air around it do not): a column holding any of them is a pellet column.
_STACK = (Material.LI, Material.SE, Material.INTERPHASE, Material.STEEL)


class NoCellError(ValueError):
    """The label volume holds no recognisable Li | SE | Li stack."""


@dataclass(frozen=True)
class CellLayout:
    """Pellet columns and SE slab of one label volume.

    Attributes
    ----------
    pellet : ndarray bool (y, x)
        Columns of the stack (inside the housing and the field of view).
    se_top, se_bottom : int
        First SE layer and one past the last (z indices). The top SE face is
        at ``se_top * voxel``, the bottom face at ``se_bottom * voxel``.
    voxel_size_um : float
    """

    pellet: np.ndarray
    se_top: int
    se_bottom: int
    voxel_size_um: float

    @property
    def n_columns(self) -> int:
        return int(self.pellet.sum())

    @property
    def se_voxels(self) -> int:
        return self.se_bottom - self.se_top


def find_layout(labels: np.ndarray, voxel_size_um: float, se_share: float = 0.5) -> CellLayout:
    """Find pellet columns and the SE slab of a label volume.

    The SE slab is the longest run of z layers in which at least ``se_share``
    of the pellet columns are SE: pores and cracks (below 50 % of a layer)
    do not split it, interphase and Li layers (no SE) bound it. The pellet is
    assumed flat and normal to z, as in the studies' cells.

    Parameters
    ----------
    labels : ndarray uint8 (z, y, x)
    voxel_size_um : float
    se_share : float
        Share of pellet columns that must be SE for a layer to belong to the slab.

    Raises
    ------
    NoCellError
        If no pellet column or no SE slab is found (all vacuum, no SE).
    """
    nz = labels.shape[0]
    pellet = np.zeros(labels.shape[1:], dtype=bool)
    se_count = np.zeros(nz, dtype=np.int64)
    for z in range(nz):  # plane by plane: no full-size temporaries at 1024^3
        plane = labels[z]
        pellet |= np.isin(plane, _STACK)
        se_count[z] = np.count_nonzero(plane == Material.SE)
    n_cols = int(pellet.sum())
    if n_cols == 0:
        raise NoCellError("no pellet column: the volume holds no Li, SE, interphase or steel")
    is_se = se_count >= se_share * n_cols
    if not is_se.any():
        raise NoCellError("no solid-electrolyte slab: no z layer is mostly SE")
    # longest run of SE layers
    padded = np.concatenate([[0], is_se.astype(np.int8), [0]])
    d = np.diff(padded)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    k = int(np.argmax(ends - starts))
    return CellLayout(pellet=pellet, se_top=int(starts[k]), se_bottom=int(ends[k]), voxel_size_um=float(voxel_size_um))
