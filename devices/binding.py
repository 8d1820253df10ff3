"""The binding between simulated devices and the digital twin: one cell, one clock.

:class:`CellBinding` owns the :class:`~sscell_live.twin.CellTwin`, the current
the potentiostat applies, and the cell's clock. Every simulated device that
takes time (a galvanostatic hold, a detector exposure, a stage move) asks the
binding to let cell time elapse, so that:

- cell time advances only through what the plan commands, and current left
  flowing during a scan keeps the cell evolving (DESIGN.md, Clocks);
- the simulation runs ``time_scale`` times faster than the wall clock (a
  10-hour experiment in minutes); ``time_scale=math.inf`` runs as fast as the
  computer can;
- wall-clock waits go through an injectable ``sleep`` coroutine function
  (ophyd-async's own sim devices sleep in wall time);
- potentiostat samples are taken every ``sample_period_s`` of cell time,
  whatever is advancing the clock, and buffered until a plan reads them;
- in lockstep mode nothing waits for the wall clock, and plans wait at
  :meth:`CellBinding.barrier` until every registered consumer (a monitor)
  says it has caught up: deterministic tests.

This module has no ophyd dependency; the devices wrap it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

__all__ = ["GALVANOSTATIC", "OPEN_CIRCUIT", "CellBinding", "PotentiostatSample"]

#: Potentiostat modes.
OPEN_CIRCUIT = "open_circuit"
GALVANOSTATIC = "galvanostatic"


@dataclass(frozen=True)
class PotentiostatSample:
    """One potentiostat sample.

    Attributes
    ----------
    cell_time_s : float
        Cell clock at the sample, s.
    voltage_V : float
        Cell voltage (top minus bottom electrode), V.
    current_mA : float
        Applied current, mA (positive strips the top electrode).
    current_mA_cm2 : float
        Applied current density over the nominal area, mA/cm2.
    charge_passed_C : float
        Signed charge passed since the cell was assembled, C.
    bulk_resistance_ohm : float
        Bulk (SE) resistance, the impedance high-frequency intercept, Ohm.
    mode : str
        ``open_circuit`` or ``galvanostatic``.
    """

    cell_time_s: float
    voltage_V: float
    current_mA: float
    current_mA_cm2: float
    charge_passed_C: float
    bulk_resistance_ohm: float
    mode: str

    def as_dict(self) -> dict:
        return asdict(self)


def _positive_or_inf(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or v <= 0:
        raise ValueError(f"{name} must be > 0 (math.inf for as fast as possible), got {value!r}")
    return v


class CellBinding:
    """A twin, its clock, and the current applied to it.

    Parameters
    ----------
    twin : sscell_live.twin.CellTwin
        The simulated cell. Its ``time_s`` is the cell clock.
    time_scale : float
        Cell seconds per wall-clock second (600: ten hours of cell time in one
        minute). ``math.inf``: never wait for the wall clock.
    sleep : coroutine function, optional
        ``await sleep(seconds)`` for wall-clock waits; default ``asyncio.sleep``.
        Tests inject a recorder or a no-op.
    lockstep : bool
        Deterministic mode for tests: no wall-clock waits, and plans wait at
        :meth:`barrier` for every consumer added with :meth:`add_lockstep_waiter`.
    sample_period_s : float
        Potentiostat sampling period, s of cell time.
    max_buffered_samples : int
        Samples kept for plans to read; older ones are dropped (and counted in
        :attr:`dropped_samples`) if no plan reads them.
    """

    def __init__(self, twin, *, time_scale: float = 600.0, sleep: Callable[[float], Awaitable] | None = None,
                 lockstep: bool = False, sample_period_s: float = 60.0, max_buffered_samples: int = 100_000):
        self.twin = twin
        self.time_scale = _positive_or_inf("time_scale", time_scale)
        self.sample_period_s = _positive_or_inf("sample_period_s", sample_period_s)
        if math.isinf(self.sample_period_s):
            raise ValueError("sample_period_s must be finite")
        self.sleep = sleep or asyncio.sleep
        self.lockstep = bool(lockstep)
        self._waiters: list[Callable] = []
        self._samples: deque[PotentiostatSample] = deque(maxlen=int(max_buffered_samples))
        self.dropped_samples = 0
        self._listeners: list[Callable[[PotentiostatSample], None]] = []
        self._mode = OPEN_CIRCUIT
        self._current_mA_cm2 = 0.0
        self._next_sample_s = twin.time_s + self.sample_period_s
        self.cutoff_V: float | None = None
        self.compliance_V: float = 12.0
        #: Why the last galvanostatic hold ended early: ``cutoff``, ``compliance`` or ``""``.
        self.limit_reason = ""
        self._drive_lock: asyncio.Lock | None = None
        self._lock_loop = None
        self._thread_lock = threading.RLock()
        self.last_sample = self._measure()

    # -- state ---------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        """Cell clock, s."""
        return float(self.twin.time_s)

    @property
    def area_cm2(self) -> float:
        """Nominal electrode area, cm2."""
        return float(self.twin.geometry.area_cm2)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def current_mA_cm2(self) -> float:
        """Applied current density, mA/cm2 (0 at open circuit)."""
        return self._current_mA_cm2 if self._mode == GALVANOSTATIC else 0.0

    def charge_passed_C(self) -> float:
        return float(self.twin.state.charge_mC_cm2) * 1e-3 * self.area_cm2

    def voltage_at(self, current_mA_cm2: float) -> float:
        """Cell voltage now at a current density, V (does not advance the clock)."""
        if current_mA_cm2 == 0:
            return float(self.twin.voltage(0.0).voltage_V)
        return float(self.twin.voltage(current_mA_cm2).voltage_V)

    def apply(self, mode: str, current_mA_cm2: float = 0.0) -> None:
        """Switch the applied current (the potentiostat validates before calling)."""
        if mode not in (OPEN_CIRCUIT, GALVANOSTATIC):
            raise ValueError(f"mode must be {OPEN_CIRCUIT!r} or {GALVANOSTATIC!r}, got {mode!r}")
        with self._thread_lock:
            self._mode = mode
            self._current_mA_cm2 = float(current_mA_cm2) if mode == GALVANOSTATIC else 0.0
            if mode == GALVANOSTATIC:
                self.limit_reason = ""

    # -- sampling ------------------------------------------------------------------
    def _measure(self) -> PotentiostatSample:
        j = self.current_mA_cm2
        return PotentiostatSample(
            cell_time_s=self.time_s,
            voltage_V=self.voltage_at(j),
            current_mA=j * self.area_cm2,
            current_mA_cm2=j,
            charge_passed_C=self.charge_passed_C(),
            bulk_resistance_ohm=float(self.twin.bulk_resistance_ohm()),
            mode=self._mode,
        )

    def record_now(self) -> PotentiostatSample:
        """Take and buffer a sample now (the potentiostat logs every change of setting)."""
        with self._thread_lock:
            sample = self._measure()
            self._record(sample)
            return sample

    def subscribe(self, callback: Callable[[PotentiostatSample], None]) -> None:
        """Call ``callback(sample)`` at every sample (the potentiostat's live signals)."""
        self._listeners.append(callback)

    def _record(self, sample: PotentiostatSample) -> None:
        if len(self._samples) == self._samples.maxlen:
            self.dropped_samples += 1
        self._samples.append(sample)
        self.last_sample = sample
        for cb in self._listeners:
            cb(sample)

    def pending_samples(self) -> int:
        """Samples taken and not yet read by :meth:`pop_sample`."""
        return len(self._samples)

    def pop_sample(self) -> PotentiostatSample | None:
        """Oldest unread sample, or ``None``."""
        with self._thread_lock:
            return self._samples.popleft() if self._samples else None

    def clear_samples(self) -> None:
        with self._thread_lock:
            self._samples.clear()

    # -- the clock -----------------------------------------------------------------
    def advance(self, dt_s: float) -> float:
        """Let ``dt_s`` seconds of cell time pass at the applied current.

        The twin evolves in pieces that end on sample boundaries; a sample is
        recorded at each. At a sample whose ``|V|`` reaches the protocol
        cut-off (or the compliance limit) the potentiostat drops to open
        circuit and :attr:`limit_reason` says why; the rest of ``dt_s`` passes
        at open circuit.

        Returns
        -------
        float
            The cell time, s.
        """
        dt = float(dt_s)
        if not (math.isfinite(dt) and dt >= 0):
            raise ValueError(f"dt_s must be a non-negative finite number of seconds, got {dt_s!r}")
        with self._thread_lock:
            end = self.time_s + dt
            while self.time_s < end - 1e-9:
                h = min(end, self._next_sample_s) - self.time_s
                if h > 1e-9:
                    self.twin.advance(self.current_mA_cm2, h)
                if self.time_s >= self._next_sample_s - 1e-9:
                    self._next_sample_s += self.sample_period_s
                    sample = self._measure()
                    self._record(sample)
                    self._check_limits(sample)
            return self.time_s

    def advance_to(self, t_s: float) -> float:
        """Advance the cell clock to ``t_s`` (no-op if already past)."""
        return self.advance(max(0.0, float(t_s) - self.time_s))

    def _check_limits(self, sample: PotentiostatSample) -> None:
        if self._mode != GALVANOSTATIC:
            return
        v = abs(sample.voltage_V)
        if self.cutoff_V is not None and v >= self.cutoff_V:
            self.limit_reason = "cutoff"
        elif v >= self.compliance_V or self.twin.voltage(sample.current_mA_cm2).supply_limited:
            self.limit_reason = "compliance"
        else:
            return
        self._mode = OPEN_CIRCUIT
        self._current_mA_cm2 = 0.0

    def wall_seconds(self, cell_dt_s: float) -> float:
        """Wall-clock duration of ``cell_dt_s`` seconds of cell time."""
        if self.lockstep or math.isinf(self.time_scale):
            return 0.0
        return max(0.0, float(cell_dt_s)) / self.time_scale

    async def wait_wall(self, cell_dt_s: float) -> None:
        """Wait the wall-clock equivalent of ``cell_dt_s`` (injected sleep)."""
        w = self.wall_seconds(cell_dt_s)
        if w > 0:
            await self.sleep(w)

    @property
    def drive_lock(self) -> asyncio.Lock:
        """Held by whoever drives the clock (a detector acquiring, a stage moving).

        Two devices that take time at once (a fly scan: the stage moves while
        the detector exposes) must not both advance the clock; the one that
        holds this lock drives it and the other follows the cell time.
        """
        loop = asyncio.get_running_loop()
        if self._drive_lock is None or self._lock_loop is not loop:
            self._drive_lock = asyncio.Lock()
            self._lock_loop = loop
        return self._drive_lock

    async def elapse(self, dt_s: float) -> float:
        """Let ``dt_s`` of cell time pass, waiting the scaled wall time; returns the cell time."""
        t = self.advance(dt_s)
        await self.wait_wall(dt_s)
        return t

    # -- lockstep ------------------------------------------------------------------
    def add_lockstep_waiter(self, waiter: Callable) -> None:
        """Register a consumer that plans wait for in lockstep mode.

        Parameters
        ----------
        waiter : callable
            Called with no argument at each :meth:`barrier`; either a coroutine
            function (awaited) or a blocking function (run in a worker thread),
            returning once the consumer has processed every document so far.
        """
        self._waiters.append(waiter)

    async def barrier(self) -> None:
        """Wait for every lockstep consumer (no-op unless ``lockstep``)."""
        if not self.lockstep:
            return
        for waiter in list(self._waiters):
            if inspect.iscoroutinefunction(waiter):
                await waiter()
            else:
                result = await asyncio.to_thread(waiter)
                if inspect.isawaitable(result):
                    await result

    def describe(self) -> dict:
        """Clock metadata for start documents."""
        return {
            "time_scale": self.time_scale if math.isfinite(self.time_scale) else "inf",
            "lockstep": self.lockstep,
            "sample_period_s": self.sample_period_s,
        }
