"""TomoPy gridrec, used when TomoPy is importable (it is not on PyPI)."""

from __future__ import annotations

import numpy as np

__all__ = ["available", "reconstruct_sinograms"]

_FILTERS = {"ramp": "ramlak", "shepp-logan": "shepp", "cosine": "cosine", "hamming": "hamming",
            "hann": "hann", "parzen": "parzen"}


def available() -> bool:
    """True when ``import tomopy`` works."""
    try:
        import tomopy  # noqa: F401
    except ImportError:
        return False
    return True


def reconstruct_sinograms(sinograms: np.ndarray, theta: np.ndarray, center, *, filter_name: str = "ramp",
                          n_out: int | None = None, ncore: int | None = None) -> np.ndarray:
    """Reconstruct with ``tomopy.recon(algorithm="gridrec")``.

    Same parameters and output as
    :func:`sscell_live.recon.backends.fourier.reconstruct_sinograms`
    (TomoPy's output is scaled the same way: attenuation per pixel).
    """
    import tomopy

    sino = np.ascontiguousarray(np.asarray(sinograms, dtype=np.float32).transpose(1, 0, 2))  # (angle, slice, det)
    centers = np.broadcast_to(np.asarray(center, dtype=np.float32), (sino.shape[1],))
    rec = tomopy.recon(sino, np.asarray(theta, dtype=np.float32), center=centers, algorithm="gridrec",
                       filter_name=_FILTERS[filter_name], ncore=ncore)
    if n_out is not None and n_out != rec.shape[-1]:
        raise ValueError("the tomopy backend reconstructs on the detector width only (n_out unsupported)")
    return rec.astype(np.float32, copy=False)
