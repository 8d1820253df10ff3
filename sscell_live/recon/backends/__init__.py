"""Reconstruction backends behind one interface.

Every backend module has ``available() -> bool`` and
``reconstruct_sinograms(sinograms (slice, angle, det), theta_rad, center, *,
filter_name, n_out) -> (slice, n_out, n_out) float32`` returning attenuation
per pixel in the scikit-image / TomoPy orientation.

``auto`` picks, by measured speed at equal accuracy (benchmarks/recon.py):
TomoPy gridrec when importable, else ``fourier`` (FINUFFT), else ``torch``
(CUDA when present, else CPU threads).
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["BACKENDS", "get_backend", "resolve"]

#: name -> module (relative to this package)
BACKENDS = {"tomopy": ".tomopy_backend", "fourier": ".fourier", "torch": ".torch_fbp"}
_AUTO_ORDER = ("tomopy", "fourier", "torch")


def get_backend(name: str):
    """The backend module for ``name`` (``auto``, ``fourier``, ``torch``, ``tomopy``)."""
    name = resolve(name)
    return import_module(BACKENDS[name], __name__)


def resolve(name: str) -> str:
    """Concrete backend name for ``name`` (``auto`` -> the best available)."""
    if name == "auto":
        for cand in _AUTO_ORDER:
            if import_module(BACKENDS[cand], __name__).available():
                return cand
    if name not in BACKENDS:
        raise ValueError(f"unknown algorithm {name!r}; choose auto or one of {', '.join(BACKENDS)}")
    if not import_module(BACKENDS[name], __name__).available():
        raise ValueError(f"algorithm {name!r} is not available here (its library is not installed)")
    return name
