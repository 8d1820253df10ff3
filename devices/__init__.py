"""Ophyd devices of sscell_live (installed as ``sscell_live.devices``).

Simulated hardware bound to the digital twin, each behaving like the real
instrument to stock bluesky plans:

- :class:`CellBinding`: the twin, its clock (scaled against the wall clock,
  injectable sleep, lockstep mode) and the applied current;
- :class:`SimPotentiostat`: open circuit / galvanostatic, range, compliance,
  cut-off; voltage, current, charge, cell time and bulk resistance; a sample
  buffer read as a ``potentiostat`` event stream;
- :class:`RotationStage` (step and fly), :class:`LinearStage` (sample in/out),
  :class:`Shutter`;
- :class:`TomoDetector`: an ophyd-async ``StandardDetector`` writing twin
  frames to HDF5 with StreamResource/StreamDatum documents;
- :class:`SimBeamline`: all of the above for one cell, plus the alarm Signal.

Real-hardware classes should expose the same signals and methods.
"""

from .beamline import ALARM_LEVELS, SimBeamline, make_alarm_signal
from .binding import GALVANOSTATIC, OPEN_CIRCUIT, CellBinding, PotentiostatSample
from .detector import IMAGE_KEY, TomoDetector, TwinImager
from .motion import LinearStage, RotationStage, Shutter, ShutterState
from .potentiostat import SimPotentiostat

__all__ = [
    "ALARM_LEVELS",
    "GALVANOSTATIC",
    "IMAGE_KEY",
    "OPEN_CIRCUIT",
    "CellBinding",
    "LinearStage",
    "PotentiostatSample",
    "RotationStage",
    "Shutter",
    "ShutterState",
    "SimBeamline",
    "SimPotentiostat",
    "TomoDetector",
    "TwinImager",
    "make_alarm_signal",
]
