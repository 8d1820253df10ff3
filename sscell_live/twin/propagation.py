"""Propagation phase contrast: Fresnel propagation of the exit wave.

The wave leaving the sample, ``psi = exp(-B/2 - i Phi)``, is propagated over
the sample-detector distance in Fourier space (with padding against
wrap-around) and recorded as ``|psi_d|^2``: edge fringes that make Li
visible against voids although it barely absorbs.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import scipy.fft

from sscell_live.twin.detector import _positive

__all__ = ["fresnel_propagate"]

#: Frames propagated per FFT batch (bounds the complex work arrays).
_FFT_BATCH = 16


def _fresnel_pad(wavelength_um_: float, distance_um: float, pixel_size_um: float) -> int:
    # Content at the Nyquist frequency moves sideways by lambda z / (2 p)
    # during propagation; twice that plus a margin keeps the periodic FFT's
    # wrap-around out of the frame.
    return int(math.ceil(wavelength_um_ * distance_um / pixel_size_um**2)) + 8


@functools.lru_cache(maxsize=32)
def _transfer_function(rows: int, cols: int, lam: float, z: float, p: float) -> np.ndarray:
    fy = np.fft.fftfreq(rows, d=p)
    fx = np.fft.fftfreq(cols, d=p)
    H = np.exp(-1j * np.pi * lam * z * (fy[:, None] ** 2 + fx[None, :] ** 2)).astype(np.complex64)
    H.setflags(write=False)
    return H


def fresnel_propagate(attenuation: np.ndarray, phase: np.ndarray, wavelength_um_: float, distance_um: float,
                      pixel_size_um: float, *, pad_px: int | None = None, workers: int | None = None) -> np.ndarray:
    """Intensity after free-space propagation of the exit wave.

    The exit wave ``psi = exp(-B/2 - i Phi)`` is propagated with the Fresnel
    transfer function ``H = exp(-i pi lambda z (fx^2 + fy^2))`` (paraxial,
    the convention in which a weak phase object gives the transport-of-
    intensity result ``I = 1 + (lambda z / 2 pi) laplacian(Phi)``). Frames are
    edge-padded so the FFT's periodic wrap-around stays outside them.

    Parameters
    ----------
    attenuation : ndarray (..., rows, cols)
        ``B``, dimensionless.
    phase : ndarray (..., rows, cols)
        ``Phi``, radians.
    wavelength_um_ : float
        Wavelength, um.
    distance_um : float
        Sample-detector distance, um.
    pixel_size_um : float
        Sampling of the frames, um.
    pad_px : int, optional
        Padding per side; default from the propagation blur.
    workers : int, optional
        FFT threads; default all CPUs.

    Returns
    -------
    ndarray float32, same shape
        Intensity relative to the incident beam.
    """
    lam = _positive("wavelength_um", wavelength_um_)
    z = _positive("distance_um", distance_um)
    p = _positive("pixel_size_um", pixel_size_um)
    B = np.asarray(attenuation, dtype=np.float32)
    Phi = np.asarray(phase, dtype=np.float32)
    if B.shape != Phi.shape or B.ndim < 2:
        raise ValueError(f"attenuation and phase must be frames of equal shape (..., rows, cols), "
                         f"got {B.shape} and {Phi.shape}")
    lead, (rows, cols) = B.shape[:-2], B.shape[-2:]
    B = B.reshape(-1, rows, cols)
    Phi = Phi.reshape(-1, rows, cols)
    pad = _fresnel_pad(lam, z, p) if pad_px is None else int(pad_px)
    R = scipy.fft.next_fast_len(rows + 2 * pad)
    C = scipy.fft.next_fast_len(cols + 2 * pad)
    H = _transfer_function(R, C, lam, z, p)
    widths = ((0, 0), (pad, R - rows - pad), (pad, C - cols - pad))
    workers = workers or os.cpu_count() or 1
    out = np.empty(B.shape, dtype=np.float32)
    for i in range(0, B.shape[0], _FFT_BATCH):
        b = np.pad(B[i:i + _FFT_BATCH], widths, mode="edge")
        ph = np.pad(Phi[i:i + _FFT_BATCH], widths, mode="edge")
        psi = np.exp(-0.5 * b) * (np.cos(ph) - 1j * np.sin(ph)).astype(np.complex64)
        psi = scipy.fft.fft2(psi, axes=(-2, -1), workers=workers, overwrite_x=True)
        psi *= H
        psi = scipy.fft.ifft2(psi, axes=(-2, -1), workers=workers, overwrite_x=True)
        det = psi[:, pad:pad + rows, pad:pad + cols]
        out[i:i + _FFT_BATCH] = det.real**2 + det.imag**2
    return out.reshape(*lead, rows, cols)


