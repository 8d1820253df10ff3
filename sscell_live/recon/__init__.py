"""Tomographic reconstruction: preprocessing, centre finding, backends (TomoPy when importable, our own CPU/GPU), streaming.

Stable API
----------
``reconstruct(projections, theta, flats=None, darks=None, center=None, **options) -> ndarray``
    Raw counts (angle, row, column) and angles in radians in; (row, y, x)
    float32 attenuation per pixel out, oriented as TomoPy and scikit-image.
``reconstruct_source(open_scan(path), out=None, **options)``
    The same for a Data Exchange or NeXus NXtomo file, block by block
    (``out=`` an HDF5 dataset); ``reconstruct_regions`` writes one group
    per region.
``open_scan(path)``, ``find_center(sinograms, theta)``, ``normalize``,
``minus_log``, ``remove_stripe_sorting``, ``paganin_filter``,
``StreamingReconstructor`` (projections as they arrive), ``find_interfaces``,
``plan_regions`` and ``reconstruct_regions`` (interface slabs at full
resolution, the bulk binned, one HDF5 group per region).

Backends (``algorithm=``): ``auto`` picks TomoPy gridrec when importable,
else ``fourier`` (gridrec-class Fourier FBP on FINUFFT, the default here),
else ``torch`` (FBP on CPU threads or CUDA).
"""

from .centre import find_center, find_center_vo
from .filters import FILTERS, fourier_filter
from .io import ScanFile, open_scan, read_dxchange, read_nxtomo
from .phase import paganin_filter
from .pipeline import ArraySource, Options, reconstruct, reconstruct_source
from .preprocess import average_frames, bin_projections, minus_log, normalize
from .rings import remove_dead_stripes, remove_rings_polar, remove_stripe_sorting, ring_amplitude
from .regions import Region, find_interfaces, plan_regions, reconstruct_regions
from .streaming import StreamingReconstructor

__all__ = [
    "FILTERS",
    "ArraySource",
    "Options",
    "Region",
    "ScanFile",
    "StreamingReconstructor",
    "average_frames",
    "bin_projections",
    "find_center",
    "find_center_vo",
    "find_interfaces",
    "fourier_filter",
    "minus_log",
    "normalize",
    "open_scan",
    "paganin_filter",
    "plan_regions",
    "read_dxchange",
    "read_nxtomo",
    "reconstruct",
    "reconstruct_regions",
    "reconstruct_source",
    "remove_dead_stripes",
    "remove_rings_polar",
    "remove_stripe_sorting",
    "ring_amplitude",
]
