"""Simulated potentiostat bound to the twin (ophyd-async).

The potentiostat is a :class:`~bluesky.protocols.Movable`: ``set(j)`` applies a
galvanostatic current density ``j`` (mA/cm2, positive strips the top
electrode) and ``set(None)`` puts the cell at open circuit. ``read()`` gives
the live values (voltage, current, charge, cell time, bulk resistance).

Time passes only through :attr:`SimPotentiostat.hold`, a movable whose
``set(duration_s)`` holds the present setting for that much cell time
(scaled wall-clock wait), ending early when the protocol cut-off or the
compliance limit is reached (the potentiostat then drops to open circuit and
``limit_reason`` says why), and through the other devices that take time
while current flows (detector exposures, stage moves).

Samples taken every ``sample_period_s`` of cell time are buffered;
``samples_pending`` counts them and :attr:`SimPotentiostat.sample_log` is a
readable whose ``trigger()`` takes the oldest one, so a plan turns them into
events of a ``potentiostat`` stream, each with its ``cell_time_s``.
The live ``voltage_V`` signal updates at every sample, so
``bps.monitor(pstat.voltage_V)`` gives a monitored voltage time series too.
"""

from __future__ import annotations

import asyncio
import math

from bluesky.protocols import Movable, Stoppable
from ophyd_async.core import (
    AsyncStatus,
    StandardReadable,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from sscell_live.validation import finite as _finite

from .binding import GALVANOSTATIC, OPEN_CIRCUIT, CellBinding, PotentiostatSample

__all__ = ["GALVANOSTATIC", "OPEN_CIRCUIT", "HoldTimer", "PotentiostatLog", "SimPotentiostat"]




def _show_sample(device, s: PotentiostatSample) -> None:
    """Put a sample's values into a device's signals (``PotentiostatLog`` and ``SimPotentiostat``)."""
    device._set_time(s.cell_time_s)
    device._set_voltage(s.voltage_V)
    device._set_current(s.current_mA)
    device._set_j(s.current_mA_cm2)
    device._set_q(s.charge_passed_C)
    device._set_r(s.bulk_resistance_ohm)
    device._set_mode(s.mode)


class PotentiostatLog(StandardReadable):
    """The sample buffer of a potentiostat as a readable.

    ``trigger()`` takes the oldest buffered sample into the signals, which
    ``read()`` then reports: one event per potentiostat sample.
    """

    def __init__(self, binding: CellBinding, name: str = ""):
        self._binding = binding
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.voltage_V, self._set_voltage = soft_signal_r_and_setter(float, 0.0, units="V")
        with self.add_children_as_readables():
            self.cell_time_s, self._set_time = soft_signal_r_and_setter(float, 0.0, units="s")
            self.current_mA, self._set_current = soft_signal_r_and_setter(float, 0.0, units="mA")
            self.current_mA_cm2, self._set_j = soft_signal_r_and_setter(float, 0.0, units="mA/cm2")
            self.charge_passed_C, self._set_q = soft_signal_r_and_setter(float, 0.0, units="C")
            self.bulk_resistance_ohm, self._set_r = soft_signal_r_and_setter(float, 0.0, units="Ohm")
            self.mode, self._set_mode = soft_signal_r_and_setter(str, OPEN_CIRCUIT)
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        sample = self._binding.pop_sample()
        if sample is None:
            raise RuntimeError(f"{self.name}: no potentiostat sample is buffered (read samples_pending first)")
        _show_sample(self, sample)


class HoldTimer(StandardReadable, Movable[float], Stoppable):
    """Hold the potentiostat's present setting for a duration of cell time.

    ``set(duration_s)`` lets the cell clock run for ``duration_s`` seconds
    (waiting ``duration_s / time_scale`` of wall time) and completes early if
    the protocol cut-off or compliance ends the galvanostatic hold.
    """

    def __init__(self, binding: CellBinding, name: str = ""):
        self._binding = binding
        self._task: asyncio.Task | None = None
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.last_duration_s, self._set_last = soft_signal_r_and_setter(float, 0.0, units="s")
        super().__init__(name=name)

    def set(self, value: float, timeout=None) -> AsyncStatus:
        duration = _finite("hold duration_s", value)
        if duration < 0:
            raise ValueError(f"hold duration_s must be >= 0 s, got {value!r}")
        return AsyncStatus(self._hold(duration))

    async def _hold(self, duration: float) -> None:
        b = self._binding
        async with b.drive_lock:
            t_end = b.time_s + duration
            was_galvanostatic = b.mode == GALVANOSTATIC
            # advance one sample period at a time: a cut-off ends the hold at the sample that saw it
            while b.time_s < t_end - 1e-9:
                h = min(b.sample_period_s, t_end - b.time_s)
                b.advance(h)
                await b.wait_wall(h)
                if was_galvanostatic and b.mode != GALVANOSTATIC:
                    break
            self._set_last(duration)

    async def stop(self, success: bool = False) -> None:  # nothing to cancel between samples
        return None


class SimPotentiostat(StandardReadable, Movable[float | None], Stoppable):
    """A potentiostat on the twin: open circuit or galvanostatic.

    Parameters
    ----------
    binding : CellBinding
        The cell and its clock.
    current_range_mA : float
        Largest |current| the instrument can source, mA.
    compliance_V : float
        Voltage compliance, V: a current the cell cannot take within it is
        refused, and a hold whose |V| reaches it drops to open circuit.
    cutoff_V : float, optional
        Protocol cut-off, V (|V| at or above it ends a galvanostatic hold).
    area_cm2 : float, optional
        Electrode area for current densities, cm2; default the cell's nominal
        area (from the twin, as from the cell metadata).
    name : str

    Notes
    -----
    ``set(j_mA_cm2)`` is galvanostatic at ``j`` (mA/cm2); ``set(None)`` is
    open circuit; :meth:`set_current_mA` takes an absolute current in mA.
    ``stop()`` (the RunEngine calls it on abort) goes to open circuit.
    """

    def __init__(self, binding: CellBinding, *, current_range_mA: float = 10.0, compliance_V: float = 12.0,
                 cutoff_V: float | None = None, area_cm2: float | None = None, name: str = ""):
        self._binding = binding
        rng = _finite("current_range_mA", current_range_mA, positive=True)
        comp = _finite("compliance_V", compliance_V, positive=True)
        area = binding.area_cm2 if area_cm2 is None else _finite("area_cm2", area_cm2, positive=True)
        binding.compliance_V = comp
        self._range_mA = rng
        self._area = area
        s = binding.last_sample
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.voltage_V, self._set_voltage = soft_signal_r_and_setter(float, s.voltage_V, units="V")
        with self.add_children_as_readables():
            self.current_mA, self._set_current = soft_signal_r_and_setter(float, 0.0, units="mA")
            self.current_mA_cm2, self._set_j = soft_signal_r_and_setter(float, 0.0, units="mA/cm2")
            self.charge_passed_C, self._set_q = soft_signal_r_and_setter(float, s.charge_passed_C, units="C")
            self.cell_time_s, self._set_time = soft_signal_r_and_setter(float, s.cell_time_s, units="s",
                                                                        getter=lambda: binding.time_s)
            self.bulk_resistance_ohm, self._set_r = soft_signal_r_and_setter(float, s.bulk_resistance_ohm,
                                                                             units="Ohm")
            self.mode, self._set_mode = soft_signal_r_and_setter(str, OPEN_CIRCUIT)
            self.limit_reason, self._set_limit = soft_signal_r_and_setter(str, "")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.current_range_mA = soft_signal_rw(float, rng, units="mA", setter=self._put_range)
            self.compliance_V = soft_signal_rw(float, comp, units="V", setter=self._put_compliance)
            self.cutoff_V = soft_signal_rw(float, math.nan if cutoff_V is None else float(cutoff_V), units="V",
                                           setter=self._put_cutoff)
            self.area_cm2 = soft_signal_rw(float, area, units="cm2", setter=self._put_area)
            self.sample_period_s = soft_signal_rw(float, binding.sample_period_s, units="s",
                                                  setter=self._put_period)
        self.samples_pending, self._set_pending = soft_signal_r_and_setter(int, 0, getter=binding.pending_samples)
        self.hold = HoldTimer(binding)
        self.sample_log = PotentiostatLog(binding)
        if cutoff_V is not None:
            self._put_cutoff(cutoff_V)
        binding.subscribe(self._on_sample)
        super().__init__(name=name)

    # -- config setters (refuse bad settings) --------------------------------------
    def _put_compliance(self, value: float) -> None:
        v = _finite("compliance_V", value, positive=True)
        cut = self._binding.cutoff_V
        if cut is not None and cut > v:
            raise ValueError(f"compliance_V {v} V is below the cut-off {cut} V")
        self._binding.compliance_V = v

    def _put_cutoff(self, value) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self._binding.cutoff_V = None
            return
        v = _finite("cutoff_V", value)
        if v <= 0:
            raise ValueError(f"cutoff_V must be a positive voltage (V), got {value!r}")
        if v > self._binding.compliance_V:
            raise ValueError(f"cutoff_V {v} V exceeds the voltage compliance {self._binding.compliance_V} V")
        self._binding.cutoff_V = v

    def _put_range(self, value: float) -> None:
        v = _finite("current_range_mA", value, positive=True)
        self._range_mA = v

    def _put_area(self, value: float) -> None:
        v = _finite("area_cm2", value, positive=True)
        self._area = v

    def _put_period(self, value: float) -> None:
        v = _finite("sample_period_s", value, positive=True)
        self._binding.sample_period_s = v

    # -- live values -----------------------------------------------------------------
    def _on_sample(self, s: PotentiostatSample) -> None:
        _show_sample(self, s)
        self._set_limit(self._binding.limit_reason)
        self._set_pending(self._binding.pending_samples())

    def _refresh(self) -> None:
        b = self._binding
        b.last_sample = b._measure()
        self._on_sample(b.last_sample)

    async def read(self):
        self._refresh()  # live values at the present cell time
        return await super().read()

    # -- control ---------------------------------------------------------------------
    def check_current(self, current_mA_cm2: float, *, compliance: bool = True) -> float:
        """Validate a galvanostatic current density; return it as float.

        Parameters
        ----------
        current_mA_cm2 : float
        compliance : bool
            Also check that the cell can take it within the compliance voltage
            in its present state (``False``: only the number and the range).

        Raises
        ------
        ValueError
            If it is not finite, the current exceeds the instrument's range, or
            the cell would need more than the compliance voltage right now.
        """
        j = _finite("current density (mA/cm2)", current_mA_cm2)
        b = self._binding
        area = self._area
        i_mA = abs(j) * area
        rng = self._range_mA
        if i_mA > rng:
            raise ValueError(f"current {i_mA:.4g} mA ({j} mA/cm2 over {area:.4g} cm2) exceeds the potentiostat's "
                             f"range of {rng} mA")
        if not compliance:
            return j
        bd = b.twin.voltage(j)
        v = abs(float(bd.voltage_V))
        if v >= b.compliance_V or (j != 0 and bd.supply_limited):
            raise ValueError(f"{j} mA/cm2 is beyond compliance: the cell cannot take it within the "
                             f"{b.compliance_V} V compliance (it would need {abs(bd.ohmic_se_V) + abs(bd.butler_volmer_V) + abs(bd.interfacial_resistance_V):.3g} V)")
        return j

    def set(self, value: float | None, timeout=None) -> AsyncStatus:
        """Apply a current density (mA/cm2; galvanostatic) or ``None`` (open circuit).

        Bad values raise ``ValueError`` at once (before any message completes).
        """
        if value is None:
            return AsyncStatus(self._apply(OPEN_CIRCUIT, 0.0))
        j = self.check_current(value)
        return AsyncStatus(self._apply(GALVANOSTATIC, j))

    def set_current_mA(self, current_mA: float) -> AsyncStatus:
        """Apply an absolute current (mA); converted with ``area_cm2``."""
        i = _finite("current_mA", current_mA)
        return self.set(i / self._area)

    async def _apply(self, mode: str, j: float) -> None:
        b = self._binding
        changed = (mode, j) != (b.mode, b.current_mA_cm2)
        b.apply(mode, j)
        if changed:  # log the change of setting as a sample (the voltage steps at once)
            b.record_now()
        else:
            self._refresh()

    def open_circuit_now(self) -> None:
        """Synchronous open circuit (safety path used by plans' cleanup and ``stop``)."""
        changed = self._binding.mode != OPEN_CIRCUIT
        self._binding.apply(OPEN_CIRCUIT, 0.0)
        try:
            if changed:
                self._binding.record_now()
            else:
                self._refresh()
        except Exception:  # the twin failing to compute a voltage must never keep current flowing
            pass

    async def stop(self, success: bool = False) -> None:
        """On failure (``success=False``: abort, halt, error) go to open circuit.

        The RunEngine calls ``stop(success=True)`` on every device a plan set
        when the plan ends normally; that keeps the present setting, so a
        current a plan deliberately left flowing keeps flowing.
        """
        if not success:
            self.open_circuit_now()

    @property
    def binding(self) -> CellBinding:
        return self._binding

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        # the sample log reports under the potentiostat's own keys (<name>-voltage_V, <name>-cell_time_s, ...)
        self.sample_log.set_name(name, child_name_separator=child_name_separator)
