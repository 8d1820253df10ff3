"""Reconstruction filters (ramp and apodised ramps) in the frequency domain.

The ramp is built as Kak & Slaney (1988, ch. 3, eq. 61) and scikit-image
build it: as the discrete Fourier transform of the band-limited spatial ramp
kernel, not as ``|f|`` sampled directly. Sampling ``|f|`` gives the DC bin a
weight of exactly zero, which loses the mean of the projection and leaves a
cupping bias; the spatial kernel keeps the right small DC weight.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FILTERS", "fourier_filter"]

#: Filter names accepted everywhere (``filter_name=`` / ``--filter``).
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", "parzen")


def _ramp(size: int) -> np.ndarray:
    """DFT of the band-limited spatial ramp kernel (Kak & Slaney eq. 61), length ``size``."""
    idx = np.arange(size)
    dist = np.minimum(idx, size - idx)  # circular distance from sample 0
    h = np.zeros(size)
    odd = dist % 2 == 1
    h[odd] = -1.0 / (np.pi * dist[odd]) ** 2
    h[0] = 0.25
    return 2.0 * np.real(np.fft.fft(h))


def fourier_filter(size: int, filter_name: str = "ramp") -> np.ndarray:
    """Frequency response of a reconstruction filter, in FFT order.

    Parameters
    ----------
    size : int
        Length of the (zero-padded) projection the filter multiplies; even.
    filter_name : str
        ``ramp``, ``shepp-logan``, ``cosine``, ``hamming``, ``hann`` (the
        scikit-image definitions) or ``parzen`` (the ramp times a Parzen
        window reaching zero at the Nyquist frequency, as TomoPy's gridrec).

    Returns
    -------
    ndarray float64, shape (size,)
        Filter value per FFT bin (``numpy.fft.fftfreq(size)`` order). For
        large sizes it tends to ``2 |f|`` with f in cycles per detector pixel.
    """
    if size < 2 or size % 2:
        raise ValueError(f"filter size must be an even integer >= 2, got {size}")
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; choose one of {', '.join(FILTERS)}")
    filt = _ramp(size)
    freq = np.fft.fftfreq(size)  # cycles per pixel, -0.5 .. 0.5
    if filter_name == "shepp-logan":
        omega = np.pi * freq[1:]
        filt[1:] *= np.sin(omega) / omega
    elif filter_name == "cosine":
        filt *= np.cos(np.pi * freq)
    elif filter_name == "hamming":
        filt *= 0.54 + 0.46 * np.cos(2 * np.pi * freq)
    elif filter_name == "hann":
        filt *= 0.5 + 0.5 * np.cos(2 * np.pi * freq)
    elif filter_name == "parzen":
        # Parzen (de la Vallee Poussin) window in q = |f| / f_nyquist, zero at Nyquist
        q = np.abs(freq) / 0.5
        w = np.where(q <= 0.5, 1 - 6 * q**2 + 6 * q**3, 2 * (1 - q) ** 3)
        filt *= w
    return filt
