"""Simulated motion on the cell clock: rotation stage, sample translation, shutter.

Moves take cell time (distance / velocity plus acceleration), so a scan
with current flowing keeps the cell evolving while the stage turns, and the
wall-clock wait is scaled by the binding's ``time_scale``. Limits, velocity
and readback behave like a motor record's; positions outside the limits and
non-positive velocities are refused at ``set`` time with a ``ValueError``.

The rotation stage also flies (``prepare(FlyMotorInfo)``, ``kickoff``,
``complete``): a constant-velocity move whose angle at any cell time is
:meth:`RotationStage.position_at`, which the detector reads for each frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from bluesky.protocols import Flyable, Preparable
from ophyd_async.core import (
    AsyncStatus,
    FlyMotorInfo,
    MovableLogic,
    StandardMovable,
    StandardReadable,
    StrictEnum,
    WatchableAsyncStatus,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from sscell_live.validation import finite as _finite

from .binding import CellBinding

__all__ = ["LinearStage", "RotationStage", "Shutter", "ShutterState"]




@dataclass
class _ClockMoveLogic(MovableLogic[float]):
    """Move at the configured velocity on the cell clock."""

    device: _ClockMotor

    async def stop(self) -> None:
        self.device._stop_requested = True

    async def check_move(self, new_position: float) -> None:
        self.device.check_position(new_position)

    async def calculate_timeout(self, old_position: float, new_position: float) -> float | None:
        return None  # cell-time moves are bounded by the binding's time scale, not a wall timeout

    async def move(self, new_position: float, timeout) -> None:
        await self.device._move_on_clock(float(new_position))


class _ClockMotor(StandardReadable, StandardMovable[float]):
    """A motor whose moves take cell time (base of the stages)."""

    def __init__(self, binding: CellBinding, *, units: str, initial: float, low_limit: float, high_limit: float,
                 velocity: float, acceleration_time_s: float, name: str = ""):
        self._binding = binding
        lo, hi = _finite("low_limit", low_limit), _finite("high_limit", high_limit)
        if not lo < hi:
            raise ValueError(f"low_limit ({lo}) must be below high_limit ({hi})")
        self._limits = (lo, hi)
        self._velocity = self._check_velocity(velocity)
        self._acc = _finite("acceleration_time_s", acceleration_time_s)
        if self._acc < 0:
            raise ValueError(f"acceleration_time_s must be >= 0 s, got {acceleration_time_s!r}")
        self._stop_requested = False
        self._position = _finite("initial position", initial)
        if not lo <= self._position <= hi:
            raise ValueError(f"initial position {initial} is outside the limits [{lo}, {hi}] {units}")
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.user_readback, self._set_readback = soft_signal_r_and_setter(float, self._position, units=units)
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.velocity = soft_signal_rw(float, self._velocity, units=f"{units}/s", setter=self._put_velocity)
            self.acceleration_time = soft_signal_rw(float, self._acc, units="s", setter=self._put_acc)
            self.low_limit = soft_signal_rw(float, lo, units=units, setter=self._put_low)
            self.high_limit = soft_signal_rw(float, hi, units=units, setter=self._put_high)
        self.user_setpoint = soft_signal_rw(float, self._position, units=units)
        self.units = units
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> _ClockMoveLogic:
        return _ClockMoveLogic(setpoint=self.user_setpoint, readback=self.user_readback, device=self)

    # -- settings ------------------------------------------------------------------
    def _check_velocity(self, value) -> float:
        v = _finite("velocity", value)
        if v <= 0:
            raise ValueError(f"velocity must be > 0, got {value!r}")
        return v

    def _put_velocity(self, value) -> None:
        self._velocity = self._check_velocity(value)

    def _put_acc(self, value) -> None:
        v = _finite("acceleration_time_s", value)
        if v < 0:
            raise ValueError(f"acceleration_time_s must be >= 0 s, got {value!r}")
        self._acc = v

    def _put_low(self, value) -> None:
        v = _finite("low_limit", value)
        if v >= self._limits[1]:
            raise ValueError(f"low_limit {v} must be below high_limit {self._limits[1]}")
        self._limits = (v, self._limits[1])

    def _put_high(self, value) -> None:
        v = _finite("high_limit", value)
        if v <= self._limits[0]:
            raise ValueError(f"high_limit {v} must be above low_limit {self._limits[0]}")
        self._limits = (self._limits[0], v)

    @property
    def limits(self) -> tuple[float, float]:
        """(low, high) soft limits in the motor's units."""
        return self._limits

    @property
    def position(self) -> float:
        """Readback now (no I/O)."""
        return self._position

    def check_position(self, value) -> float:
        """Validate a target position; return it as float."""
        v = _finite(f"{self.name or 'motor'} position", value)
        lo, hi = self._limits
        if not lo <= v <= hi:
            raise ValueError(f"{self.name or 'motor'}: position {v} {self.units} is outside the limits "
                             f"[{lo}, {hi}] {self.units}")
        return v

    def set(self, value: float, timeout=None):
        self.check_position(value)
        if timeout is None:
            return super().set(value)
        return super().set(value, timeout)

    def _show(self, position: float) -> None:
        self._position = float(position)
        self._set_readback(self._position)

    def move_time_s(self, distance: float) -> float:
        """Cell time a step move of ``distance`` takes (trapezoidal profile), s."""
        d = abs(distance)
        if d == 0:
            return 0.0
        return d / self._velocity + self._acc

    async def _move_on_clock(self, target: float) -> None:
        b = self._binding
        self._stop_requested = False
        await self.user_setpoint.set(target)
        start = self._position
        total = self.move_time_s(target - start)
        if total == 0:
            return
        async with b.drive_lock:
            # readback updates at about 10 Hz of wall time (one update without wall waits)
            n = max(1, min(100, int(math.ceil(b.wall_seconds(total) / 0.1))))
            for k in range(1, n + 1):
                if self._stop_requested:
                    return
                b.advance(total / n)
                self._show(start + (target - start) * k / n)
                await b.wait_wall(total / n)


class RotationStage(_ClockMotor, Preparable, Flyable):
    """Tomography rotation stage (degrees) with step moves and fly scans.

    Parameters
    ----------
    binding : CellBinding
    low_limit_deg, high_limit_deg : float
        Soft limits, degrees.
    velocity_deg_s : float
        Step-move velocity, deg/s of cell time.
    acceleration_time_s : float
        Time to reach velocity, s.
    name : str
    """

    def __init__(self, binding: CellBinding, *, low_limit_deg: float = -400.0, high_limit_deg: float = 400.0,
                 velocity_deg_s: float = 30.0, acceleration_time_s: float = 0.1, initial_deg: float = 0.0,
                 name: str = ""):
        super().__init__(binding, units="deg", initial=initial_deg, low_limit=low_limit_deg,
                         high_limit=high_limit_deg, velocity=velocity_deg_s,
                         acceleration_time_s=acceleration_time_s, name=name)
        self._fly_info: FlyMotorInfo | None = None
        self._trajectory: tuple[float, float, float, float] | None = None  # t0, p0, t1, p1

    # -- fly scanning --------------------------------------------------------------
    def position_at(self, cell_time_s: float) -> float:
        """Stage angle at a cell time, deg (the flying trajectory, else the readback)."""
        if self._trajectory is None:
            return self._position
        t0, p0, t1, p1 = self._trajectory
        if cell_time_s <= t0:
            return p0
        if cell_time_s >= t1:
            return p1
        return p0 + (p1 - p0) * (cell_time_s - t0) / (t1 - t0)

    @property
    def flying(self) -> bool:
        return self._trajectory is not None

    @AsyncStatus.wrap
    async def prepare(self, value: FlyMotorInfo) -> None:
        """Check the fly move, then move to the run-up start."""
        lo_end = value.ramp_up_start_pos(self._acc)
        hi_end = value.ramp_down_end_pos(self._acc)
        for p in (lo_end, hi_end):
            self.check_position(p)
        if value.speed <= 0:
            raise ValueError("fly move needs a non-zero speed")
        self._fly_info = value
        self._trajectory = None
        await self._move_on_clock(lo_end)

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        """Start the constant-velocity move (run-up, fly, run-down) on the cell clock."""
        if self._fly_info is None:
            raise RuntimeError(f"{self.name}: prepare() must be called before kickoff()")
        info = self._fly_info
        p0, p1 = self._position, info.ramp_down_end_pos(self._acc)
        t0 = self._binding.time_s
        # run-up and run-down at the fly speed (a constant-velocity approximation of the ramps)
        self._trajectory = (t0, p0, t0 + abs(p1 - p0) / info.speed, p1)

    def complete(self) -> WatchableAsyncStatus:
        """Done when the cell clock reaches the end of the fly move."""
        if self._trajectory is None:
            raise RuntimeError(f"{self.name}: kickoff() must be called before complete()")
        return WatchableAsyncStatus(self._complete())

    async def _complete(self):
        b = self._binding
        t0, p0, t1, p1 = self._trajectory
        from ophyd_async.core import WatcherUpdate

        async with b.drive_lock:  # a detector that drives the clock releases it when its frames are done
            remaining = max(0.0, t1 - b.time_s)
            if remaining > 0:
                b.advance(remaining)
                await b.wait_wall(remaining)
        self._show(p1)
        self._trajectory = None
        self._fly_info = None
        yield WatcherUpdate(name=self.name, current=p1, initial=p0, target=p1, unit="deg", precision=3)

    async def stop(self, success: bool = False) -> None:
        if self._trajectory is not None:
            self._show(self.position_at(self._binding.time_s))
            self._trajectory = None
        await super().stop(success)


class LinearStage(_ClockMotor):
    """A linear translation (mm) that moves the sample into and out of the beam.

    Parameters
    ----------
    binding : CellBinding
    in_position_mm, out_position_mm : float
        Named positions: sample in the beam, and far enough out for flats.
    field_of_view_mm : float
        Beam width at the sample; the sample is "in" when within half of it
        of ``in_position_mm``, "out" when more than a full width away.
    """

    def __init__(self, binding: CellBinding, *, in_position_mm: float = 0.0, out_position_mm: float = 10.0,
                 field_of_view_mm: float = 1.0, low_limit_mm: float = -25.0, high_limit_mm: float = 25.0,
                 velocity_mm_s: float = 5.0, acceleration_time_s: float = 0.1, name: str = ""):
        super().__init__(binding, units="mm", initial=in_position_mm, low_limit=low_limit_mm,
                         high_limit=high_limit_mm, velocity=velocity_mm_s,
                         acceleration_time_s=acceleration_time_s, name=name)
        self.in_position_mm = self.check_position(in_position_mm)
        self.out_position_mm = self.check_position(out_position_mm)
        self.field_of_view_mm = _finite("field_of_view_mm", field_of_view_mm)
        if abs(self.out_position_mm - self.in_position_mm) <= self.field_of_view_mm:
            raise ValueError("out_position_mm must be more than one field of view from in_position_mm")

    @property
    def sample_in_beam(self) -> bool:
        return abs(self._position - self.in_position_mm) < 0.5 * self.field_of_view_mm

    @property
    def sample_out_of_beam(self) -> bool:
        return abs(self._position - self.in_position_mm) > self.field_of_view_mm


class ShutterState(StrictEnum):
    OPEN = "open"
    CLOSED = "closed"


class Shutter(StandardReadable):
    """Beam shutter (``set("open")`` / ``set("closed")``), a short cell-time actuation."""

    def __init__(self, binding: CellBinding, *, actuation_time_s: float = 0.05, initial: str = "closed",
                 name: str = ""):
        self._binding = binding
        self._state = ShutterState(initial)
        self.actuation_time_s = _finite("actuation_time_s", actuation_time_s)
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.state, self._set_state = soft_signal_r_and_setter(ShutterState, self._state)
        super().__init__(name=name)

    @property
    def is_open(self) -> bool:
        return self._state == ShutterState.OPEN

    def set(self, value, timeout=None) -> AsyncStatus:
        try:
            target = ShutterState(value.value if isinstance(value, ShutterState) else str(value).lower())
        except ValueError:
            raise ValueError(f"shutter state must be 'open' or 'closed', got {value!r}") from None
        return AsyncStatus(self._actuate(target))

    async def _actuate(self, target: ShutterState) -> None:
        if target == self._state:
            return
        b = self._binding
        async with b.drive_lock:
            b.advance(self.actuation_time_s)
            await b.wait_wall(self.actuation_time_s)
        self._state = target
        self._set_state(target)
