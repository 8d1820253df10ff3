"""Slab selection: find the two Li|SE interfaces in the projections, reconstruct by region.

The metrics need the Li|SE interfaces at full resolution; the electrolyte
bulk between them only binned. In a layered cell the rotation axis (z) is
the detector's row axis, so every detector row is one slice: the projected
attenuation averaged over columns and a few angles, as a function of the
row, is a step profile (steel cap | Li | SE | Li | steel cap) and the
solid electrolyte absorbs far more than lithium (about 10x at 25 keV for
LPS). The SE is the band of intermediate attenuation between two low (Li)
bands: the longest run of rows above the mid-level between Li and SE that
touches neither end of the detector (the caps, where in view, do).

Output layout (:func:`reconstruct_regions` with ``out=``): one HDF5 group per
region, ``/<name>/volume`` (z, y, x) float32, with attributes
``rows`` (first and stop detector row, unbinned), ``binning``,
``voxel_size_um`` (when the pixel size is known), ``z_range_um`` and
``center_px``; the file's root holds ``interfaces_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from . import preprocess as pp
from .pipeline import as_source, auto_center, reconstruct_source

__all__ = ["Region", "find_interfaces", "plan_regions", "reconstruct_regions", "write_region_attrs"]


@dataclass(frozen=True)
class Region:
    """Detector rows ``start:stop`` (unbinned) reconstructed with ``binning``."""

    name: str
    start: int
    stop: int
    binning: int = 1

    @property
    def n_slices(self) -> int:
        return (self.stop - self.start) // self.binning


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def find_interfaces(projections, flats=None, darks=None, *, smooth_rows: float = 1.5,
                    edge_window: int = 5) -> tuple[int, int]:
    """Rows where the solid electrolyte starts and ends, from a few projections.

    Parameters
    ----------
    projections : array_like (angle, row, column)
        Raw counts of some projections (a handful of angles is enough), or
        -log line integrals when ``flats`` and ``darks`` are None and the
        values are not counts (``max <= 50``).
    flats, darks : array_like (n, row, column) or (row, column), optional
    smooth_rows : float
        Gaussian sigma (rows) of the row profile used to find the SE band.
    edge_window : int
        Half-width (rows) of the window in which each face is then located
        from the unsmoothed profile's integral (levels from ``2 edge_window``
        rows beyond it on each side).

    Returns
    -------
    (int, int)
        ``(se_top, se_bottom)``: first SE row and first row past the SE
        (unbinned detector rows).
    """
    p = np.asarray(projections)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[1] < 8:
        raise ValueError(f"projections must be (angle, row, column) with at least 8 rows, got shape {p.shape}")
    if flats is None and darks is None and np.nanmax(p) <= 50:
        line = p.astype(np.float32)
    else:
        line = pp.minus_log(pp.normalize(p, pp.average_frames(flats, "flats"), pp.average_frames(darks, "darks")))
    prof = ndi.gaussian_filter1d(line.mean(axis=(0, 2), dtype=np.float64), smooth_rows, mode="nearest")
    n = prof.size
    lo = np.percentile(prof, 2)
    noise = 1.4826 * np.median(np.abs(np.diff(prof) - np.median(np.diff(prof)))) + 1e-12

    def interior_runs(threshold):
        return [(a, b) for a, b in _runs(prof > threshold) if a > 0 and b < n]

    runs = interior_runs(lo + 5 * noise)
    if not runs:
        raise ValueError("no band of higher attenuation between two low (Li) bands in the row profile: "
                         "cannot locate the solid electrolyte")
    a, b = max(runs, key=lambda r: r[1] - r[0])
    se_level = np.median(prof[a:b])
    runs = interior_runs(0.5 * (lo + se_level))
    if not runs:
        raise ValueError("the solid-electrolyte band vanished at the mid-level threshold")
    a, b = max(runs, key=lambda r: r[1] - r[0])
    raw_prof = line.mean(axis=(0, 2), dtype=np.float64)
    return _refine_edge(raw_prof, a, edge_window), _refine_edge(raw_prof, b, edge_window)


def _refine_edge(prof: np.ndarray, edge: int, w: int) -> int:
    """Step position from the integral of the unsmoothed profile across it.

    Between levels v1 (rows before) and v2 (rows after) a step at e gives
    ``sum(prof[a:b]) = v1 (e - a) + v2 (b - e)``. Phase-contrast fringes
    integrate to zero across the face, so they do not move e (the mid-level
    crossing of a smoothed profile was one row off on twin scans).
    """
    n = prof.size
    a, b = edge - w, edge + w
    if a - 2 * w < 0 or b + 2 * w > n:
        return int(edge)
    v1, v2 = np.median(prof[a - 2 * w: a]), np.median(prof[b: b + 2 * w])
    if abs(v1 - v2) < 1e-12:
        return int(edge)
    e = (prof[a:b].sum() + v1 * a - v2 * b) / (v1 - v2)
    return int(np.clip(round(e), a, b))


def plan_regions(n_rows: int, interfaces: tuple[int, int], *, half_width: int = 32,
                 bulk_binning: int = 4, outer: bool = False) -> list[Region]:
    """Regions: interface slabs at full resolution, the SE bulk (and optionally the rest) binned.

    Parameters
    ----------
    n_rows : int
        Detector rows.
    interfaces : (int, int)
        ``(se_top, se_bottom)`` from :func:`find_interfaces`.
    half_width : int
        Rows each side of an interface kept at full resolution.
    bulk_binning : int
        Binning of the bulk between the slabs (and of the outer parts).
    outer : bool
        Also reconstruct, binned, the rows above the top slab and below the
        bottom one (electrodes and caps).

    Returns
    -------
    list of Region
        Top to bottom; slabs clipped to the detector, binned regions trimmed
        to a multiple of the binning; the slabs absorb the remainders.
    """
    top, bottom = (int(interfaces[0]), int(interfaces[1]))
    if not 0 <= top < bottom <= n_rows:
        raise ValueError(f"interfaces {interfaces} are not ordered rows inside 0..{n_rows}")
    if half_width < 1 or bulk_binning < 1:
        raise ValueError("half_width and bulk_binning must be >= 1")
    t0, t1 = max(0, top - half_width), min(n_rows, top + half_width)
    b0, b1 = max(0, bottom - half_width), min(n_rows, bottom + half_width)
    regions = []
    if t1 >= b0:  # slabs overlap: one full-resolution region
        return [Region("interfaces", t0, b1, 1)]
    nb = (b0 - t1) // bulk_binning * bulk_binning
    if outer and t0 >= bulk_binning:
        n_top = t0 // bulk_binning * bulk_binning
        regions.append(Region("outer_top", t0 - n_top, t0, bulk_binning))
    regions.append(Region("interface_top", t0, t1, 1))
    if nb:
        regions.append(Region("bulk", t1, t1 + nb, bulk_binning))
    regions.append(Region("interface_bottom", t1 + nb, b1, 1))
    if outer and n_rows - b1 >= bulk_binning:
        n_bot = (n_rows - b1) // bulk_binning * bulk_binning
        regions.append(Region("outer_bottom", b1, b1 + n_bot, bulk_binning))
    return regions


def write_region_attrs(group, region: Region, center: float, pixel_size_um: float | None) -> None:
    """Attributes of a region's ``volume`` dataset (see the module docstring)."""
    ds = group["volume"]
    ds.attrs["rows"] = np.array([region.start, region.stop])
    ds.attrs["binning"] = region.binning
    ds.attrs["center_px"] = float(center)
    ds.attrs["axes"] = "z, y, x"
    ds.attrs["units"] = "linear attenuation per voxel (mu * voxel size)"
    if pixel_size_um:
        ds.attrs["voxel_size_um"] = float(pixel_size_um) * region.binning
        ds.attrs["z_range_um"] = np.array([region.start, region.stop]) * float(pixel_size_um)


def create_region_file(path, regions: list[Region], n_cols: int, center: float, *,
                       pixel_size_um: float | None = None, interfaces=None):
    """Open ``path`` for writing with an empty ``/<name>/volume`` per region; returns the h5py File."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(path, "w")
    if interfaces is not None:
        f.attrs["interfaces_rows"] = np.asarray(interfaces, dtype=np.int64)
    for reg in regions:
        n = n_cols // reg.binning
        g = f.create_group(reg.name)
        g.create_dataset("volume", shape=(reg.n_slices, n, n), dtype="float32", chunks=(1, n, n))
        write_region_attrs(g, reg, center, pixel_size_um)
    return f


def reconstruct_regions(source, center=None, regions="auto", out=None, *, half_width: int = 32,
                        bulk_binning: int = 4, outer: bool = False, pixel_size_um: float | None = None,
                        n_probe: int = 8, client=None, progress: bool = False, **options):
    """Reconstruct the interface slabs at full resolution and the bulk binned.

    Parameters
    ----------
    source : ArraySource or ScanFile
        The scan (see :func:`~sscell_live.recon.pipeline.reconstruct_source`).
    center : float, optional
        Rotation axis, unbinned detector column (pixels); None finds it.
    regions : "auto" or list of Region
        ``"auto"``: :func:`find_interfaces` on ``n_probe`` projections spread
        over the scan, then :func:`plan_regions`.
    out : str or Path, optional
        HDF5 file to write (one group per region); default return arrays.
    half_width, bulk_binning, outer
        See :func:`plan_regions`.
    pixel_size_um : float, optional
        Detector pixel size, for the voxel-size attributes; default the
        scan's metadata.
    n_probe : int
        Projections read to find the interfaces.
    client : dask.distributed.Client, optional
        Farm row blocks out to this cluster.
    progress : bool
        A progress bar per region.
    **options
        :class:`~sscell_live.recon.pipeline.Options` fields (``binning`` is
        set per region).

    Returns
    -------
    dict
        ``{"regions": [Region, ...], "interfaces": (top, bottom) or None,
        "center": float, "volumes": {name: ndarray} (only without out),
        "path": out}``.
    """
    src = as_source(source)
    n_angles, n_rows, n_cols = src.shape
    options.pop("binning", None)
    interfaces = None
    if isinstance(regions, str):
        if regions != "auto":
            raise ValueError(f"regions must be 'auto' or a list of Region, got {regions!r}")
        idx = np.unique(np.linspace(0, n_angles - 1, min(n_probe, n_angles)).round().astype(int))
        interfaces = find_interfaces(*_probe(src, idx))
        regions = plan_regions(n_rows, interfaces, half_width=half_width, bulk_binning=bulk_binning, outer=outer)
    if center is None:
        from .pipeline import Options

        center = auto_center(src, Options(**options).validated())
    center = float(center)
    px = pixel_size_um if pixel_size_um is not None else (getattr(src, "metadata", None) or {}).get("pixel_size_um")
    result = {"regions": list(regions), "interfaces": interfaces, "center": center, "path": out}
    if out is None:
        result["volumes"] = {r.name: reconstruct_source(src, center=center, rows=range(r.start, r.stop),
                                                        binning=r.binning, client=client,
                                                        progress=progress, **options) for r in regions}
        return result
    with create_region_file(out, regions, n_cols, center, pixel_size_um=px, interfaces=interfaces) as f:
        for r in regions:
            reconstruct_source(src, center=center, rows=range(r.start, r.stop), binning=r.binning,
                               out=f[r.name]["volume"], client=client, progress=progress, **options)
    return result


def _probe(src, idx: np.ndarray):
    """A few whole projections of a source (all rows), with the averaged flat and dark."""
    scan = getattr(src, "scan", None)
    if scan is not None:  # a file: read only the probe frames
        from .io import _h5open

        with _h5open(scan.path) as f:
            d = f[scan.data_key]
            raw = np.stack([d[int(scan.proj_index[i])] for i in idx])
        return (raw, pp.average_frames(scan.flats(), "flats"), pp.average_frames(scan.darks(), "darks"))
    return np.asarray(src.data[idx]), src.flat, src.dark
