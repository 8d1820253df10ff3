"""Filtered backprojection in torch: the portable backend (CPU threads or CUDA).

Used when FINUFFT is missing, and on a GPU where a direct backprojection is
fast. The filter is applied by FFT (same filters as every backend); the
backprojection interpolates each filtered projection linearly at
``s = x cos(theta) - y sin(theta) + center`` for every pixel, as
``skimage.transform.iradon`` does, but for a batch of slices at once: the
slices of one scan share their angles, so the interpolation indices and
weights are computed once per angle and reused for every slice.
"""

from __future__ import annotations

import numpy as np
import torch

from ..filters import fourier_filter

__all__ = ["available", "reconstruct_sinograms"]


def available() -> bool:
    """Always true (torch is a core dependency)."""
    return True


def reconstruct_sinograms(sinograms: np.ndarray, theta: np.ndarray, center, *, filter_name: str = "ramp",
                          n_out: int | None = None, device: str | None = None,
                          angle_chunk: int = 16) -> np.ndarray:
    """Reconstruct slices by filtered backprojection (torch).

    Parameters
    ----------
    sinograms : ndarray, shape (n_slices, n_angles, n_det)
        Line integrals in pixel units.
    theta : ndarray (n_angles,)
        Angles, radians.
    center : float or array_like (n_slices,)
        Rotation-axis detector column, pixels.
    filter_name : str
        See :func:`sscell_live.recon.filters.fourier_filter`.
    n_out : int, optional
        Output width and height, pixels; default ``n_det``.
    device : str, optional
        ``"cpu"``, ``"cuda"``; default CUDA when available.
    angle_chunk : int
        Angles backprojected per vectorised step (memory vs. speed).

    Returns
    -------
    ndarray float32 (n_slices, n_out, n_out)
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sino = torch.as_tensor(np.ascontiguousarray(sinograms, dtype=np.float32), device=dev)
    n_slices, n_angles, n_det = sino.shape
    n = int(n_det if n_out is None else n_out)
    centers = torch.as_tensor(np.broadcast_to(np.asarray(center, dtype=np.float64), (n_slices,)).copy(),
                              dtype=torch.float32, device=dev)
    size = max(64, int(2 ** np.ceil(np.log2(2 * n_det))))
    filt = torch.as_tensor(fourier_filter(size, filter_name)[: size // 2 + 1], dtype=torch.float32, device=dev)
    filtered = torch.fft.irfft(torch.fft.rfft(sino, n=size, dim=-1) * filt, n=size, dim=-1)[..., :n_det]
    # one zero column past each end makes out-of-detector samples read 0 (as iradon)
    filtered = torch.nn.functional.pad(filtered, (1, 1)).reshape(n_slices, -1)
    row_len = n_det + 2
    th = torch.as_tensor(np.asarray(theta, dtype=np.float64), dtype=torch.float32, device=dev)
    coord = torch.arange(n, dtype=torch.float32, device=dev) - n // 2
    y = coord[:, None]
    x = coord[None, :]
    out = torch.zeros((n_slices, n * n), dtype=torch.float32, device=dev)
    same_center = bool((centers == centers[0]).all())
    for a0 in range(0, n_angles, angle_chunk):
        a1 = min(n_angles, a0 + angle_chunk)
        c, s = torch.cos(th[a0:a1])[:, None, None], torch.sin(th[a0:a1])[:, None, None]
        t = (x * c - y * s).reshape(a1 - a0, -1)  # detector coordinate relative to the axis
        if same_center:
            pos = (t + centers[0] + 1).clamp_(0, row_len - 1.001)
            i0 = pos.floor()
            w = (pos - i0)
            idx = i0.long() + (torch.arange(a0, a1, device=dev) * row_len)[:, None]
            v0 = filtered[:, idx]  # (slices, angles, pixels)
            v1 = filtered[:, idx + 1]
            out += (v0 * (1 - w) + v1 * w).sum(dim=1)
        else:
            for k in range(n_slices):
                pos = (t + centers[k] + 1).clamp_(0, row_len - 1.001)
                i0 = pos.floor()
                w = pos - i0
                idx = i0.long() + (torch.arange(a0, a1, device=dev) * row_len)[:, None]
                out[k] += (filtered[k, idx] * (1 - w) + filtered[k, idx + 1] * w).sum(dim=0)
    out *= np.pi / (2 * n_angles)
    return out.reshape(n_slices, n, n).cpu().numpy()
