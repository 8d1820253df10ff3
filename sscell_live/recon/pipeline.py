"""The reconstruction pipeline: blocks of detector rows through preprocessing and a backend.

A scan is processed in blocks of detector rows (slices are independent in
parallel-beam tomography), so peak memory is set by ``chunk_mb``, not by the
scan. Each block: read raw rows (with a margin when Paganin filtering needs
one) -> flat/dark normalisation -> Paganin (optional) -> -log -> binning ->
stripe removal (optional) -> backend -> rows of the output volume, written to
memory or to an HDF5 dataset. Blocks run locally or as tasks on a Dask
distributed cluster; the same function does the work in both cases.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from . import preprocess as pp
from .backends import get_backend, resolve
from .centre import find_center_vo
from .filters import FILTERS
from .phase import paganin_filter, paganin_margin_rows
from .rings import remove_dead_stripes, remove_stripe_sorting

__all__ = ["ArraySource", "Options", "blocks_for", "reconstruct", "reconstruct_source", "select_rows"]


@dataclass(frozen=True)
class Options:
    """Reconstruction settings (all optional keywords of :func:`reconstruct`).

    Attributes
    ----------
    algorithm : str
        ``auto`` (TomoPy if importable, else ``fourier``, else ``torch``),
        ``fourier``, ``torch`` or ``tomopy``.
    filter_name : str
        ``ramp``, ``shepp-logan``, ``cosine``, ``hamming``, ``hann``, ``parzen``.
    binning : int
        Detector binning (rows and columns); output voxels are ``binning``
        pixels wide and values are attenuation per *binned* pixel.
    ring_removal : str or None
        ``None``, ``"sorting"`` (Vo 2018 algorithm 3) or ``"sorting+dead"``.
    ring_size : int
        Median width of the sorting filter, columns (after binning).
    paganin : dict or None
        ``{"energy_keV", "distance_mm", "pixel_size_um", "delta_beta"}``;
        pixel size of the unbinned detector.
    n_out : int or None
        Output slice width; default the (binned) detector width.
    chunk_mb : float
        Target size of one block of float32 projections, MiB.
    min_transmission : float
        Transmission floor before -log.
    threads : int or None
        Threads per block for the preprocessing and the backend (None: all
        cores).
    """

    algorithm: str = "auto"
    filter_name: str = "ramp"
    binning: int = 1
    ring_removal: str | None = None
    ring_size: int = 21
    paganin: dict | None = None
    n_out: int | None = None
    chunk_mb: float = 256.0
    min_transmission: float = 1e-4
    threads: int | None = None

    def validated(self) -> Options:
        if self.filter_name not in FILTERS:
            raise ValueError(f"unknown filter {self.filter_name!r}; choose one of {', '.join(FILTERS)}")
        if int(self.binning) < 1:
            raise ValueError(f"binning must be >= 1, got {self.binning}")
        if self.ring_removal not in (None, "sorting", "sorting+dead"):
            raise ValueError(f"ring_removal must be None, 'sorting' or 'sorting+dead', got {self.ring_removal!r}")
        if self.paganin is not None:
            missing = {"energy_keV", "distance_mm", "pixel_size_um", "delta_beta"} - set(self.paganin)
            if missing:
                raise ValueError(f"paganin settings miss {sorted(missing)}")
        return replace(self, algorithm=resolve(self.algorithm), binning=int(self.binning))


@dataclass
class ArraySource:
    """Projections in memory (or any array-like sliceable as ``[:, rows, :]``, e.g. an h5py dataset).

    Attributes
    ----------
    data : array_like (angle, row, column)
        Raw counts.
    theta_rad : ndarray (angle,)
    flat, dark : ndarray (row, column) or None
        *Averaged* flat and dark.
    """

    data: object
    theta_rad: np.ndarray
    flat: np.ndarray | None = None
    dark: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    def block(self, rows: slice) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Raw projections of a row block, and the averaged flat and dark of those rows."""
        f = None if self.flat is None else self.flat[rows]
        d = None if self.dark is None else self.dark[rows]
        return np.asarray(self.data[:, rows, :]), f, d


class _FileSource:
    """A :class:`~sscell_live.recon.io.ScanFile` seen as a block source (picklable)."""

    def __init__(self, scan):
        self.scan = scan
        self.theta_rad = scan.theta_rad
        self.metadata = scan.metadata

    @property
    def shape(self) -> tuple:
        return (self.scan.n_angles, self.scan.n_rows, self.scan.n_cols)

    def block(self, rows: slice):
        fl = self.scan.flats(rows)
        dk = self.scan.darks(rows)
        return (self.scan.projections(rows), pp.average_frames(fl, "flats"), pp.average_frames(dk, "darks"))


def as_source(obj):
    """ArraySource / ScanFile / _FileSource -> a block source."""
    from .io import ScanFile

    if isinstance(obj, ScanFile):
        return _FileSource(obj)
    return obj


def select_rows(n_rows: int, rows=None, binning: int = 1) -> list[np.ndarray]:
    """Contiguous runs of detector rows to reconstruct, each a multiple of ``binning`` long.

    Parameters
    ----------
    n_rows : int
        Detector rows.
    rows : None, int, slice, (start, stop) or sequence of int
        Detector rows (unbinned indices). None: all.
    binning : int

    Returns
    -------
    list of ndarray of int
        Runs of consecutive rows; output slice k of a run is the mean of its
        rows ``k * binning ... k * binning + binning - 1``.
    """
    if rows is None:
        sel = np.arange(n_rows)
    elif isinstance(rows, slice):
        sel = np.arange(n_rows)[rows]
    elif np.isscalar(rows):
        sel = np.array([int(rows)])
    else:
        sel = np.unique(np.asarray(list(rows), dtype=np.int64))
    if sel.size == 0:
        raise ValueError("no detector rows selected")
    if sel.min() < 0 or sel.max() >= n_rows:
        raise ValueError(f"selected rows {sel.min()}..{sel.max()} are outside the detector's 0..{n_rows - 1}")
    runs = np.split(sel, np.flatnonzero(np.diff(sel) != 1) + 1)
    out = []
    for run in runs:
        n = (len(run) // binning) * binning
        if n:
            out.append(run[:n])
    if not out:
        raise ValueError(f"the selected rows are fewer than the binning factor {binning}")
    return out


def blocks_for(runs: list[np.ndarray], rows_per_block: int, binning: int) -> list[tuple[int, int]]:
    """Split runs of rows into (start, stop) detector-row blocks of at most ``rows_per_block``."""
    step = max(binning, (rows_per_block // (2 * binning)) * 2 * binning)  # even slice count: pairs pack
    blocks = []
    for run in runs:
        for a in range(int(run[0]), int(run[-1]) + 1, step):
            blocks.append((a, min(a + step, int(run[-1]) + 1)))
    return blocks


def _sinograms(source, r0: int, r1: int, opt: Options) -> np.ndarray:
    """-log sinograms (slice, angle, column) of detector rows r0:r1 after binning and stripe removal."""
    n_rows = source.shape[1]
    margin = 0
    if opt.paganin is not None:
        margin = paganin_margin_rows(**opt.paganin)
    a0, a1 = max(0, r0 - margin), min(n_rows, r1 + margin)
    raw, flat, dark = source.block(slice(a0, a1))
    pp.check_inputs(raw.shape, source.theta_rad, None if flat is None else flat.shape,
                    None if dark is None else dark.shape)
    if opt.paganin is None:
        # normalise, -log, bin and transpose in one threaded pass over blocks of frames
        sino = pp.line_integrals(raw, flat, dark, binning=opt.binning, min_transmission=opt.min_transmission,
                                 sinograms=True, threads=opt.threads)
    else:
        t = pp.normalize(raw, flat, dark, min_transmission=opt.min_transmission)
        del raw
        t = paganin_filter(t, **opt.paganin)
        t = t[:, r0 - a0: r0 - a0 + (r1 - r0)]
        p = pp.minus_log(np.ascontiguousarray(t), out=None)
        del t
        p = pp.bin_projections(p, opt.binning)
        sino = np.ascontiguousarray(p.transpose(1, 0, 2))
    if opt.ring_removal:
        sino = remove_stripe_sorting(sino, opt.ring_size)
        if opt.ring_removal == "sorting+dead":
            sino = remove_dead_stripes(sino)
    return sino


def reconstruct_block(source, r0: int, r1: int, center_binned: float, opt: Options) -> np.ndarray:
    """Slices (slice, y, x) of detector rows r0:r1 (a multiple of the binning)."""
    sino = _sinograms(source, r0, r1, opt)
    backend = get_backend(opt.algorithm)
    kw = {"filter_name": opt.filter_name, "n_out": opt.n_out}
    if opt.algorithm == "fourier" and opt.threads:
        kw["nthreads"] = opt.threads
    return backend.reconstruct_sinograms(sino, source.theta_rad, center_binned, **kw)


def auto_center(source, opt: Options, n_blocks: int = 5, rows_per_block: int = 16) -> float:
    """Rotation centre (unbinned detector column, pixels) from rows spread over the whole detector.

    Single rows are noisy (centres from single twin rows scattered by several
    pixels); the mean of a block of rows is the sinogram of the block's mean
    slice, just as consistent and far less noisy. Blocks span the detector
    (the axis is the same for every row), the median over blocks is robust
    to a block of featureless rows.
    """
    n_rows = source.shape[1]
    edges = np.linspace(0, n_rows, min(n_blocks, n_rows) + 1).round().astype(int)
    cfg = replace(opt, binning=1, ring_removal=None)
    centres = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        step = max(1, (b - a) // rows_per_block)
        sino = np.mean([_sinograms(source, r, r + 1, cfg)[0] for r in range(a, b, step)], axis=0)
        centres.append(find_center_vo(sino, source.theta_rad))
    return float(np.median(centres))


def reconstruct_source(source, center=None, rows=None, out=None, client=None, progress=False,
                       **options) -> np.ndarray:
    """Reconstruct rows of a block source (see :func:`reconstruct` for the parameters).

    Parameters
    ----------
    source : ArraySource or ScanFile
    center : float or None
        Rotation axis, unbinned detector column (pixels); None finds it.
    rows : see :func:`select_rows`
    out : ndarray or h5py.Dataset, optional
        Where to write (n_slices, n, n) slices; default a new ndarray.
    client : dask.distributed.Client, optional
        Farm blocks out to this cluster.
    progress : bool
        Show a tqdm progress bar over blocks.
    **options
        :class:`Options` fields.

    Returns
    -------
    ndarray float32 (slice, y, x), or ``out``.
    """
    opt = Options(**options).validated()
    src = as_source(source)
    n_angles, n_rows, n_cols = src.shape
    theta = np.asarray(src.theta_rad, dtype=np.float64)
    if theta.size != n_angles:
        raise ValueError(f"theta has {theta.size} angles but projections have {n_angles} frames")
    if theta.size == 0:
        raise ValueError("theta is empty: no projection angles given")
    b = opt.binning
    runs = select_rows(n_rows, rows, b)
    if center is None:
        center = auto_center(src, opt)
    center = float(center)
    if not np.isfinite(center):
        raise ValueError(f"center must be a finite column position, got {center}")
    # binned column C spans unbinned columns C*b .. C*b + b - 1, whose middle is C*b + (b-1)/2
    center_b = (center - (b - 1) / 2) / b
    n_cols_b = n_cols // b
    n = opt.n_out or n_cols_b
    n_slices = sum(len(r) for r in runs) // b
    bytes_per_row = n_angles * n_cols * 4
    rows_per_block = max(2 * b, int(opt.chunk_mb * 2**20 // bytes_per_row))
    blocks = blocks_for(runs, rows_per_block, b)
    if out is None:
        out = np.empty((n_slices, n, n), dtype=np.float32)
    elif tuple(out.shape) != (n_slices, n, n):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(n_slices, n, n)}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_slices, unit="slice", desc="reconstruct")
    offsets = np.cumsum([0] + [(r1 - r0) // b for r0, r1 in blocks])
    if client is None:
        for (r0, r1), o in zip(blocks, offsets):
            out[o: o + (r1 - r0) // b] = reconstruct_block(src, r0, r1, center_b, opt)
            if bar is not None:
                bar.update((r1 - r0) // b)
    else:
        from distributed import as_completed

        src_ref = client.scatter(src, broadcast=True) if isinstance(src, ArraySource) else src
        futures = {client.submit(reconstruct_block, src_ref, r0, r1, center_b, opt, pure=False): o
                   for (r0, r1), o in zip(blocks, offsets)}
        for fut in as_completed(futures):
            res = fut.result()
            o = futures[fut]
            out[o: o + res.shape[0]] = res
            if bar is not None:
                bar.update(res.shape[0])
    if bar is not None:
        bar.close()
    return out


def reconstruct(projections, theta, flats=None, darks=None, center=None, **options) -> np.ndarray:
    """Reconstruct a parallel-beam tomography scan.

    Parameters
    ----------
    projections : array_like (angle, row, column)
        Raw counts (ndarray, or an h5py dataset read block by block).
    theta : array_like (angle,)
        Projection angles, radians (TomoPy convention); any order, 180 or
        360 degrees.
    flats, darks : array_like (n, row, column) or (row, column), optional
        Flat (beam, no sample) and dark (no beam) frames, raw counts. Without
        flats the projections must already be transmissions.
    center : float, optional
        Rotation-axis detector column, pixels (sub-pixel), on the unbinned
        detector. None: found automatically (Vo et al. 2014).
    **options
        ``rows`` (detector rows: slice, list, None for all), ``out``
        (preallocated array or h5py dataset), ``client`` (a Dask distributed
        client), ``progress`` (tqdm bar), and the :class:`Options` fields:
        ``algorithm``, ``filter_name``, ``binning``, ``ring_removal``,
        ``ring_size``, ``paganin``, ``n_out``, ``chunk_mb``,
        ``min_transmission``, ``threads``.

    Returns
    -------
    ndarray float32 (row, y, x)
        Linear attenuation per (binned) pixel, i.e. mu times the pixel size;
        oriented as TomoPy and scikit-image orient slices (axis at
        ``(n // 2, n // 2)``). If ``out`` is given, ``out`` is returned.

    Raises
    ------
    ValueError
        Mismatched shapes, empty angles, flats without beam, NaN frames,
        unknown options, each named in the message.
    """
    proj = projections
    if not hasattr(proj, "shape") or not hasattr(proj, "__getitem__"):
        proj = np.asarray(proj)
    shape = tuple(proj.shape)
    if len(shape) != 3:
        raise ValueError(f"projections must be 3-D (angle, row, column), got shape {shape}")
    flat = pp.average_frames(flats, "flats")
    dark = pp.average_frames(darks, "darks")
    theta = pp.check_inputs(shape, theta, None if flat is None else flat.shape, None if dark is None else dark.shape)
    src = ArraySource(proj, theta, flat, dark)
    return reconstruct_source(src, center=center, **options)
