"""Polar-to-Cartesian gridding for the Fourier backend: FINUFFT spreading, our own pruned FFT.

A type-1 non-uniform FFT is three steps: spread the non-uniform samples onto
an oversampled grid with a compact kernel, FFT the grid, divide the wanted
modes by the kernel's Fourier transform ("deconvolve"). FINUFFT does all
three; here FINUFFT only spreads (``spreadinterponly=1``) and the rest is
done with ``scipy.fft`` because

* FINUFFT's FFTW plans are made with ``FFTW_ESTIMATE``, which at 1280^2
  (1024 px slices) ran 30-40 % slower than pocketfft; ``FFTW_MEASURE``
  matches pocketfft but costs 3 s (1024 px) to 12 s (2448 px) of planning
  per process and size, paid by every CLI run;
* only ``n`` of the ``nf`` rows are needed after the first 1-D pass, so the
  second pass transforms ``n`` rows instead of ``nf`` (20 % fewer at
  ``nf = 1.25 n``);
* the deconvolution fuses with writing the real and imaginary parts (two
  slices) to the output.

The kernel's Fourier transform is measured from FINUFFT's own spreader, so
it is right whatever kernel the installed FINUFFT chooses: single points are
spread at 16 sub-cell offsets and the transform of the spread values is
averaged over the offsets, which cancels the aliased copies of the kernel
spectrum that a single offset would leave (Poisson summation).

Known cost: with FINUFFT 2.5.1 a spread into a 3072^2 grid (2448 px slices)
takes about 40 ms more than the points need, even for a single point; with
glibc's allocator told to keep large blocks (``mallopt(M_MMAP_THRESHOLD)``,
one arena) it fell to about 10 ms, so memory of the grid's size is allocated
and page-faulted on every call. That allocator setting is process-wide and
is not made here; below 32 MB grids (slices up to about 1600 px) glibc
reuses the blocks by itself.

Conventions: a point at ``x`` (radians, ``[-pi, pi)``) lands at grid index
``nf // 2 + x nf / (2 pi)``; modes ``k = -(n // 2) .. n - n // 2 - 1`` come out
at rows/columns ``k + n // 2`` (FINUFFT's default mode order).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import scipy.fft

try:  # FINUFFT is a compiled wheel; the torch backend covers platforms without it
    import finufft as _finufft
except ImportError:  # pragma: no cover - exercised only without finufft
    _finufft = None

__all__ = ["Gridder", "batch_for", "get_gridder", "grid_size", "kernel_transform"]

#: sub-cell offsets averaged when measuring the kernel's transform
_N_OFFSETS = 16
#: neighbouring angles handed to the spreader together (see :class:`Gridder`)
_WEDGE = 20


def grid_size(n: int, upsampfac: float) -> int:
    """Even oversampled grid size >= ``upsampfac * n`` with small prime factors (fast pocketfft)."""
    size = scipy.fft.next_fast_len(int(np.ceil(upsampfac * n)))
    while size % 2:
        size = scipy.fft.next_fast_len(size + 1)
    return size


def _spread_plan(shape, n_trans: int, eps: float, upsampfac: float, nthreads: int):
    return _finufft.Plan(1, shape, n_trans=n_trans, eps=eps, isign=1, dtype="complex64", nthreads=nthreads,
                         upsampfac=upsampfac, spreadinterponly=1)


@lru_cache(maxsize=16)
def kernel_transform(n: int, nf: int, eps: float, upsampfac: float) -> np.ndarray:
    """Fourier transform of FINUFFT's spreading kernel at the modes ``k = -(n//2) .. n - n//2 - 1``.

    Parameters
    ----------
    n : int
        Modes wanted per axis.
    nf : int
        Oversampled grid size per axis (cells).
    eps, upsampfac : float
        FINUFFT tolerance and upsampling factor (they choose the kernel).

    Returns
    -------
    ndarray float64 (n,)
        ``phi_hat(k / nf)`` in cell units: ``sum_m phi(m - x) exp(2 pi i k (m - x) / nf)``
        averaged over sub-cell positions ``x``.
    """
    size = 64  # in cells; the kernel (width <= 16 cells) fits with room to spare
    offsets = np.arange(_N_OFFSETS) / _N_OFFSETS  # cells
    plan = _spread_plan((size, size), _N_OFFSETS, eps, upsampfac, 1)
    x = (2 * np.pi * offsets / size).astype(np.float32)  # along the first axis
    y = np.zeros(_N_OFFSETS, dtype=np.float32)
    plan.setpts(x, y)
    grids = plan.execute(np.eye(_N_OFFSETS, dtype=np.complex64)).real.astype(np.float64)
    # kernel = phi(x) phi(y); the point at offset 0 sums to phi_hat(0)^2 (aliasing at 0 is ~eps^2)
    phi0 = np.sqrt(grids[0].sum())
    profiles = grids.sum(axis=2) / phi0  # (offset, cell along the first axis): phi(m - centre - offset)
    m = np.arange(size) - size // 2
    k = np.arange(n) - n // 2
    arg = 2 * np.pi * k[:, None, None] / nf * (m[None, None, :] - offsets[None, :, None])
    return (np.cos(arg) * profiles[None]).sum(axis=2).mean(axis=1)


class Gridder:
    """Weighted polar spectra of one geometry -> ``n x n`` Cartesian modes; one worker at a time.

    Sample ``j`` of angle ``a`` (``w = 2 pi fftfreq(size)[j]`` radians per
    pixel) sits at ``(row, col) = (-w sin(theta_a), w cos(theta_a))``: the
    scikit-image / TomoPy orientation.

    Parameters
    ----------
    n : int
        Output modes per axis.
    theta : ndarray (n_angles,)
        Angles, radians.
    size : int
        Radial samples per angle (FFT order).
    eps : float
        Spreading tolerance.
    upsampfac : float
        Grid oversampling (``nf >= upsampfac * n``).
    nthreads : int
        Threads for the spreading and the FFTs of one transform.
    batch : int
        Transforms per FINUFFT call (``n_trans``); see :func:`batch_for`.

    Notes
    -----
    Samples are handed to the spreader wedge by wedge (``_WEDGE`` neighbouring
    angles, all radii of the wedge before the next): consecutive samples then
    touch neighbouring grid cells. At 1024 px / 900 angles spreading took
    29 ms per transform this way against 41 ms in angle-by-angle order (one
    core), for a transposed copy that is fused with the weighting anyway.
    Sorting by 8 x 8 grid tiles spread in 25 ms but the gather it needs per
    transform cost 6 ms.
    """

    def __init__(self, n: int, theta: np.ndarray, size: int, eps: float, upsampfac: float, nthreads: int,
                 batch: int = 1):
        if _finufft is None:
            raise RuntimeError("the 'fourier' backend needs finufft (pip install finufft)")
        self.n, self.size, self.nthreads, self.batch = int(n), int(size), int(nthreads), int(batch)
        theta = np.asarray(theta, dtype=np.float64)
        self.n_angles = na = theta.size
        self.nf = nf = grid_size(n, upsampfac)
        up = nf / n  # the kernel is chosen for the oversampling actually used
        self._nb = na // _WEDGE  # full wedges; the remaining angles follow in angle order
        w = 2 * np.pi * np.fft.fftfreq(size)
        rows = self._order(-np.sin(theta)[:, None] * w[None, :])
        cols = self._order(np.cos(theta)[:, None] * w[None, :])
        self._plan = _spread_plan((nf, nf), self.batch, eps, up, self.nthreads)
        self._points = (rows.astype(np.float32), cols.astype(np.float32))
        self._plan.setpts(*self._points)  # FINUFFT keeps pointers: the arrays live as long as the plan
        self._strengths = np.empty((self.batch, na * size), dtype=np.complex64)
        # reused: FINUFFT zeroes it before spreading
        self._grid = np.empty((self.batch, nf, nf), dtype=np.complex64)
        self._tmp = None  # scratch of the accumulating deconvolution, made on first use
        phi = kernel_transform(self.n, nf, eps, up)
        sign = np.where((np.arange(self.n) - self.n // 2) % 2, -1.0, 1.0)  # grid origin at nf // 2
        d = sign / phi
        self._deconv = (d[:, None] * d[None, :]).astype(np.float32)
        self._h = self.n // 2  # modes -h .. -1 sit in the last h FFT bins, 0 .. n - h - 1 in the first

    @property
    def nbytes(self) -> int:
        """Memory held by this gridder's arrays, bytes (FINUFFT's sorted indices not counted)."""
        arrays = (*self._points, self._strengths, self._grid, self._deconv, self._tmp)
        return sum(a.nbytes for a in arrays if a is not None)

    def _order(self, polar: np.ndarray, weight: np.ndarray | None = None, out: np.ndarray | None = None):
        """(angle, radius) array -> flat wedge order, optionally times ``weight`` (radius,), into ``out``."""
        na, size, nb = self.n_angles, self.size, self._nb
        if out is None:
            out = np.empty(na * size, dtype=polar.dtype)
        cut = nb * _WEDGE * size
        head = out[:cut].reshape(nb, size, _WEDGE)
        src = polar[: nb * _WEDGE].reshape(nb, _WEDGE, size).transpose(0, 2, 1)
        tail = out[cut:].reshape(na - nb * _WEDGE, size)
        if weight is None:
            head[...] = src
            tail[...] = polar[nb * _WEDGE:]
        else:
            np.multiply(src, weight[None, :, None], out=head)
            np.multiply(polar[nb * _WEDGE:], weight[None, :], out=tail)
        return out

    def modes(self, spectra: np.ndarray, weights, out_real, out_imag, accumulate: bool = False) -> None:
        """``sum_(a,j) weight_j spectra_aj exp(i (k1 row_aj + k2 col_aj))`` for every mode ``(k1, k2)``.

        Parameters
        ----------
        spectra : ndarray complex64 (m, n_angles, size), m <= batch
            Polar samples of ``m`` transforms, FFT order along the radius.
        weights : sequence of m ndarray complex64 (size,)
            Per-radius factor of each transform (quadrature weight, filter, centre phase).
        out_real, out_imag : sequences of m ndarray float32 (n, n) or None
            Where the real and imaginary parts of each transform go (any may be None).
        accumulate : bool
            Add to the outputs instead of overwriting them.
        """
        nf, n, h = self.nf, self.n, self._h
        m = len(spectra)
        for j in range(self.batch):
            if j < m:
                self._order(spectra[j], weights[j], out=self._strengths[j])
            else:
                self._strengths[j] = 0  # an unused slot of the last, partial batch
        grids = self._plan.execute(self._strengths, out=self._grid)
        w = self.nthreads
        for j in range(m):
            # unnormalised inverse DFT (sign +1), in place: first axis on every column, then the second
            # axis on the n wanted rows only, which sit in two contiguous blocks (modes < 0 at the end)
            grid = scipy.fft.ifft(grids[j], axis=0, norm="forward", overwrite_x=True, workers=w)
            for rows, dst_rows in ((grid[nf - h:], slice(0, h)), (grid[: n - h], slice(h, n))):
                rows = scipy.fft.ifft(rows, axis=1, norm="forward", overwrite_x=True, workers=w)
                # the wanted columns, also in two blocks, deconvolved straight into the output
                for res, dst in ((rows.real, out_real[j]), (rows.imag, out_imag[j])):
                    if dst is not None:
                        self._deconvolve(res, dst, dst_rows, accumulate)

    def _deconvolve(self, res: np.ndarray, dst: np.ndarray, dst_rows: slice, accumulate: bool) -> None:
        """Columns of one block of rows, times the deconvolution factors, into (or onto) ``dst``."""
        nf, n, h = self.nf, self.n, self._h
        d = self._deconv[dst_rows]
        for src_cols, dst_cols in ((slice(nf - h, nf), slice(0, h)), (slice(0, n - h), slice(h, n))):
            target = dst[dst_rows, dst_cols]
            if not accumulate:
                np.multiply(res[:, src_cols], d[:, dst_cols], out=target)
                continue
            if self._tmp is None:
                self._tmp = np.empty((n - h, n - h), dtype=np.float32)
            tmp = self._tmp[: target.shape[0], : target.shape[1]]
            np.multiply(res[:, src_cols], d[:, dst_cols], out=tmp)
            np.add(target, tmp, out=target)


class _Pool:
    """Gridders of one geometry, one per concurrent worker (FINUFFT plans are not re-entrant)."""

    def __init__(self, factory):
        self._factory = factory
        self._free: list[Gridder] = []
        self._lock = threading.Lock()

    def acquire(self) -> Gridder:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._factory()  # setpts sorts the points: outside the lock, workers build in parallel

    def release(self, g: Gridder) -> None:
        with self._lock:
            self._free.append(g)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(g.nbytes for g in self._free)


_POOLS: OrderedDict = OrderedDict()
_POOLS_MAX = 4
#: Idle gridders kept for reuse, bytes (a 2448 px gridder with 1500 angles holds about 170 MB of
#: points, strengths, grid and deconvolution factors; streaming makes a new geometry per batch).
_CACHE_BYTES = 512 * 2**20
_pools_lock = threading.Lock()


def batch_for(n: int, upsampfac: float) -> int:
    """Transforms per FINUFFT call for ``n x n`` slices.

    Every call pays for memory of the grid's size (see the module notes);
    above glibc's 32 MB mmap threshold that is page faults each time, so
    larger grids go 4 to a call: 33 ms of fixed cost per 3072^2 transform
    (2448 px slices) fell to 9 ms, and a 100-angle spread from 76 to 49 ms.
    Below it a batch changed nothing (28 ms per 1024 px / 900 angle
    transform either way), so small grids go one by one.
    """
    nf = grid_size(n, upsampfac)
    return 4 if nf * nf * 8 > 32 * 2**20 else 1


def get_gridder(n: int, theta: np.ndarray, size: int, eps: float, upsampfac: float, nthreads: int,
                batch: int = 1) -> _Pool:
    """The (cached) pool of :class:`Gridder` for ``size`` radial samples per angle at ``theta``."""
    theta = np.asarray(theta, dtype=np.float64)
    key = (int(n), theta.tobytes(), int(size), float(eps), float(upsampfac), int(nthreads), int(batch))
    with _pools_lock:
        pool = _POOLS.get(key)
        if pool is not None:
            _POOLS.move_to_end(key)
            return pool
        pool = _POOLS[key] = _Pool(lambda: Gridder(n, theta, size, eps, upsampfac, nthreads, batch))
        # least recently used first; the pool just made stays
        while len(_POOLS) > 1 and (len(_POOLS) > _POOLS_MAX
                                   or sum(p.nbytes for p in _POOLS.values()) > _CACHE_BYTES):
            _POOLS.popitem(last=False)
    return pool
