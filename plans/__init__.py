"""Bluesky plans of sscell_live (installed as ``sscell_live.plans``).

- :func:`tomo_scan`: darks, flats, projections (step or fly, 180 or 360
  degrees, counter-rotation), one run;
- :func:`galvanostatic_step`: a current hold with cut-off, one run;
- :func:`operando_cycling`: half cycles with scans, current paused during
  scans (Hao-LPS) or flowing (Lewis-LSPS), until a short or cut-off;
- :func:`current_ramp`: stepped current densities (presets in
  :data:`RAMP_PRESETS`: Dixit-LPS in situ, lab CCD ramp, LLZO low current);
- :func:`cycle_until_failure`: cycling that reads the alarm Signal between
  runs and ends with a final scan at open circuit.

:class:`Experiment` carries the experiment uid and counters across runs.
"""

from .operando import (
    RAMP_PRESETS,
    RampPreset,
    StepResult,
    check_scan_args,
    current_ramp,
    cycle_until_failure,
    galvanostatic_step,
    operando_cycling,
    scan_angles_deg,
    tomo_scan,
)
from .stubs import (
    POTENTIOSTAT_STREAM,
    Experiment,
    VoltageCollapse,
    emit_potentiostat_samples,
    lockstep_barrier,
    open_circuit,
)

__all__ = [
    "POTENTIOSTAT_STREAM",
    "RAMP_PRESETS",
    "Experiment",
    "RampPreset",
    "StepResult",
    "VoltageCollapse",
    "check_scan_args",
    "current_ramp",
    "cycle_until_failure",
    "emit_potentiostat_samples",
    "galvanostatic_step",
    "lockstep_barrier",
    "open_circuit",
    "operando_cycling",
    "scan_angles_deg",
    "tomo_scan",
]
