"""A whole simulated beamline for one cell: the devices the plans drive.

>>> bl = SimBeamline.create("lps", "mini", seed=0, n_lateral=96, write_directory="runs/frames")  # doctest: +SKIP
>>> RE(tomo_scan(bl, num_angles=181))                                                             # doctest: +SKIP

The alarm is a plain ophyd :class:`ophyd.Signal` (``bl.alarm``): the live
monitor writes its level into it (``ok``, ``watch``, ``imminent``,
``failed``), plans read it between steps, and a bluesky suspender can watch
it (``SuspendWhenChanged``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ophyd import Signal
from ophyd_async.core import init_devices

from .binding import CellBinding
from .detector import TomoDetector
from .motion import LinearStage, RotationStage, Shutter
from .potentiostat import SimPotentiostat

__all__ = ["ALARM_LEVELS", "SimBeamline", "make_alarm_signal"]

#: Alarm levels, in order of severity.
ALARM_LEVELS = ("ok", "watch", "imminent", "failed")


def make_alarm_signal(name: str = "alarm_level") -> Signal:
    """An ophyd Signal holding the failure alarm level (``ok`` at start)."""
    return Signal(name=name, value="ok")


@dataclass
class SimBeamline:
    """The simulated devices of one operando experiment.

    Attributes
    ----------
    binding : CellBinding
        The twin and its clock.
    potentiostat : SimPotentiostat
    stage : RotationStage
        Rotation, degrees.
    translation : LinearStage
        Sample in/out, mm.
    shutter : Shutter
    detector : TomoDetector
    alarm : ophyd.Signal
        Failure alarm level written by the monitor.
    beam_metadata : dict
        Beam and camera metadata for start documents.
    """

    binding: CellBinding
    potentiostat: SimPotentiostat
    stage: RotationStage
    translation: LinearStage
    shutter: Shutter
    detector: TomoDetector
    alarm: Signal
    beam_metadata: dict = field(default_factory=dict)

    @classmethod
    def create(cls, chemistry: str = "lps", geometry: str = "mini", seed: int = 0, *, write_directory,
               n_lateral: int = 96, time_scale: float = math.inf, lockstep: bool = False, sleep=None,
               sample_period_s: float = 60.0, exposure_s: float = 0.1, deadtime_s: float = 0.01,
               render_period_s: float = 60.0, current_range_mA: float = 10.0, compliance_V: float = 12.0,
               cutoff_V: float | None = None, beam=None, detector_model=None, twin=None,
               stage_velocity_deg_s: float = 30.0, alarm: Signal | None = None) -> SimBeamline:
        """Build the twin and every device, connected.

        Parameters
        ----------
        chemistry, geometry, seed, n_lateral
            Twin presets (``CellTwin.create``); ignored if ``twin`` is given.
        write_directory : path
            Detector HDF5 directory (created if missing).
        time_scale : float
            Cell seconds per wall second (``math.inf``: as fast as possible).
        lockstep : bool
            Plans wait for registered consumers at each run boundary.
        sample_period_s : float
            Potentiostat sampling period, s of cell time.
        exposure_s, deadtime_s : float
            Detector exposure and read-out per frame, s.
        render_period_s : float
            Cell time between twin re-renderings while current flows, s.
        current_range_mA, compliance_V, cutoff_V
            Potentiostat limits.
        beam, detector_model
            ``sscell_live.twin.imaging.Beam`` / ``Detector``.
        """
        from sscell_live.twin import CellTwin

        if twin is None:
            geo_kw = {"n_lateral": int(n_lateral)} if geometry == "mini" else {}
            twin = CellTwin.create(chemistry, geometry, seed, **geo_kw)
        write_directory = Path(write_directory).resolve()
        write_directory.mkdir(parents=True, exist_ok=True)
        binding = CellBinding(twin, time_scale=time_scale, lockstep=lockstep, sleep=sleep,
                              sample_period_s=sample_period_s)
        with init_devices(mock=False, connect=True):
            potentiostat = SimPotentiostat(binding, current_range_mA=current_range_mA, compliance_V=compliance_V,
                                           cutoff_V=cutoff_V)
            stage = RotationStage(binding, velocity_deg_s=stage_velocity_deg_s)
            fov_mm = twin.geometry.n_lateral * twin.geometry.voxel_size_um * 1e-3
            translation = LinearStage(binding, field_of_view_mm=fov_mm, out_position_mm=max(10.0, 3 * fov_mm))
            shutter = Shutter(binding)
            detector = TomoDetector(binding, stage, shutter, translation, write_directory, exposure_s=exposure_s,
                                    deadtime_s=deadtime_s, beam=beam, detector_model=detector_model,
                                    render_period_s=render_period_s)
        imager = detector.imager
        beam_md = {
            "beam": ({"energy_keV": imager.beam.energy_keV} if imager.beam.spectrum is None
                     else {"spectrum": [list(imager.beam.spectrum[0]), list(imager.beam.spectrum[1])]}),
            "pixel_size_um": float(imager.pixel_size_um),
            "sample_detector_distance_mm": float(imager.beam.sample_detector_distance_mm),
            "phase_contrast": bool(imager.beam.phase_contrast),
            "detector_shape": list(imager.shape),
            "rotation_centre_px": float(imager.centre_px),
        }
        return cls(binding, potentiostat, stage, translation, shutter, detector,
                   alarm if alarm is not None else make_alarm_signal(), beam_md)

    @property
    def twin(self):
        """The simulated cell (tests only: analysis never looks at it)."""
        return self.binding.twin

    def describe_cell(self) -> dict:
        """``cell`` and ``twin`` start-document metadata."""
        return self.binding.twin.describe()
