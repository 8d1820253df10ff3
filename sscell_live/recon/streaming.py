"""Streaming reconstruction: accumulate filtered backprojections as projections arrive.

Filtered backprojection is linear in the sinogram and, per angle, the filter
acts on each projection alone: the FBP of a scan is the sum over disjoint
batches of angles of the FBP of each batch, each weighted by its share of
the angles (every backend normalises by its own angle count,
``pi / (2 n_angles)``, so a batch of ``n_b`` angles is scaled by
``n_b / n_expected``). A :class:`StreamingReconstructor` therefore keeps one
float32 accumulator per reconstructed slice and adds each batch's
contribution while the scan is still running; when the last frame lands only
that last batch is left to do.

Which backend per batch: the Fourier (FINUFFT) backend pays one 2-D FFT of
the oversampled grid and one deconvolution per slice *per batch* on top of
its spreading cost (proportional to the angles); the pixel-driven torch
backprojection has no per-batch overhead but costs ``n^2`` per angle,
100-200x the Fourier path over a whole scan. Fourier stays the default; its
slices are deconvolved straight into the accumulator (no temporary volume)
and the batch weight rides on the polar samples. Frames handed over as one
whole batch are used as they are (no buffer copy); the rows of a batch are
normalised, logged and binned on all cores
(:func:`~sscell_live.recon.preprocess.line_integrals`). Measured on the
full-size job (benchmarks/recon_fullsize.py, 1500 x 2048 x 2448, 100-frame
batches, two slabs of 128 and 130 rows at full resolution, 1788 rows binned
4x): 20-22 CPU seconds per batch (24-26 before the backend's batched
spreading), so at least 10-11 s on two dedicated cores against a 28 s
arrival interval; 335 CPU s for the whole scan (420 s); 24 CPU s from the
last frame to the volumes written to HDF5 (6.4 GiB). The per-batch FFTs
dominate at that width, so ``batch_angles`` (fewer, larger batches) trades
that overhead against the latency after the last frame.

Steps that need the whole scan are replaced while streaming: the rotation
centre comes from the previous scan (or is given), and sinogram stripe
removal becomes the polar ring filter on the reconstructed slices
(:func:`~sscell_live.recon.rings.remove_rings_polar`, ``result(ring_filter=True)``).
"""

from __future__ import annotations

import numpy as np

from . import preprocess as pp
from .backends import get_backend, resolve
from .filters import FILTERS
from .pipeline import select_rows
from .rings import remove_rings_polar

__all__ = ["StreamingReconstructor"]


class StreamingReconstructor:
    """Reconstruct a scan from projection batches as they arrive.

    Parameters
    ----------
    n_angles : int
        Projections the scan will have (sets each batch's weight).
    detector_shape : (int, int)
        ``(n_rows, n_cols)`` of a raw frame, pixels.
    center : float
        Rotation axis, unbinned detector column (pixels), e.g. the previous
        scan's centre.
    rows : None, int, slice, (start, stop) or sequence of int
        Detector rows to reconstruct (see :func:`~sscell_live.recon.pipeline.select_rows`);
        default all.
    binning : int
        Detector binning (rows and columns); voxels are ``binning`` pixels.
    flats, darks : array_like (n, row, column) or (row, column), optional
        Full-frame flat and dark fields; may also be given later with
        :meth:`set_references` (before the first :meth:`add`).
    filter_name : str
        Reconstruction filter (``ramp``, ``shepp-logan``, ``hann``, ...).
    algorithm : str
        Backend per batch: ``fourier`` (default), ``torch``, ``tomopy`` or ``auto``.
    batch_angles : int
        Frames buffered before a batch is backprojected (latency vs. the
        Fourier path's per-batch FFT overhead).
    n_out : int, optional
        Output slice width, pixels; default the binned detector width.
    chunk_mb : float
        Peak size of one backend call's output, MiB (slices per call), for
        the torch and TomoPy backends; the Fourier backend adds each batch
        straight into the accumulator and needs no temporary volume.
    min_transmission : float
        Transmission floor before -log.
    threads : int, optional
        Threads for the Fourier backend; default all cores.

    Examples
    --------
    >>> rec = StreamingReconstructor(1500, (2048, 2448), center=1224.3, rows=(900, 1000))
    >>> rec.set_references(flats, darks)                     # doctest: +SKIP
    >>> for frames, angles in detector:                       # doctest: +SKIP
    ...     rec.add(frames, angles)
    >>> volume = rec.result()                                 # doctest: +SKIP
    """

    def __init__(self, n_angles: int, detector_shape: tuple[int, int], center: float, *, rows=None,
                 binning: int = 1, flats=None, darks=None, filter_name: str = "ramp",
                 algorithm: str = "fourier", batch_angles: int = 64, n_out: int | None = None,
                 chunk_mb: float = 512.0, min_transmission: float = 1e-4, threads: int | None = None):
        n_angles = int(n_angles)
        if n_angles < 1:
            raise ValueError(f"n_angles must be >= 1, got {n_angles}")
        if len(detector_shape) != 2 or min(detector_shape) < 1:
            raise ValueError(f"detector_shape must be (n_rows, n_cols), got {detector_shape}")
        if center is None or not np.isfinite(float(center)):
            raise ValueError(f"a streaming reconstruction needs a finite centre (e.g. the previous scan's), "
                             f"got {center}")
        if filter_name not in FILTERS:
            raise ValueError(f"unknown filter {filter_name!r}; choose one of {', '.join(FILTERS)}")
        if int(batch_angles) < 1:
            raise ValueError(f"batch_angles must be >= 1, got {batch_angles}")
        self.n_angles = n_angles
        self.n_rows, self.n_cols = (int(detector_shape[0]), int(detector_shape[1]))
        self.binning = b = int(binning)
        if b < 1:
            raise ValueError(f"binning must be >= 1, got {binning}")
        runs = select_rows(self.n_rows, rows, b)
        self.runs = runs
        self.rows = np.concatenate(runs)  # unbinned detector rows used, run after run
        self.center = float(center)
        # binned column C spans unbinned columns C*b .. C*b + b - 1 (as the batch pipeline)
        self.center_binned = (self.center - (b - 1) / 2) / b
        self.n = int(n_out or self.n_cols // b)
        self.n_slices = len(self.rows) // b
        self.filter_name = filter_name
        self.algorithm = resolve(algorithm)
        self.batch_angles = int(batch_angles)
        self.chunk_mb = float(chunk_mb)
        self.min_transmission = float(min_transmission)
        self.threads = threads
        self._acc = np.zeros((self.n_slices, self.n, self.n), dtype=np.float32)
        self._buf: list[np.ndarray] = []
        self._buf_theta: list[np.ndarray] = []
        self._n_buffered = 0
        self.n_added = 0  # frames received
        self.n_done = 0  # frames backprojected
        self.flat = self.dark = None
        if flats is not None or darks is not None:
            self.set_references(flats, darks)

    # -- set-up ------------------------------------------------------------------------------------
    def set_references(self, flats=None, darks=None) -> None:
        """Give the scan's flat and dark fields (full frames), before the first batch is processed.

        Parameters
        ----------
        flats, darks : array_like (n, row, column) or (row, column), optional
            Raw counts; averaged here.
        """
        if self.n_done:
            raise RuntimeError("flats and darks must be set before the first batch is backprojected")
        for name, frames in (("flats", flats), ("darks", darks)):
            avg = pp.average_frames(frames, name)
            if avg is not None and avg.shape != (self.n_rows, self.n_cols):
                raise ValueError(f"{name} frames are {avg.shape} (row, column) but the detector is "
                                 f"{(self.n_rows, self.n_cols)}")
            if avg is not None:
                setattr(self, "flat" if name == "flats" else "dark", avg[self.rows])

    @property
    def complete(self) -> bool:
        """True once every expected frame has been added."""
        return self.n_added >= self.n_angles

    # -- streaming ---------------------------------------------------------------------------------
    def add(self, frames, angles) -> int:
        """Add a batch of raw projections; backproject whenever ``batch_angles`` frames are buffered.

        Parameters
        ----------
        frames : array_like (angle, row, column) or (row, column)
            Raw counts of full detector frames (only the selected rows are kept).
        angles : float or array_like (angle,)
            Their angles, radians.

        Returns
        -------
        int
            Frames received so far.
        """
        f = np.asarray(frames)
        if f.ndim == 2:
            f = f[None]
        th = np.atleast_1d(np.asarray(angles, dtype=np.float64)).ravel()
        if f.ndim != 3 or f.shape[1:] != (self.n_rows, self.n_cols):
            raise ValueError(f"frames must be (angle, {self.n_rows}, {self.n_cols}) raw counts, got shape {f.shape}")
        if th.size != f.shape[0]:
            raise ValueError(f"{th.size} angles for {f.shape[0]} frames")
        if not np.isfinite(th).all():
            raise ValueError("angles contain NaN or infinite values")
        if self.n_added + th.size > self.n_angles:
            raise ValueError(f"more frames than the {self.n_angles} expected "
                             f"({self.n_added} received, {th.size} more)")
        self._buf_theta.append(th)
        self._n_buffered += th.size
        self.n_added += th.size
        if self._n_buffered >= self.batch_angles or self.complete:
            if len(self._buf_theta) == 1:
                # a whole batch in one call: straight from the caller's frames, no buffer copy
                self._buf_theta, self._n_buffered = [], 0
                self._backproject(self._rows_of(f), th, first_frame=self.n_done)
                self.n_done += th.size
                return self.n_added
            self._buf.append(self._rows_of(f, copy=True))
            self.flush()
        else:
            # keep only the rows we reconstruct: the buffer is small even for full frames
            self._buf.append(self._rows_of(f, copy=True))
        return self.n_added

    def _rows_of(self, frames: np.ndarray, copy: bool = False) -> np.ndarray:
        """The selected detector rows of full frames (a view when they are one contiguous run)."""
        if len(self.runs) == 1:
            r = self.runs[0]
            sel = frames[:, int(r[0]): int(r[-1]) + 1]
            return np.array(sel, copy=True) if copy else sel
        return frames[:, self.rows]  # fancy indexing copies anyway

    def flush(self) -> None:
        """Backproject whatever is buffered now."""
        if not self._n_buffered:
            return
        raw = np.concatenate(self._buf, axis=0)
        theta = np.concatenate(self._buf_theta)
        self._buf, self._buf_theta, self._n_buffered = [], [], 0
        self._backproject(raw, theta, first_frame=self.n_done)
        self.n_done += theta.size

    def _sinograms(self, raw: np.ndarray, first_frame: int) -> np.ndarray:
        """-log sinograms (slice, angle, column) of a batch of raw frames (selected rows only)."""
        # runs are multiples of b long and concatenated, so consecutive groups of b rows bin together
        return pp.line_integrals(raw, self.flat, self.dark, binning=self.binning, first_frame=first_frame,
                                 min_transmission=self.min_transmission, sinograms=True, threads=self.threads)

    def _backproject(self, raw: np.ndarray, theta: np.ndarray, first_frame: int) -> None:
        sino = self._sinograms(raw, first_frame)
        backend = get_backend(self.algorithm)
        kw = {"filter_name": self.filter_name, "n_out": self.n}
        weight = theta.size / self.n_angles
        if self.algorithm == "fourier":
            # deconvolved straight into the accumulator, the batch weight folded into the polar samples
            backend.reconstruct_sinograms(sino, theta, self.center_binned, nthreads=self.threads, out=self._acc,
                                          accumulate=True, scale=weight, **kw)
            return
        per_slice = self.n * self.n * 4
        step = max(2, int(self.chunk_mb * 2**20 // per_slice) // 2 * 2)  # even: slices pack in pairs
        for s0 in range(0, self.n_slices, step):
            s1 = min(self.n_slices, s0 + step)
            part = backend.reconstruct_sinograms(sino[s0:s1], theta, self.center_binned, **kw)
            part *= np.float32(weight)
            self._acc[s0:s1] += part

    def result(self, out=None, ring_filter: bool = False, **ring_options) -> np.ndarray:
        """The volume from the frames received so far.

        Buffered frames are backprojected first. Before the scan is complete
        the partial sum is rescaled to the angles received (an image from
        fewer angles, with the right attenuation scale).

        Parameters
        ----------
        out : ndarray or h5py.Dataset, optional
            Where to write the (slice, y, x) volume.
        ring_filter : bool
            Apply :func:`~sscell_live.recon.rings.remove_rings_polar` to each slice.
        **ring_options
            Passed to the ring filter (``width``, ``min_radius``).

        Returns
        -------
        ndarray float32 (slice, y, x)
            Attenuation per (binned) pixel, TomoPy orientation; or ``out``.
        """
        self.flush()
        if self.n_done == 0:
            raise RuntimeError("no projections added yet")
        scale = np.float32(self.n_angles / self.n_done)
        if out is None:
            out = np.empty_like(self._acc)
        elif tuple(out.shape) != self._acc.shape:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {self._acc.shape}")
        for k in range(self.n_slices):
            sl = self._acc[k] * scale if scale != 1 else self._acc[k]
            if ring_filter:
                sl = remove_rings_polar(sl, **ring_options)
            out[k] = sl
        return out
