"""Readers for tomography scans in HDF5: APS Data Exchange and NeXus NXtomo.

Both give a :class:`ScanFile`: projections are read lazily, a block of
detector rows at a time (peak memory bounded by the block, not the scan),
flats and darks likewise, angles in radians. A ScanFile is picklable (it
stores paths, not open handles), so Dask workers reopen it themselves.

Data Exchange (APS): ``/exchange/data``, ``/exchange/data_white``,
``/exchange/data_dark``, ``/exchange/theta`` (degrees unless its ``units``
attribute says radians).

NeXus NXtomo (Diamond and others): one frame stack with an ``image_key``
per frame (0 projection, 1 flat, 2 dark, 3 invalid) and the rotation angle
per frame; the standard places them at ``<entry>/instrument/detector/data``,
``.../image_key`` and ``<entry>/sample/rotation_angle``; Diamond writes them
under ``<entry>/instrument/<detector>`` and an NXdata group
(``<entry>/<detector>/data`` with a ``*theta*`` angle dataset), often as
external links to files in a sibling folder. HDF5 resolves those relative
to the master file's folder, so the layout must be kept as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ScanFile", "open_scan", "read_dxchange", "read_nxtomo"]


def _h5open(path: str):
    import h5py

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"scan file not found: {path}")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise ValueError(f"cannot read {path} as HDF5 (truncated or not an HDF5 file): {exc}") from None


def _dataset(f, key: str, path: str):
    try:
        return f[key]
    except KeyError:
        raise ValueError(f"{path}: dataset {key} is missing or its linked file cannot be opened") from None


@dataclass
class ScanFile:
    """A tomography scan in an HDF5 file, read lazily.

    Attributes
    ----------
    path : str
        The (master) file.
    data_key : str
        Dataset of projection frames (angle, row, column).
    proj_index : ndarray of int
        Frame indices of the projections in ``data_key``, acquisition order.
    theta_rad : ndarray
        Angle of each projection, radians.
    flat_key, dark_key : str or None
        Datasets holding flats and darks (may equal ``data_key``).
    flat_index, dark_index : ndarray of int
        Their frame indices in those datasets.
    fmt : str
        ``"dxchange"`` or ``"nxtomo"``.
    metadata : dict
        Pixel size, energy, distance where the file has them.
    """

    path: str
    data_key: str
    proj_index: np.ndarray
    theta_rad: np.ndarray
    flat_key: str | None
    flat_index: np.ndarray
    dark_key: str | None
    dark_index: np.ndarray
    fmt: str
    shape: tuple = ()
    metadata: dict = field(default_factory=dict)

    @property
    def n_angles(self) -> int:
        return len(self.proj_index)

    @property
    def n_rows(self) -> int:
        return int(self.shape[1])

    @property
    def n_cols(self) -> int:
        return int(self.shape[2])

    def _read(self, key: str, index: np.ndarray, rows: slice) -> np.ndarray:
        with _h5open(self.path) as f:
            d = _dataset(f, key, self.path)
            out = np.empty((len(index), *d[0:1, rows, :].shape[1:]), dtype=d.dtype)
            # frames come in contiguous runs (flats, projections, darks): read run by run
            breaks = np.flatnonzero(np.diff(index) != 1) + 1
            start = 0
            try:
                for run in np.split(index, breaks):
                    if run.size:
                        out[start:start + run.size] = d[int(run[0]):int(run[-1]) + 1, rows, :]
                        start += run.size
            except OSError as exc:
                raise ValueError(f"{self.path}: reading {key} failed (truncated file?): {exc}") from None
        return out

    def projections(self, rows: slice = slice(None)) -> np.ndarray:
        """Raw projections (angle, row, column) of a block of detector rows."""
        return self._read(self.data_key, self.proj_index, rows)

    def flats(self, rows: slice = slice(None)) -> np.ndarray | None:
        """Raw flat frames (n, row, column), or None."""
        return None if self.flat_key is None or not len(self.flat_index) else self._read(self.flat_key, self.flat_index, rows)

    def darks(self, rows: slice = slice(None)) -> np.ndarray | None:
        """Raw dark frames (n, row, column), or None."""
        return None if self.dark_key is None or not len(self.dark_index) else self._read(self.dark_key, self.dark_index, rows)


def _check_frames(path: str, name: str, shape: tuple, ref: tuple | None) -> None:
    if len(shape) != 3:
        raise ValueError(f"{path}: {name} must be 3-D (frame, row, column), got shape {shape}")
    if ref is not None and tuple(shape[1:]) != tuple(ref[1:]):
        raise ValueError(f"{path}: {name} frames are {shape[1:]} but projections are {ref[1:]}")


def read_dxchange(path) -> ScanFile:
    """Open an APS Data Exchange file (``/exchange/data`` etc.).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ScanFile
    """
    path = str(path)
    with _h5open(path) as f:
        if "exchange/data" not in f:
            raise ValueError(f"{path}: no /exchange/data; not a Data Exchange file")
        d = f["exchange/data"]
        _check_frames(path, "/exchange/data", d.shape, None)
        n = d.shape[0]
        if n == 0:
            raise ValueError(f"{path}: /exchange/data has no projections")
        if "exchange/theta" in f:
            t = f["exchange/theta"]
            theta = np.asarray(t[()], dtype=np.float64).ravel()
            units = t.attrs.get("units", b"degrees")
            units = units.decode() if isinstance(units, bytes) else str(units)
            theta = theta if units.lower().startswith("rad") else np.deg2rad(theta)
        else:
            raise ValueError(f"{path}: /exchange/theta (projection angles) is missing")
        if theta.size != n:
            raise ValueError(f"{path}: /exchange/theta has {theta.size} angles but /exchange/data has {n} frames")
        keys = {}
        for name, key in (("flats", "exchange/data_white"), ("darks", "exchange/data_dark")):
            if key in f:
                _check_frames(path, "/" + key, f[key].shape, d.shape)
                keys[name] = (key, np.arange(f[key].shape[0]))
            else:
                keys[name] = (None, np.arange(0))
        meta = {}
        for k, name in (("measurement/instrument/detection_system/objective/resolution", "pixel_size_um"),
                        ("measurement/instrument/monochromator/energy", "energy_keV")):
            if k in f:
                try:
                    meta[name] = float(np.asarray(f[k][()]).ravel()[0])
                except (TypeError, ValueError):
                    pass
        return ScanFile(path, "exchange/data", np.arange(n), theta, keys["flats"][0], keys["flats"][1],
                        keys["darks"][0], keys["darks"][1], "dxchange", tuple(d.shape), meta)


def _nx_class(obj) -> str:
    v = obj.attrs.get("NX_class", b"")
    return v.decode() if isinstance(v, bytes) else str(v)


def _find_nxtomo_layout(f, path: str) -> tuple[str, str, str]:
    """(data, image_key, angle) dataset paths of an NXtomo-like file."""
    entries = [k for k in f if _nx_class(f[k]) in ("NXentry", "NXsubentry")] or list(f)
    for e in entries:
        g = f[e]
        # 1) NXtomo standard
        for sub in [g] + [g[k] for k in g if _nx_class(g[k]) == "NXsubentry"]:
            if "instrument/detector/image_key" in sub and "sample/rotation_angle" in sub:
                base = sub.name
                return f"{base}/instrument/detector/data", f"{base}/instrument/detector/image_key", f"{base}/sample/rotation_angle"
        # 2) Diamond: NXdetector with image_key under instrument; NXdata <entry>/<det> holding data and angles
        inst = g.get("instrument")
        if inst is None:
            continue
        for det in inst:
            try:
                dg = inst[det]
            except KeyError:
                continue
            if _nx_class(dg) != "NXdetector" or "image_key" not in dg:
                continue
            nxdata = g.get(det)
            if nxdata is None or "data" not in nxdata:
                continue
            try:
                nxdata["data"]
            except KeyError:
                continue  # linked frame file absent: try another detector
            for name in ("rotation_angle", *sorted(k for k in nxdata if "theta" in k.lower())):
                if name in nxdata:
                    try:
                        nxdata[name]
                    except KeyError:
                        continue
                    return f"{nxdata.name}/data", f"{dg.name}/image_key", f"{nxdata.name}/{name}"
    raise ValueError(f"{path}: no NXtomo data found (need frames, image_key and rotation angles)")


def read_nxtomo(path) -> ScanFile:
    """Open a NeXus NXtomo scan (image_key 0/1/2 frames, linked files allowed).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ScanFile
        Angles in radians (the file's are degrees unless ``units`` says rad).
    """
    path = str(path)
    with _h5open(path) as f:
        data_key, key_key, angle_key = _find_nxtomo_layout(f, path)
        d = _dataset(f, data_key, path)
        _check_frames(path, data_key, d.shape, None)
        image_key = np.asarray(_dataset(f, key_key, path)[()]).astype(int).ravel()
        a = _dataset(f, angle_key, path)
        angles = np.asarray(a[()], dtype=np.float64).ravel()
        units = a.attrs.get("units", b"deg")
        units = units.decode() if isinstance(units, bytes) else str(units)
    if len(image_key) != d.shape[0] or len(angles) != d.shape[0]:
        raise ValueError(f"{path}: {d.shape[0]} frames but {len(image_key)} image keys and {len(angles)} angles")
    proj = np.flatnonzero(image_key == 0)
    if proj.size == 0:
        raise ValueError(f"{path}: no projection frames (image_key 0)")
    theta = angles[proj]
    theta = theta if units.lower().startswith("rad") else np.deg2rad(theta)
    return ScanFile(path, data_key, proj, theta, data_key, np.flatnonzero(image_key == 1), data_key,
                    np.flatnonzero(image_key == 2), "nxtomo", tuple(d.shape), {})


def open_scan(path) -> ScanFile:
    """Open a scan file, recognising Data Exchange or NeXus NXtomo by content."""
    path = str(path)
    with _h5open(path) as f:
        is_dx = "exchange/data" in f
    return read_dxchange(path) if is_dx else read_nxtomo(path)
