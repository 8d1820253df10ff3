"""Fourier-domain filtered backprojection with a non-uniform FFT (gridrec class).

Why this method
---------------
Filtered backprojection costs ``O(N^2 * n_angles)`` per slice; the Fourier
slice theorem turns the same operator into ``O(N^2 log N + n_angles * N)``.
The 1-D FFT of each (zero-padded, centre-shifted) projection gives samples of
the slice's 2-D Fourier transform on a polar grid; weighting them with the
filter and applying one 2-D *type-1 non-uniform FFT* (polar samples ->
Cartesian image) is exactly the discretised FBP integral

    f(y, x) = (pi / n_angles) * (1 / L) * sum_theta sum_k H(w_k) P(theta, w_k)
              * exp(2 pi i w_k (x cos(theta) - y sin(theta)))

evaluated on the image grid. This is what TomoPy's gridrec does (Dowd et
al. 1999, with a prolate spheroidal gridding kernel); FINUFFT (Barnett et al.
2019; a prolate spheroidal kernel again since 2.5) spreads to a requested
accuracy and has a GPU twin (cufinufft).

Two real slices are packed into one complex transform (slice A in the real
part, B in the imaginary part): the operator maps real sinograms to real
images and is complex-linear, so ``op(a + i b) = op(a) + i op(b)`` and each
transform yields two slices for the price of one (as gridrec does).

The sub-pixel rotation centre is applied as a phase ramp on the projection
spectra (exact for band-limited data), so no interpolation blurs the data.

Speed (2 cores): each worker thread takes whole slice pairs through the
whole chain (1-D filtering FFTs, spreading, pruned 2-D FFT, deconvolution
into the output) with its own FINUFFT plan and buffers, so the cores never
wait for each other between steps, nothing is allocated per pair, and
Python's per-step overhead is paid once per pair. Where the time goes at
1024 px / 900 angles (one thread, CPU time per slice, 29-32 ms in all):
spreading the 1.04 M polar samples 15.5 ms, 1-D filtering FFTs 5 ms, 2-D
FFT 4 ms, deconvolution and copies 3 ms, reordering into wedges 1 ms. The
version before (one FINUFFT call for all pairs, 2 threads inside each step,
FFTW_ESTIMATE plans, pad 2) took 55-75 ms of CPU per slice on the same data.
See :mod:`._gridding` for why the 2-D FFT is ours rather than FINUFFT's.

Geometry: the scikit-image / TomoPy orientation. Detector coordinate
``s = x cos(theta) - y sin(theta)``, with ``x = column - n // 2`` and
``y = row - n // 2`` of the output slice and ``s = detector column - center``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

from ..filters import fourier_filter
from ._gridding import _finufft, batch_for, get_gridder

__all__ = ["available", "reconstruct_sinograms"]

#: Linear interpolation at random sub-pixel positions attenuates frequency f
#: by sinc(f)^2 on average but also folds aliased energy back in, so the
#: effective response of scikit-image's / ASTRA's pixel-driven backprojection
#: lies between sinc^1 and sinc^2. Measured RMSE against truth relative to
#: scikit-image iradon on the analytic Shepp-Logan of benchmarks/recon.py
#: (1024 px, 900 angles; noiseless, 2e4 photons): power 1.5: 0.968, 1.019;
#: 1.6: 0.981, 0.997; 1.65: 0.988, 0.987; 1.7: 0.995, 0.977; 2.0: 1.039,
#: 0.919. 1.65 is where both errors sit equally close to iradon's: the same
#: resolution-noise trade-off as iradon, not a smoother image bought with blur.
_LINEAR_SINC_POWER = 1.65

#: Oversampling of the gridding grid (FINUFFT's low-accuracy choice).
_UPSAMPFAC = 1.25


def available() -> bool:
    """True when FINUFFT is importable."""
    return _finufft is not None


def _padded_size(n_det: int, pad: float) -> int:
    """Even FFT length of at least ``pad * n_det`` with small prime factors (fast FFTs)."""
    target = max(64, int(np.ceil(pad * n_det)))
    size = scipy.fft.next_fast_len(target, real=True)
    while size % 2:
        size = scipy.fft.next_fast_len(size + 1, real=True)
    return size


def reconstruct_sinograms(sinograms: np.ndarray, theta: np.ndarray, center, *, filter_name: str = "ramp",
                          n_out: int | None = None, pad: float = 1.5, eps: float = 1e-2,
                          interpolation: str = "linear", grid_pad: float | None = 1.1,
                          nthreads: int | None = None, out: np.ndarray | None = None, accumulate: bool = False,
                          scale: float = 1.0) -> np.ndarray:
    """Reconstruct slices from -log sinograms by Fourier-domain FBP.

    Parameters
    ----------
    sinograms : ndarray, shape (n_slices, n_angles, n_det)
        Line integrals (attenuation per pixel times path length in pixels).
    theta : ndarray (n_angles,)
        Projection angles, radians, any order and range (weights assume
        they sample 180 or 360 degrees evenly).
    center : float or array_like (n_slices,)
        Detector column of the rotation axis, pixels (sub-pixel allowed).
        Slices ``2k`` and ``2k + 1`` share one transform and need the same centre.
    filter_name : str
        See :func:`sscell_live.recon.filters.fourier_filter`.
    n_out : int, optional
        Output slice width and height, pixels; default ``n_det``.
    pad : float
        Zero padding of projections before the filtering FFT, as a factor of
        the width: it keeps the filtered projection from wrapping around. On
        the analytic Shepp-Logan of benchmarks/recon.py (1024 px, 900 angles)
        RMSE was the same at 1.5, 2 and 3 and 1 % higher at 1.25; on a 512 px
        phantom the mean attenuation came out 0.08 % low at 1.5.
    eps : float
        Requested relative accuracy of the spreading. FBP's own
        discretisation error is far larger: at 1024 px / 900 angles, 1e-2
        raised RMSE against truth by 0.14 % (noiseless) and 0.01 % (photon
        noise) over 1e-3, for a narrower, faster spreading kernel; 3e-2
        raised it by 2.5 %.
    interpolation : str
        ``"linear"`` multiplies the filter by ``sinc(f)^1.65``, the measured
        effective response of the linear interpolation that pixel-driven
        backprojectors (scikit-image, ASTRA) apply, so noise and resolution
        match those tools; ``"sinc"`` keeps the exact band-limited
        interpolation (sharper, noisier).
    grid_pad : float, optional
        Radial samples per projection handed to the gridding, as a factor of
        the width. None: the filtering length (``pad``). Smaller filters at
        ``pad`` first, crops to the detector and transforms again: one more
        1-D FFT for fewer samples to spread (the costly part). 1.1 gives the
        RMSE of the one-step path to 0.3 %; 1.0 is 0.5 % worse (the filtered
        projection wraps around at the edge of the field of view).
    nthreads : int, optional
        Worker threads; default all available cores.
    out : ndarray float32 (n_slices, n_out, n_out), optional
        Where to write the slices (no temporary volume).
    accumulate : bool
        Add the slices to ``out`` instead of overwriting it (streaming: the
        FBP of a scan is the sum of the FBPs of its batches of angles).
    scale : float
        Factor on the result (a batch's share of the scan's angles), applied
        to the polar samples, so it costs nothing.

    Returns
    -------
    ndarray float32, shape (n_slices, n_out, n_out)
        Attenuation per pixel (``out`` when given).
    """
    if _finufft is None:
        raise RuntimeError("the 'fourier' backend needs finufft (pip install finufft)")
    if interpolation not in ("linear", "sinc"):
        raise ValueError(f"interpolation must be 'linear' or 'sinc', got {interpolation!r}")
    sino = np.asarray(sinograms, dtype=np.float32)
    if sino.ndim != 3:
        raise ValueError(f"sinograms must be (slice, angle, column), got shape {sino.shape}")
    n_slices, n_angles, n_det = sino.shape
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (n_angles,):
        raise ValueError(f"theta has shape {theta.shape} but the sinograms have {n_angles} angles")
    n = int(n_det if n_out is None else n_out)
    centers = np.broadcast_to(np.asarray(center, dtype=np.float64), (n_slices,))
    n_pairs = (n_slices + 1) // 2
    for p in range(n_slices // 2):
        if centers[2 * p] != centers[2 * p + 1]:
            raise ValueError("slices packed in one transform (2k, 2k + 1) need the same centre")
    nthreads = max(1, int(nthreads or len(os.sched_getaffinity(0))))

    conv_size = _padded_size(n_det, pad)
    filt = fourier_filter(conv_size, filter_name)
    if interpolation == "linear":
        filt = filt * np.sinc(np.fft.fftfreq(conv_size)) ** _LINEAR_SINC_POWER
    # Radial samples of the gridding: fewer is faster, but with fewer than conv_size the
    # projection must be filtered at conv_size first, cropped, and transformed again.
    two_step = grid_pad is not None and _padded_size(n_det, grid_pad) < conv_size
    size = _padded_size(n_det, grid_pad) if two_step else conv_size
    freq = np.fft.fftfreq(size)  # cycles per pixel
    # d_theta * d_w of the FBP integral; the filter tends to 2 |f| (Kak & Slaney), hence the 2
    quad = float(scale) * np.pi / (2 * n_angles * size)
    weights = {}  # per centre: scale and the phase ramp that puts the axis at s = 0 (and the filter, one-step)
    for c in np.unique(centers):
        w = quad * np.exp(2j * np.pi * freq * c) * (1.0 if two_step else filt)
        # The Nyquist bin has no mirror bin: for a real projection it adds a complex term
        # (exp(-i pi s) at non-integer s) that leaks into the partner slice of the pair: on random
        # sinograms the partner changed a slice by 8-11 % RMS with it, 0.1-0.4 % without it (the
        # gridding's accuracy); RMSE against truth (benchmark phantom) fell 1.5 % noiseless.
        w[size // 2] = 0
        weights[c] = w.astype(np.complex64)
    filt32 = filt.astype(np.float32)

    up = 2.0 if eps < 1e-5 else _UPSAMPFAC
    workers = min(nthreads, n_pairs)
    per_worker = max(1, nthreads // workers)  # threads inside one transform when pairs are fewer than cores
    batch = min(batch_for(n, up), -(-n_pairs // workers))  # pairs per spreading call
    pool = get_gridder(n, theta, size, eps, up, per_worker, batch)
    if out is None:
        if accumulate:
            raise ValueError("accumulate=True needs out=")
        out = np.empty((n_slices, n, n), dtype=np.float32)
    elif out.shape != (n_slices, n, n) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n_slices, n, n)}, got {out.dtype} {out.shape}")

    def work(pairs):
        """Whole pairs through the whole chain, with this worker's own buffers and plan."""
        gridder = pool.acquire()
        try:
            # buffers reused pair after pair; the FFTs work in place (no allocation per pair)
            packed = np.zeros((n_angles, conv_size), dtype=np.complex64)
            spectra = np.zeros((batch, n_angles, size), dtype=np.complex64)
            for k in range(0, len(pairs), batch):
                group = pairs[k: k + batch]
                for j, p in enumerate(group):
                    a, b = 2 * p, 2 * p + 1
                    packed[:, :n_det].real = sino[a]
                    packed[:, :n_det].imag = sino[b] if b < n_slices else 0.0
                    packed[:, n_det:] = 0
                    spec = scipy.fft.fft(packed, axis=-1, workers=per_worker, overwrite_x=True)
                    if two_step:
                        # a real, even filter keeps the packing: filtered(a + i b) = filtered(a) + i filtered(b)
                        spec *= filt32
                        filtered = scipy.fft.ifft(spec, axis=-1, workers=per_worker, overwrite_x=True)
                        spectra[j, :, :n_det] = filtered[:, :n_det]
                        spectra[j, :, n_det:] = 0
                        res = scipy.fft.fft(spectra[j], axis=-1, workers=per_worker, overwrite_x=True)
                        if not np.shares_memory(res, spectra[j]):  # pocketfft works in place here; if not
                            spectra[j] = res
                    else:
                        spectra[j] = spec
                gridder.modes(spectra[: len(group)], [weights[centers[2 * p]] for p in group],
                              [out[2 * p] for p in group],
                              [out[2 * p + 1] if 2 * p + 1 < n_slices else None for p in group], accumulate)
        finally:
            pool.release(gridder)

    chunks = [list(range(w, n_pairs, workers)) for w in range(workers)]
    if workers == 1:
        work(chunks[0])
    else:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(work, chunks))
    return out
