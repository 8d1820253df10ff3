"""Simulated tomography detector: twin frames written to HDF5 (ophyd-async).

Built like ``ophyd_async.sim.SimBlobDetector``: a :class:`StandardDetector`
with a trigger logic (exposure and frame count), an acquire logic (a
background task that takes the frames) and a data logic (an HDF5 file per
``prepare`` and StreamResource/StreamDatum documents referencing it), so the
frames travel by reference, as from an area detector with an HDF5 plugin.

What each frame shows comes from the instruments around the sample: a
**dark** when the shutter is closed, a **flat** when the sample translation
has the sample out of the beam, otherwise a **projection** of the twin's
present state at the rotation stage's angle (its flying trajectory when it
flies). Each exposure takes cell time (exposure + dead time), so current
left flowing during a scan keeps the cell evolving; the twin is re-rendered
only every ``render_period_s`` of cell time (and only when its state has
changed), and frames are served from noise-free intensities computed for a
batch of angles at once (:class:`TwinImager`).

File layout (one file per prepared acquisition)::

    /entry/data/data                               uint16 (n, rows, cols) counts
    /entry/instrument/NDAttributes/rotation_angle_deg  float64 (n,)
    /entry/instrument/NDAttributes/cell_time_s         float64 (n,) mid-exposure
    /entry/instrument/NDAttributes/image_key           int32 (n,) 0 projection, 1 flat, 2 dark
                                                    (the Data Exchange / NeXus convention)

Datakeys: ``<name>`` (the frame), ``<name>-rotation_angle_deg``,
``<name>-cell_time_s`` and ``<name>-image_key``, all in the same stream.
Files are written in SWMR mode and flushed after each frame, and closed at
``unstage`` (before the run's stop document).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    StandardDetector,
    StaticPathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
    UUIDFilenameProvider,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from .binding import CellBinding
from .motion import LinearStage, RotationStage, Shutter

__all__ = [
    "ANGLE_DATASET",
    "FRAME_DATASET",
    "IMAGE_KEY",
    "KEY_DATASET",
    "TIME_DATASET",
    "TomoDetector",
    "TwinImager",
]

FRAME_DATASET = "/entry/data/data"
ANGLE_DATASET = "/entry/instrument/NDAttributes/rotation_angle_deg"
TIME_DATASET = "/entry/instrument/NDAttributes/cell_time_s"
KEY_DATASET = "/entry/instrument/NDAttributes/image_key"
#: Data Exchange image keys.
IMAGE_KEY = {"projection": 0, "flat": 1, "dark": 2}
_SCALAR_CHUNK = 1024


class TwinImager:
    """Frames of the twin: noise-free intensities per state and batch, then noise.

    Parameters
    ----------
    binding : CellBinding
    beam : sscell_live.twin.imaging.Beam, optional
        Default: monochromatic at the chemistry's energy, 100 mm, phase contrast.
    detector_model : sscell_live.twin.imaging.Detector, optional
        Default: pixel = voxel, ``psf_sigma_px=0.7`` (what ``CellTwin.scan`` uses).
    render_period_s : float
        Cell time between re-renderings of an evolving twin, s. Frames within
        one period show the same state (with fresh noise).
    seed : int, optional
        Noise seed; default derived from the twin's seed.
    """

    def __init__(self, binding: CellBinding, *, beam=None, detector_model=None, render_period_s: float = 60.0,
                 seed: int | None = None):
        from sscell_live.twin import imaging

        twin = binding.twin
        self._imaging = imaging
        self.binding = binding
        self.beam = imaging.Beam(energy_keV=twin.chemistry.energy_keV) if beam is None else beam
        self.model = imaging.Detector(psf_sigma_px=0.7) if detector_model is None else detector_model
        if not (math.isfinite(render_period_s) and render_period_s > 0):
            raise ValueError(f"render_period_s must be > 0 s, got {render_period_s!r}")
        self.render_period_s = float(render_period_s)
        self.rng = np.random.default_rng([twin.seed, 31] if seed is None else seed)
        geo = imaging._geometry(twin.geometry.shape, twin.geometry.voxel_size_um, self.model)
        self.shape = (geo.n_rows, geo.n_det)
        self.pixel_size_um = geo.pixel_size_um
        self.centre_px = geo.centre_px
        self._expected = np.zeros(0)
        self._cursor = 0
        self._frames: dict[float, np.ndarray] = {}
        self._render_version = None
        self._render_time = -math.inf
        self.renders = 0

    def expect_angles(self, angles_deg: Sequence[float]) -> None:
        """Tell the simulator which angles come next, in order (a hint; real cameras ignore it).

        Intensities are then computed for a batch of upcoming angles at once.
        """
        self._expected = np.asarray(angles_deg, dtype=np.float64).ravel()
        self._cursor = 0

    def _stale(self) -> bool:
        twin = self.binding.twin
        if self._render_version is None:
            return True
        return (twin.state.version != self._render_version
                and twin.time_s - self._render_time >= self.render_period_s - 1e-9)

    def _batch(self, angle: float, frames_per_render: int) -> np.ndarray:
        exp = self._expected
        idx = None
        if exp.size:
            hits = np.flatnonzero(np.abs(exp[self._cursor:] - angle) < 1e-9)
            if hits.size:
                idx = self._cursor + int(hits[0])
                self._cursor = idx
        if idx is None:
            return np.array([angle])
        return exp[idx:idx + max(1, frames_per_render)]

    def projection(self, angle_deg: float, frames_per_render: int = 10**9) -> np.ndarray:
        """Noise-free intensity ``I/I0`` (rows, cols) at a stage angle (deg)."""
        key = round(float(angle_deg), 9)
        if self._stale():
            self._frames.clear()
        if key not in self._frames:
            twin = self.binding.twin
            batch = self._batch(key, frames_per_render)
            batch = np.unique(np.round(batch, 9))
            chem = twin.chemistry
            intensity = self._imaging.transmitted_intensity(
                twin.labels(), twin.geometry.voxel_size_um, np.radians(batch), self.beam, self.model,
                chemistry=chem.name, compositions={2: chem.se_composition}, use_cache=False)
            if self._render_version != twin.state.version:
                self._render_time = twin.time_s
            self._render_version = twin.state.version
            self.renders += 1
            for a, frame in zip(batch, intensity):
                self._frames[float(a)] = frame
        return self._frames[key]

    def counts(self, kind: str, angle_deg: float = 0.0, frames_per_render: int = 10**9) -> np.ndarray:
        """One noisy frame, counts uint16 (rows, cols): ``projection``, ``flat`` or ``dark``."""
        im = self._imaging
        rows, cols = self.shape
        if kind == "projection":
            c = im.counts_from_intensity(self.projection(angle_deg, frames_per_render), self.model, self.rng)
        elif kind == "flat":
            c = im.simulate_flats(1, rows, cols, self.model, self.rng)[0]
        elif kind == "dark":
            c = im.simulate_darks(1, rows, cols, self.model, self.rng)[0]
        else:
            raise ValueError(f"frame kind must be projection, flat or dark, got {kind!r}")
        return np.clip(np.rint(c), 0, 65535).astype(np.uint16)


class _FrameFile:
    """An HDF5 file of frames and per-frame attributes, SWMR, flushed per frame."""

    def __init__(self, path: Path, shape: tuple[int, int]):
        self.path = path
        self.file = h5py.File(path, "w", libver="latest")
        rows, cols = shape
        self.data = self.file.create_dataset(FRAME_DATASET, shape=(0, rows, cols), maxshape=(None, rows, cols),
                                             dtype=np.uint16, chunks=(1, rows, cols))
        self.scalars = {
            path_: self.file.create_dataset(path_, shape=(0,), maxshape=(None,), dtype=dt, chunks=(_SCALAR_CHUNK,))
            for path_, dt in ((ANGLE_DATASET, np.float64), (TIME_DATASET, np.float64), (KEY_DATASET, np.int32))
        }
        self.file.swmr_mode = True
        self.count = 0

    def append(self, frame: np.ndarray, angle_deg: float, cell_time_s: float, key: int) -> None:
        n = self.count
        self.data.resize(n + 1, axis=0)
        self.data[n] = frame
        for path_, value in ((ANGLE_DATASET, angle_deg), (TIME_DATASET, cell_time_s), (KEY_DATASET, key)):
            ds = self.scalars[path_]
            ds.resize(n + 1, axis=0)
            ds[n] = value
        self.file.flush()
        self.count = n + 1

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


class _Acquisition:
    """State shared by the three logics of one detector."""

    def __init__(self, binding: CellBinding, imager: TwinImager, stage: RotationStage, shutter: Shutter,
                 translation: LinearStage):
        self.binding = binding
        self.imager = imager
        self.stage = stage
        self.shutter = shutter
        self.translation = translation
        self.exposure_s = 0.1
        self.deadtime_s = 0.01
        self.frames_to_take = 1
        self.file: _FrameFile | None = None
        self.images_written, self.set_images_written = soft_signal_r_and_setter(int, 0)
        self.last_kind = ""

    def frame_kind(self) -> str:
        if not self.shutter.is_open:
            return "dark"
        if self.translation.sample_out_of_beam:
            return "flat"
        if self.translation.sample_in_beam:
            return "projection"
        raise RuntimeError("the sample is partly in the beam (translation between its in and out positions): "
                           "move it fully in or out before acquiring")

    async def take(self, n: int, lock_held: asyncio.Lock) -> None:
        """Take ``n`` frames; the binding's drive lock is held by the caller and released here."""
        b = self.binding
        try:
            period = self.exposure_s + self.deadtime_s
            per_render = max(1, int(self.imager.render_period_s // period))
            if b.current_mA_cm2 == 0:
                per_render = 10**9
            for _ in range(n):
                if self.file is None:
                    raise RuntimeError("detector file is not open (prepare the detector first)")
                t0 = b.time_s
                t_mid = t0 + 0.5 * self.exposure_s
                kind = self.frame_kind()
                angle = self.stage.position_at(t_mid)
                frame = self.imager.counts(kind, angle, per_render)
                b.advance(period)
                if self.stage.flying:
                    self.stage._show(self.stage.position_at(b.time_s))
                self.file.append(frame, angle, t_mid, IMAGE_KEY[kind])
                self.last_kind = kind
                self.set_images_written(self.file.count)
                await b.wait_wall(period)
                await asyncio.sleep(0)  # let watchers and abort requests in
        finally:
            lock_held.release()


class _TriggerLogic(DetectorTriggerLogic):
    def __init__(self, acq: _Acquisition, exposure_signal):
        self.acq = acq
        self.exposure_signal = exposure_signal

    def config_sigs(self):
        return {self.exposure_signal}

    def get_deadtime(self, config_values) -> float:
        return self.acq.deadtime_s

    async def prepare_internal(self, num: int, livetime: float, deadtime: float):
        if livetime < 0 or deadtime < 0:
            raise ValueError(f"exposure and dead time must be >= 0 s, got {livetime} s and {deadtime} s")
        if livetime > 0:
            await self.exposure_signal.set(livetime)
        if deadtime > 0:
            self.acq.deadtime_s = float(deadtime)
        self.acq.frames_to_take = int(num)

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class _AcquireLogic(DetectorAcquireLogic):
    def __init__(self, acq: _Acquisition):
        self.acq = acq
        self.task: asyncio.Task | None = None

    async def start_acquiring(self):
        lock = self.acq.binding.drive_lock
        await lock.acquire()  # before returning: a stage's complete() must not run the clock past our frames
        try:
            self.task = asyncio.create_task(self.acq.take(self.acq.frames_to_take, lock))
        except BaseException:
            lock.release()
            raise

    async def wait_for_idle(self):
        if self.task:
            await self.task

    async def ensure_stopped(self):
        if self.task:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class _FrameDataProvider(StreamResourceDataProvider):
    """StreamResourceDataProvider whose datakeys drop the collections-per-event axis when it is 1.

    A frame is then described as ``(rows, cols)``, as an area detector's
    HDF5 plugin describes it, and a stream of N frames reads back as
    ``(N, rows, cols)`` (not ``(N, 1, rows, cols)``).
    """

    async def make_datakeys(self, collections_per_event: int):
        keys = await super().make_datakeys(collections_per_event)
        if collections_per_event == 1:
            for key in keys.values():
                key["shape"] = list(key["shape"][1:])
                if not key["shape"]:
                    key["dtype"] = "number" if not key["dtype_numpy"].startswith(("<i", "|i", "<u")) else "integer"
        return keys


class _DataLogic(DetectorDataLogic):
    def __init__(self, acq: _Acquisition, path_provider: PathProvider):
        self.acq = acq
        self.path_provider = path_provider

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        directory = Path(info.directory_path)
        if not directory.is_dir():
            raise FileNotFoundError(f"detector write directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"detector write directory {directory} is not writable")
        rows, cols = self.acq.imager.shape
        need = 2 * rows * cols * max(1, self.acq.frames_to_take) + (1 << 20)
        free = shutil.disk_usage(directory).free
        if free < need:
            raise OSError(f"detector write directory {directory} is full: {free} bytes free, "
                          f"{need} needed for {self.acq.frames_to_take} frames")
        path = directory / f"{info.filename}.h5"
        if self.acq.file is not None:
            self.acq.file.close()
        self.acq.file = _FrameFile(path, (rows, cols))
        self.acq.set_images_written(0)
        resources = [
            StreamResourceInfo(data_key=datakey_name, shape=(rows, cols), chunk_shape=(1, rows, cols),
                               dtype_numpy=np.dtype(np.uint16).str, parameters={"dataset": FRAME_DATASET}),
            StreamResourceInfo(data_key=f"{datakey_name}-rotation_angle_deg", shape=(), chunk_shape=(_SCALAR_CHUNK,),
                               dtype_numpy=np.dtype(np.float64).str, parameters={"dataset": ANGLE_DATASET}),
            StreamResourceInfo(data_key=f"{datakey_name}-cell_time_s", shape=(), chunk_shape=(_SCALAR_CHUNK,),
                               dtype_numpy=np.dtype(np.float64).str, parameters={"dataset": TIME_DATASET}),
            StreamResourceInfo(data_key=f"{datakey_name}-image_key", shape=(), chunk_shape=(_SCALAR_CHUNK,),
                               dtype_numpy=np.dtype(np.int32).str, parameters={"dataset": KEY_DATASET}),
        ]
        return _FrameDataProvider(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=resources,
            mimetype="application/x-hdf5",
            collections_written_signal=self.acq.images_written,
        )

    async def stop(self) -> None:
        if self.acq.file is not None:
            self.acq.file.close()
            self.acq.file = None

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        return [datakey_name]


class TomoDetector(StandardDetector):
    """Tomography camera on the twin, writing HDF5 and emitting StreamResource/StreamDatum.

    Parameters
    ----------
    binding : CellBinding
    stage : RotationStage
        Whose angle (or flying trajectory) each projection shows.
    shutter : Shutter
        Closed: darks.
    translation : LinearStage
        Sample out of the beam: flats.
    write_directory : path or PathProvider
        Where the HDF5 files go (must exist and be writable; it must be in the
        Tiled server's ``readable_storage``).
    exposure_s : float
        Exposure per frame, s (> 0).
    deadtime_s : float
        Read-out time between frames, s (>= 0).
    beam, detector_model, render_period_s
        Passed to :class:`TwinImager`.
    name : str
    """

    def __init__(self, binding: CellBinding, stage: RotationStage, shutter: Shutter, translation: LinearStage,
                 write_directory, *, exposure_s: float = 0.1, deadtime_s: float = 0.01, beam=None,
                 detector_model=None, render_period_s: float = 60.0, name: str = ""):
        if isinstance(write_directory, (str, os.PathLike)):
            path_provider = StaticPathProvider(UUIDFilenameProvider(), Path(write_directory).resolve())
        else:
            path_provider = write_directory
        self.imager = TwinImager(binding, beam=beam, detector_model=detector_model, render_period_s=render_period_s)
        self._acq = _Acquisition(binding, self.imager, stage, shutter, translation)
        self._acq.exposure_s = self._check_exposure(exposure_s)
        dead = float(deadtime_s)
        if not (math.isfinite(dead) and dead >= 0):
            raise ValueError(f"deadtime_s must be >= 0 s, got {deadtime_s!r}")
        self._acq.deadtime_s = dead
        rows, cols = self.imager.shape
        self.acquire_time = soft_signal_rw(float, self._acq.exposure_s, units="s", setter=self._put_exposure)
        self.image_shape, _ = soft_signal_r_and_setter(str, f"{rows}x{cols}")
        self.pixel_size_um, _ = soft_signal_r_and_setter(float, float(self.imager.pixel_size_um), units="um")
        self.add_detector_logics(
            _TriggerLogic(self._acq, self.acquire_time),
            _AcquireLogic(self._acq),
            _DataLogic(self._acq, path_provider),
        )
        self.add_config_signals(self.image_shape, self.pixel_size_um)  # acquire_time: via the trigger logic
        super().__init__(name=name)

    @staticmethod
    def _check_exposure(value) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"exposure must be a number of seconds, got {value!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"exposure must be > 0 s, got {value!r}")
        return v

    def _put_exposure(self, value) -> None:
        self._acq.exposure_s = self._check_exposure(value)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of a frame."""
        return self.imager.shape

    @property
    def exposure_s(self) -> float:
        return self._acq.exposure_s

    @property
    def frame_period_s(self) -> float:
        """Exposure plus dead time, s of cell time per frame."""
        return self._acq.exposure_s + self._acq.deadtime_s

    def expect_angles(self, angles_deg) -> None:
        """Simulation hint: the angles the coming projections will be taken at (see :class:`TwinImager`)."""
        self.imager.expect_angles(angles_deg)
