"""Plan stubs and the experiment bookkeeping shared by the plans.

- :class:`Experiment`: the experiment uid and the scan/step counters every
  start document carries (DESIGN.md, run layout), and the voltage-collapse
  rule plans use to recognise a short from the potentiostat's readings.
- :func:`open_circuit`, :func:`emit_potentiostat_samples`,
  :func:`lockstep_barrier`: small stubs in the style of
  ``bluesky.plan_stubs``.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import bluesky.plan_stubs as bps

from sscell_live.registry import (
    CONVENTIONS,
    START_SCHEMA_VERSION,
    stripping_interface,
    validate_start_metadata,
)

__all__ = [
    "POTENTIOSTAT_STREAM",
    "Experiment",
    "VoltageCollapse",
    "emit_potentiostat_samples",
    "lockstep_barrier",
    "open_circuit",
]

#: Name of the event stream of potentiostat samples, in every run.
POTENTIOSTAT_STREAM = "potentiostat"


@dataclass
class VoltageCollapse:
    """Recognise a short circuit from the voltage record alone.

    A short is a collapse of the cell's polarization resistance ``|V| / |j|``
    to below ``fraction`` of its reference (the median of the last
    ``window`` galvanostatic samples before it).

    Parameters
    ----------
    fraction : float
        Collapse threshold relative to the reference (0 to 1).
    window : int
        Samples in the reference.
    """

    fraction: float = 0.1
    window: int = 20
    _history: list = field(default_factory=list)
    detected: bool = False

    def update(self, voltage_V: float, current_mA_cm2: float) -> bool:
        """Feed one sample; return whether the cell is (now) considered shorted."""
        if current_mA_cm2 == 0 or not math.isfinite(voltage_V):
            return self.detected
        r = abs(voltage_V) / abs(current_mA_cm2)
        if len(self._history) >= 3:
            ref = sorted(self._history[-self.window:])[len(self._history[-self.window:]) // 2]
            if r < self.fraction * ref:
                self.detected = True
                return True
        self._history.append(r)
        return self.detected


@dataclass
class Experiment:
    """Bookkeeping of one operando experiment across its runs.

    Attributes
    ----------
    uid : str
        ``experiment_uid`` of every run.
    scan_index : int
        Tomography scans started so far.
    step_index : int
        Galvanostatic steps started so far.
    half_cycle_index : int
        Half cycles started so far (a half cycle may span several step runs
        when scans interrupt it).
    md : dict
        Extra metadata for every start document.
    collapse : VoltageCollapse
        Short detection from the voltage record.
    shorted, cutoff : bool
        What the plans saw.
    """

    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    scan_index: int = 0
    step_index: int = 0
    half_cycle_index: int = 0
    md: dict = field(default_factory=dict)
    collapse: VoltageCollapse = field(default_factory=VoltageCollapse)
    shorted: bool = False
    cutoff: bool = False
    run_uids: list = field(default_factory=list)

    def start_md(self, beamline, run_kind: str, current_mA_cm2: float, **extra) -> dict:
        """Validated start-document metadata of the next run of this experiment."""
        md = {
            "sscell_schema_version": START_SCHEMA_VERSION,
            "experiment_uid": self.uid,
            "run_kind": run_kind,
            "step_index": self.step_index,
            "scan_index": self.scan_index,
            "half_cycle_index": self.half_cycle_index,
            "current_sign_convention": CONVENTIONS["current_sign"],
            "current_mA_cm2": float(current_mA_cm2),
            "stripping_interface": stripping_interface(current_mA_cm2),
            "clock": beamline.binding.describe(),
            **beamline.describe_cell(),
            **self.md,
            **extra,
        }
        validate_start_metadata(md)
        return md


def open_circuit(potentiostat):
    """Put the potentiostat at open circuit and wait for it.

    Parameters
    ----------
    potentiostat : SimPotentiostat (or a device with ``set(None)`` meaning open circuit)

    Yields
    ------
    msg : Msg
    """
    yield from bps.abs_set(potentiostat, None, wait=True)


def emit_potentiostat_samples(potentiostat, experiment: Experiment | None = None,
                              stream: str = POTENTIOSTAT_STREAM):
    """Turn the potentiostat's buffered samples into events of ``stream``.

    One event per sample (voltage, current, current density, charge, bulk
    resistance, mode and ``cell_time_s``). Must be called inside an open run.

    Returns
    -------
    list of dict
        The readings emitted (to let the plan check for a short).
    """
    n = yield from bps.rd(potentiostat.samples_pending)
    out = []
    for _ in range(int(n or 0)):
        yield from bps.trigger(potentiostat.sample_log, wait=True)
        reading = yield from _read_log(potentiostat, stream)
        out.append(reading)
        if experiment is not None:
            log = potentiostat.sample_log
            v = reading[log.voltage_V.name]["value"]
            j = reading[log.current_mA_cm2.name]["value"]
            if experiment.collapse.update(v, j):
                experiment.shorted = True
    return out


def _read_log(potentiostat, stream):
    yield from bps.create(name=stream)
    reading = yield from bps.read(potentiostat.sample_log)
    yield from bps.save()
    return reading


def lockstep_barrier(beamline):
    """Wait for the lockstep consumers (no-op unless the binding is in lockstep mode)."""
    if beamline.binding.lockstep:
        yield from bps.wait_for([beamline.binding.barrier])
    else:
        yield from bps.null()
