"""Parallel-beam ray-driven forward projector (exact intersection lengths).

This is the twin's *forward model*. It deliberately shares no machinery
with any reconstruction code (no Fourier-slice, no ``skimage.transform.radon``):
every detector value is a sum of exact lengths of straight rays inside the
voxels they cross (Siddon's quantity), so a reconstruction tested against it
is not tested against its own assumptions (the "inverse crime").

Geometry (the scikit-image ``radon`` convention, pinned by a test)
------------------------------------------------------------------
- A volume is indexed ``(z, y, x)``; z is the rotation axis and detector row
  ``r`` sees slice ``z = r``. Every slice is the same 2-D problem, so one
  sparse system matrix serves all slices at once.
- Voxel ``(iy, ix)`` is the unit square centred at ``(x, y) = (ix - nx // 2,
  iy - ny // 2)``: the rotation axis passes through the centre of voxel
  ``(ny // 2, nx // 2)``, as in ``skimage.transform.radon``.
- At angle ``theta`` (radians) a ray is the line ``x cos(theta) - y sin(theta)
  = s`` and detector column ``c`` (whose centre is at coordinate ``c``) sees
  ``s = c - centre_px``. ``centre_px`` is the sub-pixel detector column of the
  rotation axis; the default ``n_det / 2`` is the TomoPy / scikit-image value
  for even widths. Angles may be in any order (descending = counter-rotation)
  and span any range.
- Each detector pixel is sampled by ``n_subrays`` parallel rays spread evenly
  over its width and averaged: a pixel integrates over its area, and a model
  sampled differently from the reconstruction's avoids the inverse crime.

Values are line integrals in *voxel* units (multiply by the voxel size).

Implementation
--------------
Rays are traced strip by strip: a ray that is steeper than 45 degrees in the
(x, y) plane crosses every row of voxels exactly once and, inside one row,
touches at most ``J`` (2 to 4) neighbouring voxels; the length inside each is
the overlap of the ray's x-extent in that row with the voxel, a closed form.
This yields Siddon's exact lengths fully vectorised per angle, and rows of the
CSR matrix come out ordered (ray by ray), so no sort is needed. Shallow rays
are traced column by column on the transposed volume, which keeps column
indices sorted and memory access contiguous along each ray.

The matrix is applied with ``torch.sparse`` CSR @ dense (multi-threaded, it
measured 2 to 3 times faster than ``scipy.sparse`` on 2 cores) in chunks of
a few (slice, channel) columns small enough that the chunk of the volume
stays in cache while every ray of every angle reads it.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "ParallelProjector",
    "get_projector",
    "forward_project",
    "system_matrix",
    "clear_projector_cache",
]

#: Dense columns per sparse-matmul call are chosen so that one chunk of the
#: volume (voxels x columns, float32) stays within this many bytes: every
#: angle sweeps the whole chunk in random order, and once it spills out of
#: cache the product slows down 2 to 4 times (measured: 16 columns are best
#: at 256^2 voxels, 8 at 512^2).
_CHUNK_BYTES = 8 * 1024**2
_CHUNK_COLUMNS_MAX = 16

#: Cached system matrices are kept while their total size stays below this.
_CACHE_MAX_ENTRIES = 2
_CACHE_MAX_BYTES = 6 * 1024**3


def _validate_geometry(ny: int, nx: int, angles_rad, n_det: int, centre_px: float, n_subrays: int) -> np.ndarray:
    if int(ny) < 1 or int(nx) < 1:
        raise ValueError(f"slice shape must be positive, got (ny, nx) = ({ny}, {nx})")
    angles = np.asarray(angles_rad, dtype=np.float64).ravel()
    if angles.size == 0:
        raise ValueError("angles_rad is empty: a scan needs at least one projection angle")
    if not np.all(np.isfinite(angles)):
        raise ValueError("angles_rad contains NaN or infinite values")
    if int(n_det) < 1:
        raise ValueError(f"n_det (detector columns) must be >= 1, got {n_det}")
    if not np.isfinite(centre_px):
        raise ValueError(f"centre_px must be finite, got {centre_px}")
    if int(n_subrays) < 1:
        raise ValueError(f"n_subrays must be >= 1, got {n_subrays}")
    return angles


def _angle_block(alpha: float, beta: float, n_det: int, centre_px: float, n_strips: int,
                 strip_centre: int, n_along: int, along_centre: int, n_subrays: int):
    """Exact ray-voxel lengths of all rays of one angle, strip by strip.

    The ray of detector coordinate ``s`` crosses strip ``t`` (a row or column
    of voxels, centre coordinate ``t - strip_centre``) at along-strip position
    ``pos = s * alpha + (t - strip_centre) * beta``, with ``|beta| <= 1`` the
    slope. Inside the strip the ray covers ``[pos - |beta|/2, pos + |beta|/2]``
    along the strip and has total length ``|alpha|``; the part inside voxel
    ``u`` is that length times the overlap fraction.

    Returns
    -------
    counts : ndarray (n_det,) int64
        Non-zero entries per detector column.
    cols : ndarray int32
        Flat voxel index ``strip * n_along + u`` of each entry, ray by ray,
        increasing within a ray.
    vals : ndarray float32
        Mean intersection length over the sub-rays, voxel units.
    """
    width = max(abs(beta), 1e-9)  # a ray parallel to the strip: a vanishing interval is exact in the limit
    half = 0.5 * width
    sub_offsets = (np.arange(n_subrays) + 0.5) / n_subrays - 0.5
    sub_step = alpha / n_subrays  # along-strip shift between neighbouring sub-rays
    spread = abs(sub_step) * (n_subrays - 1)
    n_slots = int(np.floor(spread + width)) + 2  # voxels a pixel's rays can touch in one strip

    s0 = np.arange(n_det, dtype=np.float64) - centre_px + sub_offsets[0]
    t = np.arange(n_strips, dtype=np.float64) - strip_centre
    # along-strip position (in voxel-index units) of sub-ray 0 of every (column, strip)
    pos0 = (s0 * alpha)[:, None] + (t * beta)[None, :] + along_centre
    first = np.floor(pos0 + min(0.0, sub_step * (n_subrays - 1)) - half + 0.5)
    rel = pos0 - first  # position relative to the first touched voxel's centre

    # sub-ray k relative to slot voxel j, accumulated over k (contiguous adds)
    slot = np.arange(n_slots, dtype=np.float64)
    vals = np.zeros((n_det, n_strips, n_slots))
    for k in range(n_subrays):
        r = np.abs((rel + k * sub_step)[:, :, None] - slot)
        # overlap of [r - half, r + half] with [-1/2, 1/2]: a trapezoid in r
        np.subtract(half + 0.5, r, out=r)
        np.clip(r, 0.0, min(2.0 * half, 1.0), out=r)
        vals += r
    vals *= abs(alpha) / (width * n_subrays)  # (n_det, n_strips, n_slots)

    u = first.astype(np.int64)[:, :, None] + np.arange(n_slots)
    inside = (u >= 0) & (u < n_along) & (vals > 0.0)
    cols = (np.arange(n_strips, dtype=np.int64) * n_along)[:, None] + u
    counts = np.count_nonzero(inside.reshape(n_det, -1), axis=1)
    return counts, cols[inside].astype(np.int32), vals[inside].astype(np.float32)


def _build_csr(angles: np.ndarray, steep: bool, ny: int, nx: int, n_det: int, centre_px: float,
               n_subrays: int) -> sp.csr_matrix:
    """CSR matrix (len(angles) * n_det, ny * nx) for angles of one orientation.

    ``steep`` angles (``|cos| >= |sin|``) are traced row by row on the volume
    in (y, x) order; the others column by column on the volume in (x, y) order.
    """
    cy, cx = ny // 2, nx // 2
    counts, cols, vals = [], [], []
    for th in angles:
        c, s = np.cos(th), np.sin(th)
        if steep:  # x = (s_det + y sin) / cos
            blk = _angle_block(1.0 / c, s / c, n_det, centre_px, ny, cy, nx, cx, n_subrays)
        else:  # y = (x cos - s_det) / sin
            blk = _angle_block(-1.0 / s, c / s, n_det, centre_px, nx, cx, ny, cy, n_subrays)
        counts.append(blk[0])
        cols.append(blk[1])
        vals.append(blk[2])
    n_rows = len(angles) * n_det
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    if n_rows:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    indices = np.concatenate(cols) if cols else np.zeros(0, np.int32)
    data = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, ny * nx))


def _chunk_columns(n_voxels: int) -> int:
    cols = _CHUNK_BYTES // (4 * max(n_voxels, 1))
    return int(max(1, min(_CHUNK_COLUMNS_MAX, 2 ** int(np.log2(max(cols, 1))))))


def _to_torch(a: sp.csr_matrix) -> torch.Tensor:
    itype = np.result_type(a.indptr.dtype, a.indices.dtype)  # torch wants one index dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(itype, copy=False)), torch.from_numpy(a.indices.astype(itype, copy=False)),
            torch.from_numpy(a.data), size=a.shape, dtype=torch.float32,
        )


@dataclass
class ParallelProjector:
    """A built parallel-beam system matrix for one slice geometry.

    Create with :func:`get_projector` (cached). ``project`` applies it to a
    whole volume; ``as_scipy`` returns the plain matrix for inspection.

    Attributes
    ----------
    ny, nx : int
        Slice shape (voxels).
    angles_rad : ndarray (n_angles,)
        Projection angles, radians, in acquisition order.
    n_det : int
        Detector columns.
    centre_px : float
        Detector column of the rotation axis.
    n_subrays : int
        Rays averaged per detector pixel.
    """

    ny: int
    nx: int
    angles_rad: np.ndarray
    n_det: int
    centre_px: float
    n_subrays: int
    _steep_idx: np.ndarray
    _flat_idx: np.ndarray
    _a_steep: sp.csr_matrix
    _a_flat: sp.csr_matrix

    def __post_init__(self):
        self._t_steep = _to_torch(self._a_steep)
        self._t_flat = _to_torch(self._a_flat)

    @property
    def nbytes(self) -> int:
        """Memory held by the matrices (bytes, both copies counted once)."""
        return sum(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes for a in (self._a_steep, self._a_flat))

    @property
    def nnz(self) -> int:
        """Number of stored ray-voxel intersections."""
        return int(self._a_steep.nnz + self._a_flat.nnz)

    def as_scipy(self) -> sp.csr_matrix:
        """The system matrix as scipy CSR.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n_angles * n_det, ny * nx)
            Row ``a * n_det + c`` holds the lengths (voxel units) of the ray of
            angle index ``a``, column ``c`` in voxels ``iy * nx + ix``.
        """
        n_ang = len(self.angles_rad)
        # shallow-angle columns are in (x, y) voxel order: permute back to (y, x)
        perm = np.arange(self.ny * self.nx).reshape(self.ny, self.nx).T.ravel()
        flat = self._a_flat.tocoo()
        flat = sp.coo_matrix((flat.data, (flat.row, perm[flat.col])), shape=flat.shape)
        steep = self._a_steep.tocoo()
        rows_of = lambda idx, r: (idx[r // self.n_det] * self.n_det + r % self.n_det)  # noqa: E731
        full = sp.coo_matrix(
            (np.concatenate([steep.data, flat.data]),
             (np.concatenate([rows_of(self._steep_idx, steep.row), rows_of(self._flat_idx, flat.row)]),
              np.concatenate([steep.col, flat.col]))),
            shape=(n_ang * self.n_det, self.ny * self.nx),
        )
        return full.tocsr()

    def project(self, volume: np.ndarray) -> np.ndarray:
        """Line integrals of a volume (or a stack of channel volumes).

        Parameters
        ----------
        volume : ndarray, shape (nz, ny, nx) or (n_channels, nz, ny, nx)
            Values per voxel (for example attenuation per voxel length).

        Returns
        -------
        ndarray float32, shape (n_angles, nz, n_det) or (n_channels, n_angles, nz, n_det)
            Sum over each ray of value x intersection length (voxel units).
        """
        vol = np.asarray(volume)
        single = vol.ndim == 3
        if single:
            vol = vol[None]
        if vol.ndim != 4 or vol.shape[2:] != (self.ny, self.nx):
            raise ValueError(
                f"volume must have shape (nz, {self.ny}, {self.nx}) or (channels, nz, {self.ny}, {self.nx}), "
                f"got {np.shape(volume)}"
            )

        def dense(z0, z1, transposed):
            # voxels as rows, (slice, channel) as columns, voxel order as traced
            order = (3, 2, 1, 0) if transposed else (2, 3, 1, 0)
            return np.ascontiguousarray(vol[:, z0:z1].transpose(order), dtype=np.float32)

        out = self._run(vol.shape[1], vol.shape[0], dense)
        return out[0] if single else out

    def project_lut(self, labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """Line integrals of ``lut[labels]`` without building that volume.

        Parameters
        ----------
        labels : ndarray int, shape (nz, ny, nx)
            Codes indexing the first axis of ``lut``.
        lut : ndarray, shape (n_codes, n_channels)
            Value per code and channel (per voxel length).

        Returns
        -------
        ndarray float32, shape (n_channels, n_angles, nz, n_det)
        """
        lab = np.asarray(labels)
        lut = np.asarray(lut, dtype=np.float32)
        if lab.ndim != 3 or lab.shape[1:] != (self.ny, self.nx):
            raise ValueError(f"labels must have shape (nz, {self.ny}, {self.nx}), got {lab.shape}")
        if lut.ndim != 2:
            raise ValueError(f"lut must be 2-D (n_codes, n_channels), got shape {lut.shape}")

        def dense(z0, z1, transposed):
            order = (2, 1, 0) if transposed else (1, 2, 0)
            return lut[lab[z0:z1].transpose(order)]  # fancy indexing returns a fresh C-ordered array

        return self._run(lab.shape[0], lut.shape[1], dense)

    def _run(self, nz: int, n_ch: int, dense) -> np.ndarray:
        """Apply both matrices chunk by chunk; ``dense(z0, z1, transposed)`` gives
        the (voxel-row, voxel-col, slice, channel) block of slices ``z0:z1``."""
        n_ang = len(self.angles_rad)
        out = np.empty((n_ch, n_ang, nz, self.n_det), dtype=np.float32)
        zc = max(1, _chunk_columns(self.ny * self.nx) // n_ch)  # slices per chunk, all channels together
        for z0 in range(0, nz, zc):
            z1 = min(nz, z0 + zc)
            for idx, mat, transposed in ((self._steep_idx, self._t_steep, False),
                                         (self._flat_idx, self._t_flat, True)):
                if idx.size == 0:
                    continue
                block = dense(z0, z1, transposed).reshape(self.ny * self.nx, (z1 - z0) * n_ch)
                res = (mat @ torch.from_numpy(block)).numpy()
                res = res.reshape(idx.size, self.n_det, z1 - z0, n_ch)
                out[:, idx, z0:z1, :] = res.transpose(3, 0, 2, 1)
        return out


# ---------------------------------------------------------------------------
# Cache: a twin scans the same geometry over and over
# ---------------------------------------------------------------------------
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(ny, nx, angles, n_det, centre_px, n_subrays):
    digest = hashlib.blake2b(np.ascontiguousarray(angles).tobytes(), digest_size=16).hexdigest()
    return (int(ny), int(nx), digest, angles.size, int(n_det), float(centre_px), int(n_subrays))


def clear_projector_cache() -> None:
    """Forget all cached system matrices (frees their memory)."""
    with _cache_lock:
        _cache.clear()


def get_projector(ny: int, nx: int, angles_rad, n_det: int | None = None, centre_px: float | None = None,
                  n_subrays: int = 2) -> ParallelProjector:
    """Build (or fetch from a small LRU cache) the projector of a geometry.

    Parameters
    ----------
    ny, nx : int
        Slice shape in voxels.
    angles_rad : array_like (n_angles,)
        Projection angles in radians, any order and range.
    n_det : int, optional
        Detector columns; default ``nx``.
    centre_px : float, optional
        Detector column (sub-pixel) of the rotation axis; default ``n_det / 2``.
    n_subrays : int
        Rays averaged per detector pixel (1 = a single ray through the pixel
        centre).

    Returns
    -------
    ParallelProjector

    Raises
    ------
    ValueError
        On empty or non-finite angles, non-positive sizes, non-finite centre.
    """
    n_det = int(nx if n_det is None else n_det)
    centre_px = float(n_det / 2 if centre_px is None else centre_px)
    angles = _validate_geometry(ny, nx, angles_rad, n_det, centre_px, n_subrays)
    key = _cache_key(ny, nx, angles, n_det, centre_px, n_subrays)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    steep = np.abs(np.cos(angles)) >= np.abs(np.sin(angles))
    steep_idx, flat_idx = np.flatnonzero(steep), np.flatnonzero(~steep)
    proj = ParallelProjector(
        int(ny), int(nx), angles.copy(), n_det, centre_px, int(n_subrays), steep_idx, flat_idx,
        _build_csr(angles[steep_idx], True, ny, nx, n_det, centre_px, n_subrays),
        _build_csr(angles[flat_idx], False, ny, nx, n_det, centre_px, n_subrays),
    )
    with _cache_lock:
        _cache[key] = proj
        total = sum(p.nbytes for p in _cache.values())
        while len(_cache) > 1 and (len(_cache) > _CACHE_MAX_ENTRIES or total > _CACHE_MAX_BYTES):
            _, old = _cache.popitem(last=False)
            total -= old.nbytes
    return proj


def system_matrix(ny: int, nx: int, angles_rad, n_det: int | None = None, centre_px: float | None = None,
                  n_subrays: int = 2) -> sp.csr_matrix:
    """The projector's system matrix as scipy CSR (see :meth:`ParallelProjector.as_scipy`)."""
    return get_projector(ny, nx, angles_rad, n_det, centre_px, n_subrays).as_scipy()


def forward_project(volume: np.ndarray, angles_rad, n_det: int | None = None, centre_px: float | None = None,
                    n_subrays: int = 2) -> np.ndarray:
    """Parallel-beam projections of a volume, exact ray-voxel lengths.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx) or (n_channels, nz, ny, nx)
        Values per voxel; z is the rotation axis.
    angles_rad : array_like (n_angles,)
        Projection angles, radians (scikit-image ``radon`` orientation).
    n_det : int, optional
        Detector columns; default ``nx``.
    centre_px : float, optional
        Detector column of the rotation axis; default ``n_det / 2``.
    n_subrays : int
        Rays averaged over each detector pixel's width.

    Returns
    -------
    ndarray float32, shape (n_angles, nz, n_det) (or with a leading channel axis)
        Line integrals in voxel units (multiply by the voxel size for
        physical lengths).
    """
    vol = np.asarray(volume)
    if vol.ndim not in (3, 4):
        raise ValueError(f"volume must be 3-D (nz, ny, nx) or 4-D (channels, nz, ny, nx), got shape {vol.shape}")
    if not np.issubdtype(vol.dtype, np.number) or np.issubdtype(vol.dtype, np.complexfloating):
        raise ValueError(f"volume must be real numbers, got dtype {vol.dtype}")
    if np.issubdtype(vol.dtype, np.floating) and not np.all(np.isfinite(vol)):
        raise ValueError("volume contains NaN or infinite values")
    ny, nx = vol.shape[-2:]
    return get_projector(ny, nx, angles_rad, n_det, centre_px, n_subrays).project(vol)
