"""Bluesky plans of an operando tomography experiment.

Run layout (DESIGN.md): one run per tomography scan (streams ``dark``,
``flat``, ``primary``, optionally ``flat_after``, and ``potentiostat``) and
one run per galvanostatic step (stream ``potentiostat``), tied together by
``experiment_uid`` and the ``scan_index`` / ``step_index`` /
``half_cycle_index`` counters of the start documents. When scans interrupt a
half cycle while current keeps flowing, that half cycle is several step runs.

Every plan validates its arguments before its first message (so a bad
argument never leaves a half-started experiment) and leaves the
potentiostat at open circuit when it ends, whether it succeeds, fails or is
aborted (``tomo_scan`` alone leaves a deliberately flowing current on when it
succeeds: the caller owns it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from ophyd_async.core import FlyMotorInfo, TriggerInfo

from sscell_live.validation import finite as _finite

from .stubs import (
    POTENTIOSTAT_STREAM,
    Experiment,
    emit_potentiostat_samples,
    lockstep_barrier,
    open_circuit,
)

__all__ = [
    "RAMP_PRESETS",
    "RampPreset",
    "check_scan_args",
    "current_ramp",
    "cycle_until_failure",
    "galvanostatic_step",
    "operando_cycling",
    "scan_angles_deg",
    "tomo_scan",
]

_SCAN_DEFAULTS = dict(num_angles=181, span_deg=180.0, start_deg=0.0, mode="step", num_darks=10, num_flats=20,
                      flats_after=False, exposure_s=None, counter_rotation=False)


# ---------------------------------------------------------------------------
# argument checks (before any message)
# ---------------------------------------------------------------------------


def _count(name, value, minimum=0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def scan_angles_deg(num_angles: int, span_deg: float = 180.0, start_deg: float = 0.0,
                    counter_rotation: bool = False) -> np.ndarray:
    """Projection angles of a scan, degrees, in acquisition order.

    ``num_angles`` equally spaced angles over ``span_deg`` (endpoint
    excluded, so a 360-degree scan pairs every angle with its opposite),
    starting at ``start_deg`` and decreasing when ``counter_rotation``.
    """
    step = span_deg / num_angles
    sign = -1.0 if counter_rotation else 1.0
    return start_deg + sign * step * np.arange(num_angles)


def check_scan_args(beamline, *, num_angles=181, span_deg=180.0, start_deg=0.0, mode="step", num_darks=10,
                    num_flats=20, flats_after=False, exposure_s=None, counter_rotation=False) -> dict:
    """Validate ``tomo_scan`` arguments; return them normalised.

    Raises
    ------
    ValueError
        On any bad value, naming it (angles outside the stage limits, a
        non-positive exposure, an unknown mode...).
    """
    n = _count("num_angles", num_angles, 2)
    span = _finite("span_deg", span_deg, positive=True)
    if span > 360.0 + 1e-9:
        raise ValueError(f"span_deg must be at most 360 degrees, got {span_deg!r}")
    start = _finite("start_deg", start_deg)
    if mode not in ("step", "fly"):
        raise ValueError(f"mode must be 'step' or 'fly', got {mode!r}")
    nd, nf = _count("num_darks", num_darks), _count("num_flats", num_flats)
    det = beamline.detector
    exposure = det.exposure_s if exposure_s is None else _finite("exposure_s", exposure_s, positive=True)
    angles = scan_angles_deg(n, span, start, bool(counter_rotation))
    stage = beamline.stage
    lo, hi = stage.limits
    ends = [angles.min(), angles.max()]
    if mode == "fly":
        period = exposure + det._acq.deadtime_s
        v = (span / n) / period
        ramp = stage._acc * v / 2 + v * period
        ends = [angles.min() - ramp, angles.max() + ramp]
    bad = [a for a in ends if not lo <= a <= hi]
    if bad:
        raise ValueError(f"scan angles (with fly run-up/run-down) reach {bad[0]:.3f} deg, outside the rotation "
                         f"stage limits [{lo}, {hi}] deg")
    return dict(num_angles=n, span_deg=span, start_deg=start, mode=mode, num_darks=nd, num_flats=nf,
                flats_after=bool(flats_after), exposure_s=exposure, counter_rotation=bool(counter_rotation),
                angles=angles)


# ---------------------------------------------------------------------------
# tomo_scan
# ---------------------------------------------------------------------------
def _burst(det, n: int, stream: str, exposure_s: float):
    """``n`` frames in one hardware-timed burst, collected into ``stream`` (one file)."""
    if n == 0:
        return
    yield from bps.stage(det)
    yield from bps.prepare(det, TriggerInfo(number_of_events=n, livetime=exposure_s), wait=True)
    yield from bps.declare_stream(det, name=stream, collect=True)
    yield from bps.kickoff(det, wait=True)
    yield from bps.complete(det, wait=True)
    yield from bps.collect(det, name=stream)
    yield from bps.unstage(det)


def _projections_step(beamline, angles, exposure_s, experiment):
    det, stage, pstat = beamline.detector, beamline.stage, beamline.potentiostat
    det.expect_angles(angles)
    yield from bps.stage(det)
    yield from bps.prepare(det, TriggerInfo(number_of_events=1, livetime=exposure_s), wait=True)
    for i, a in enumerate(angles):
        yield from bps.mv(stage, float(a))
        yield from bps.trigger_and_read([det, stage], name="primary")
        if (i + 1) % 50 == 0:
            yield from emit_potentiostat_samples(pstat, experiment)
    yield from bps.unstage(det)


def _projections_fly(beamline, angles, exposure_s, experiment):
    det, stage = beamline.detector, beamline.stage
    n = len(angles)
    period = exposure_s + det._acq.deadtime_s
    step = float(angles[1] - angles[0])
    v = abs(step) / period
    acc = stage._acc
    direction = math.copysign(1.0, step)
    # choose the fly start so that frame i's mid-exposure angle is angles[i]
    start = float(angles[0]) + direction * (acc * v / 2 - v * exposure_s / 2)
    info = FlyMotorInfo(start_position=start, end_position=start + direction * v * n * period,
                        time_for_move=n * period)
    det.expect_angles(angles)
    yield from bps.stage(det)
    yield from bps.prepare(stage, info, wait=True)
    yield from bps.prepare(det, TriggerInfo(number_of_events=n, livetime=exposure_s), wait=True)
    yield from bps.declare_stream(det, name="primary", collect=True)
    yield from bps.kickoff(stage, wait=True)
    yield from bps.kickoff(det, wait=True)
    yield from bps.complete(det, wait=True)
    yield from bps.complete(stage, wait=True)
    yield from bps.collect(det, name="primary")
    yield from bps.unstage(det)


def tomo_scan(beamline, *, num_angles: int = 181, span_deg: float = 180.0, start_deg: float = 0.0,
              mode: str = "step", num_darks: int = 10, num_flats: int = 20, flats_after: bool = False,
              exposure_s: float | None = None, counter_rotation: bool = False,
              experiment: Experiment | None = None, md: dict | None = None):
    """One tomography scan: darks, flats, projections (and optional flats after), as one run.

    Parameters
    ----------
    beamline : SimBeamline
        Potentiostat, rotation stage, sample translation, shutter, detector.
    num_angles : int
        Projections (>= 2).
    span_deg : float
        Angular range, degrees (180 or 360 typically; endpoint excluded).
    start_deg : float
        First angle, degrees.
    mode : {'step', 'fly'}
        Step: move, settle, expose, one event per projection. Fly:
        constant-velocity rotation with hardware-timed frames, one burst.
    num_darks, num_flats : int
        Dark (shutter closed) and flat (sample out) frames, taken before the
        projections.
    flats_after : bool
        Also take ``num_flats`` flats after the projections (stream ``flat_after``).
    exposure_s : float, optional
        Exposure per frame, s; default the detector's.
    counter_rotation : bool
        Rotate towards decreasing angles.
    experiment : Experiment, optional
        Counters and uid of the experiment; a new one by default.
    md : dict, optional
        Extra start-document metadata.

    Yields
    ------
    msg : Msg

    Returns
    -------
    str
        The run uid.

    Notes
    -----
    The current is left as it is (the cell keeps evolving during the scan
    if current flows); if the scan fails or is aborted the potentiostat goes
    to open circuit. Per-frame angles (``<det>-rotation_angle_deg``) and cell
    times (``<det>-cell_time_s``) are in the same streams as the frames.
    """
    args = check_scan_args(beamline, num_angles=num_angles, span_deg=span_deg, start_deg=start_deg, mode=mode,
                           num_darks=num_darks, num_flats=num_flats, flats_after=flats_after,
                           exposure_s=exposure_s, counter_rotation=counter_rotation)
    experiment = experiment if experiment is not None else Experiment()
    det, stage, shutter, trans, pstat = (beamline.detector, beamline.stage, beamline.shutter,
                                         beamline.translation, beamline.potentiostat)
    angles = args["angles"]
    start_md = experiment.start_md(
        beamline, "tomo_scan", beamline.binding.current_mA_cm2,
        **beamline.beam_metadata,
        exposure_s=args["exposure_s"],
        angles_deg=[float(angles[0]), float(angles[0] + (angles[1] - angles[0]) * len(angles)), len(angles)],
        span_deg=args["span_deg"], counter_rotation=args["counter_rotation"], scan_mode=args["mode"],
        num_darks=args["num_darks"], num_flats=args["num_flats"], flats_after=args["flats_after"],
        detector_name=det.name, stage_name=stage.name, potentiostat_stream=POTENTIOSTAT_STREAM,
        **(md or {}),
    )
    experiment.scan_index += 1
    state = {"ok": False}

    def body():
        uid = yield from bps.open_run(start_md)
        experiment.run_uids.append(uid)
        yield from bps.mv(shutter, "closed")
        yield from _burst(det, args["num_darks"], "dark", args["exposure_s"])
        yield from bps.mv(shutter, "open")
        if args["num_flats"]:
            yield from bps.mv(trans, trans.out_position_mm)
            yield from _burst(det, args["num_flats"], "flat", args["exposure_s"])
            yield from bps.mv(trans, trans.in_position_mm)
        if args["mode"] == "step":
            yield from _projections_step(beamline, angles, args["exposure_s"], experiment)
        else:
            yield from _projections_fly(beamline, angles, args["exposure_s"], experiment)
        if args["flats_after"] and args["num_flats"]:
            yield from bps.mv(trans, trans.out_position_mm)
            yield from _burst(det, args["num_flats"], "flat_after", args["exposure_s"])
            yield from bps.mv(trans, trans.in_position_mm)
        yield from bps.mv(shutter, "closed")
        yield from emit_potentiostat_samples(pstat, experiment)
        yield from bps.close_run()
        state["ok"] = True
        yield from lockstep_barrier(beamline)
        return uid

    def cleanup():
        yield from bps.unstage(det)  # closes the HDF5 file before the stop document
        if not state["ok"]:
            yield from open_circuit(pstat)

    return (yield from bpp.finalize_wrapper(body(), cleanup()))


# ---------------------------------------------------------------------------
# galvanostatic_step
# ---------------------------------------------------------------------------
@dataclass
class StepResult:
    """What a galvanostatic step ended with."""

    uid: str
    reason: str  # duration | cutoff | compliance | short
    duration_s: float  # cell time the step lasted


def _check_step(beamline, current_mA_cm2, duration_s, cutoff_V, compliance=True):
    j = _finite("current_mA_cm2", current_mA_cm2)
    d = _finite("duration_s", duration_s, positive=True)
    c = None if cutoff_V is None else _finite("cutoff_V", cutoff_V, positive=True)
    pstat = beamline.potentiostat
    if c is not None and c > beamline.binding.compliance_V:
        raise ValueError(f"cutoff_V {c} V exceeds the potentiostat's compliance {beamline.binding.compliance_V} V")
    pstat.check_current(j, compliance=compliance)
    return j, d, c


def galvanostatic_step(beamline, current_mA_cm2: float, duration_s: float, *, cutoff_V: float | None = None,
                       open_circuit_after: bool = True, beyond_compliance: str = "raise",
                       experiment: Experiment | None = None, md: dict | None = None):
    """Hold a current density for a duration, recording the voltage, as one run.

    Parameters
    ----------
    beamline : SimBeamline
    current_mA_cm2 : float
        Current density, mA/cm2 (positive strips the top electrode; 0 holds
        zero current galvanostatically).
    duration_s : float
        Hold duration, s of cell time.
    cutoff_V : float, optional
        Protocol cut-off, V: the step ends when ``|V|`` reaches it.
    open_circuit_after : bool
        Go to open circuit at the end (``False`` keeps the current on for a
        scan taken while current flows; a cut-off or short still ends at
        open circuit).
    beyond_compliance : {'raise', 'end_step'}
        What to do when the cell, in its state when the step starts, cannot
        take the current within the compliance voltage (a voided electrode):
        ``raise`` refuses before the first message; ``end_step`` (what the
        cycling protocols use mid-experiment) records the step as a run that
        ends at once with reason ``compliance``, as a real potentiostat trips.
    experiment : Experiment, optional
    md : dict, optional

    Yields
    ------
    msg : Msg

    Returns
    -------
    StepResult
        Run uid, why the step ended (``duration``, ``cutoff``,
        ``compliance`` or ``short``), and its cell-time length.

    Notes
    -----
    One ``potentiostat`` event per sample (every ``sample_period_s`` of cell
    time). A short is recognised from the voltage record (``VoltageCollapse``).
    The potentiostat is at open circuit after any failure or abort.
    """
    if beyond_compliance not in ("raise", "end_step"):
        raise ValueError(f"beyond_compliance must be 'raise' or 'end_step', got {beyond_compliance!r}")
    j, duration, cutoff = _check_step(beamline, current_mA_cm2, duration_s, cutoff_V,
                                      compliance=beyond_compliance == "raise")
    experiment = experiment if experiment is not None else Experiment()
    pstat, binding = beamline.potentiostat, beamline.binding
    start_md = experiment.start_md(beamline, "galvanostatic_step", j, duration_s=duration,
                                   cutoff_V=cutoff, potentiostat_stream=POTENTIOSTAT_STREAM, **(md or {}))
    experiment.step_index += 1
    state = {"ok": False}

    def body():
        uid = yield from bps.open_run(start_md)
        experiment.run_uids.append(uid)
        yield from bps.abs_set(pstat.cutoff_V, math.nan if cutoff is None else cutoff, wait=True)
        t0 = yield from bps.rd(pstat.cell_time_s)
        reason, elapsed = "duration", 0.0
        try:
            pstat.check_current(j)
        except ValueError:  # only reachable with beyond_compliance="end_step": the potentiostat trips at once
            reason, elapsed = "compliance", duration
            experiment.cutoff = True
        else:
            yield from bps.abs_set(pstat, j, wait=True)
        while elapsed < duration - 1e-9:
            h = min(binding.sample_period_s, duration - elapsed)
            yield from bps.mv(pstat.hold, h)
            elapsed += h
            yield from emit_potentiostat_samples(pstat, experiment)
            limit = yield from bps.rd(pstat.limit_reason)
            if limit:
                reason = limit
                experiment.cutoff = True
                break
            if experiment.shorted:
                reason = "short"
                break
        if open_circuit_after or reason != "duration":
            yield from open_circuit(pstat)
            yield from emit_potentiostat_samples(pstat, experiment)  # the open-circuit sample
        t1 = yield from bps.rd(pstat.cell_time_s)
        yield from bps.close_run(exit_status="success", reason=reason)
        state["ok"] = True
        yield from lockstep_barrier(beamline)
        return StepResult(uid, reason, float(t1 - t0))

    def cleanup():
        if not state["ok"]:
            yield from open_circuit(pstat)

    return (yield from bpp.finalize_wrapper(body(), cleanup()))


# ---------------------------------------------------------------------------
# cycling
# ---------------------------------------------------------------------------
def _half_cycle(beamline, experiment, j, half_cycle_s, style, scan_interval_s, scan_kw, cutoff_V, stop_check=None):
    """One half cycle (both styles); returns the reason it ended.

    ``stop_check``, a plan returning a reason string or None, is read after
    every scan of the flowing style, so an alarm can end a long half cycle
    between its scans rather than at its end.
    """
    pstat = beamline.potentiostat
    experiment.half_cycle_index += 1
    if style == "paused":
        res = yield from galvanostatic_step(beamline, j, half_cycle_s, cutoff_V=cutoff_V, open_circuit_after=True,
                                            beyond_compliance="end_step", experiment=experiment)
        yield from tomo_scan(beamline, experiment=experiment, **scan_kw)
        return res.reason
    remaining = half_cycle_s
    reason = "duration"
    while remaining > 1e-9:
        seg = min(scan_interval_s, remaining)
        res = yield from galvanostatic_step(beamline, j, seg, cutoff_V=cutoff_V, open_circuit_after=False,
                                            beyond_compliance="end_step", experiment=experiment)
        remaining -= res.duration_s
        if res.reason != "duration":
            reason = res.reason
            yield from tomo_scan(beamline, experiment=experiment, **scan_kw)
            break
        t0 = yield from bps.rd(pstat.cell_time_s)
        yield from tomo_scan(beamline, experiment=experiment, **scan_kw)  # current keeps flowing
        t1 = yield from bps.rd(pstat.cell_time_s)
        remaining -= (t1 - t0)
        limit = yield from bps.rd(pstat.limit_reason)
        if experiment.shorted or limit:
            reason = "short" if experiment.shorted else limit
            break
        if stop_check is not None and remaining > 1e-9:
            stop = yield from stop_check()
            if stop:
                reason = stop
                break
    yield from open_circuit(pstat)
    return reason


def _check_cycling(beamline, current_mA_cm2, half_cycle_s, style, scan_interval_s, max_half_cycles, cutoff_V,
                   scan_kw):
    j, half, cutoff = _check_step(beamline, current_mA_cm2, half_cycle_s, cutoff_V)
    beamline.potentiostat.check_current(-j)
    if style not in ("paused", "flowing"):
        raise ValueError(f"style must be 'paused' (current off during scans, Hao-LPS) or 'flowing' (scans while "
                         f"current flows, Lewis-LSPS), got {style!r}")
    interval = None
    if style == "flowing":
        interval = half if scan_interval_s is None else _finite("scan_interval_s", scan_interval_s, positive=True)
    n = _count("max_half_cycles", max_half_cycles, 1)
    scan_kw = dict(scan_kw or {})
    unknown = set(scan_kw) - set(_SCAN_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tomo_scan arguments {sorted(unknown)}; known: {sorted(_SCAN_DEFAULTS)}")
    check_scan_args(beamline, **scan_kw)
    return j, half, cutoff, interval, n, scan_kw


def _with_safe_end(beamline, plan):
    return (yield from bpp.finalize_wrapper(plan, open_circuit(beamline.potentiostat)))


def operando_cycling(beamline, current_mA_cm2: float = 0.15, half_cycle_s: float = 1800.0, *,
                     style: str = "paused", scan_interval_s: float | None = None, max_half_cycles: int = 60,
                     cutoff_V: float | None = 10.0, initial_scan: bool = True, scan_kw: dict | None = None,
                     experiment: Experiment | None = None, md: dict | None = None):
    """Plating/stripping half cycles with tomography scans, until a short or cut-off.

    Parameters
    ----------
    beamline : SimBeamline
    current_mA_cm2 : float
        Current density magnitude, mA/cm2; half cycles alternate its sign,
        starting positive (stripping the top electrode).
    half_cycle_s : float
        Half-cycle length, s of cell time.
    style : {'paused', 'flowing'}
        ``paused`` (Hao-LPS): current off during each scan, taken at the end
        of each half cycle. ``flowing`` (Lewis-LSPS): scans every
        ``scan_interval_s`` while the current keeps flowing (scan time counts
        towards the half cycle).
    scan_interval_s : float, optional
        Cell time between scans in the flowing style; default one half cycle.
    max_half_cycles : int
        Upper bound on half cycles.
    cutoff_V : float, optional
        Protocol cut-off, V (ends the experiment).
    initial_scan : bool
        Scan the pristine cell first.
    scan_kw : dict, optional
        ``tomo_scan`` arguments.
    experiment : Experiment, optional
    md : dict, optional
        Extra metadata for every start document.

    Yields
    ------
    msg : Msg

    Returns
    -------
    dict
        ``experiment_uid``, ``stop_reason`` (``short``, ``cutoff``,
        ``compliance`` or ``max_half_cycles``), ``scans``, ``steps``,
        ``half_cycles``.
    """
    j, half, cutoff, interval, n, scan_kw = _check_cycling(beamline, current_mA_cm2, half_cycle_s, style,
                                                           scan_interval_s, max_half_cycles, cutoff_V, scan_kw)
    experiment = experiment if experiment is not None else Experiment()
    experiment.md.update({"protocol": {"plan": "operando_cycling", "style": style, "current_mA_cm2": j,
                                       "half_cycle_s": half, "scan_interval_s": interval, "cutoff_V": cutoff}},
                         **(md or {}))

    def body():
        if initial_scan:
            yield from open_circuit(beamline.potentiostat)
            yield from tomo_scan(beamline, experiment=experiment, **scan_kw)
        reason = "max_half_cycles"
        for k in range(n):
            sign = 1.0 if k % 2 == 0 else -1.0
            r = yield from _half_cycle(beamline, experiment, sign * j, half, style, interval, scan_kw, cutoff)
            if r != "duration":
                reason = r
                break
        return _summary(experiment, reason)

    return (yield from _with_safe_end(beamline, body()))


def _summary(experiment, reason):
    return {"experiment_uid": experiment.uid, "stop_reason": reason, "scans": experiment.scan_index,
            "steps": experiment.step_index, "half_cycles": experiment.half_cycle_index}


# ---------------------------------------------------------------------------
# current_ramp
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RampPreset:
    """A stepped-current protocol.

    Attributes
    ----------
    currents_mA_cm2 : tuple of float
        Current-density steps, mA/cm2.
    half_cycle_s : float
        Plating or stripping half-cycle length, s.
    cycles_per_step : int
        Full cycles (two half cycles) per current step.
    cutoff_V : float or None
        Protocol cut-off; reaching it moves the protocol to the next current.
    source : str
    """

    currents_mA_cm2: tuple
    half_cycle_s: float
    cycles_per_step: int
    cutoff_V: float | None
    source: str


def _lab_ccd_currents():
    c = list(np.round(np.arange(0.1, 4.0 + 1e-9, 0.25), 4))
    if c[-1] < 4.0:
        c.append(4.0)
    return tuple(float(x) for x in c)


#: Named stepped-current protocols (SCIENCE.md section 2).
RAMP_PRESETS = {
    # Dixit-LPS in situ: 30-min plating/stripping steps from 0.04 to 1.2 mA/cm2, 10 V cut-off (the paper gives
    # the range, not every step: this ladder is an assumption within it)
    "dixit_lps_insitu": RampPreset((0.04, 0.08, 0.12, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2), 1800.0, 1, 10.0,
                                   "Dixit-LPS in situ protocol"),
    # Dixit-LPS lab CCD test: 0.1 mA/cm2 up by 0.25 to 4 mA/cm2, 1-h half cycles, 2 cycles per step
    "lab_ccd": RampPreset(_lab_ccd_currents(), 3600.0, 2, 10.0, "Dixit-LPS lab critical-current-density ramp"),
    # Dixit-LLZO: low-current cycling at 6 then 25 uA/cm2 (half-cycle length and count assumed)
    "llzo_low_current": RampPreset((0.006, 0.025), 3600.0, 5, 10.0, "Dixit-LLZO low-current protocol"),
}


def current_ramp(beamline, preset: str = "dixit_lps_insitu", *, currents_mA_cm2=None,
                 half_cycle_s: float | None = None, cycles_per_step: int | None = None, cutoff_V=...,
                 style: str = "paused", scan_interval_s: float | None = None, initial_scan: bool = True,
                 scan_kw: dict | None = None, experiment: Experiment | None = None, md: dict | None = None):
    """Stepped current densities with plating/stripping half cycles and a scan after each.

    Each current step runs ``cycles_per_step`` cycles (plating then
    stripping half cycles); hitting the cut-off moves the protocol to the
    next current; the first short ends it.

    Parameters
    ----------
    beamline : SimBeamline
    preset : str
        A key of :data:`RAMP_PRESETS` (``dixit_lps_insitu`` by default: 0.04 to
        1.2 mA/cm2, 30-min steps, 10 V cut-off; ``lab_ccd``;
        ``llzo_low_current``). Explicit arguments override it.
    currents_mA_cm2 : sequence of float, optional
    half_cycle_s : float, optional
    cycles_per_step : int, optional
    cutoff_V : float or None, optional
    style, scan_interval_s, initial_scan, scan_kw, experiment, md
        As in :func:`operando_cycling`.

    Yields
    ------
    msg : Msg

    Returns
    -------
    dict
        As :func:`operando_cycling`, plus ``last_current_mA_cm2`` and
        ``cutoff_steps`` (currents at which the cut-off was hit).
    """
    if preset not in RAMP_PRESETS:
        raise ValueError(f"unknown current-ramp preset {preset!r}; choose one of {sorted(RAMP_PRESETS)}")
    p = RAMP_PRESETS[preset]
    currents = tuple(p.currents_mA_cm2 if currents_mA_cm2 is None else currents_mA_cm2)
    if not currents:
        raise ValueError("currents_mA_cm2 is empty")
    currents = tuple(_finite("current step", c, positive=True) for c in currents)
    half = p.half_cycle_s if half_cycle_s is None else half_cycle_s
    cycles = _count("cycles_per_step", p.cycles_per_step if cycles_per_step is None else cycles_per_step, 1)
    cutoff = p.cutoff_V if cutoff_V is ... else cutoff_V
    checked = [_check_cycling(beamline, c, half, style, scan_interval_s, 2 * cycles, cutoff, scan_kw)
               for c in currents]
    _, half, cutoff, interval, _, scan_kw = checked[0]
    experiment = experiment if experiment is not None else Experiment()
    experiment.md.update({"protocol": {"plan": "current_ramp", "preset": preset, "currents_mA_cm2": list(currents),
                                       "half_cycle_s": half, "cycles_per_step": cycles, "cutoff_V": cutoff,
                                       "style": style}}, **(md or {}))

    def body():
        if initial_scan:
            yield from open_circuit(beamline.potentiostat)
            yield from tomo_scan(beamline, experiment=experiment, **scan_kw)
        reason, cutoff_steps, last = "end_of_ramp", [], currents[0]
        for c in currents:
            last = c
            for k in range(2 * cycles):
                sign = 1.0 if k % 2 == 0 else -1.0
                r = yield from _half_cycle(beamline, experiment, sign * c, half, style, interval, scan_kw, cutoff)
                if r == "short":
                    out = _summary(experiment, "short")
                    out.update(last_current_mA_cm2=c, cutoff_steps=cutoff_steps)
                    return out
                if r in ("cutoff", "compliance"):  # the protocol moves on to the next current
                    cutoff_steps.append(c)
                    break
        out = _summary(experiment, reason)
        out.update(last_current_mA_cm2=last, cutoff_steps=cutoff_steps)
        return out

    return (yield from _with_safe_end(beamline, body()))


# ---------------------------------------------------------------------------
# cycle_until_failure
# ---------------------------------------------------------------------------
def cycle_until_failure(beamline, current_mA_cm2: float = 0.15, half_cycle_s: float = 1800.0, *,
                        alarm=None, stop_levels=("imminent", "failed"), style: str = "paused",
                        scan_interval_s: float | None = None, max_half_cycles: int = 200,
                        cutoff_V: float | None = 10.0, initial_scan: bool = True, scan_kw: dict | None = None,
                        final_scan_kw: dict | None = None, experiment: Experiment | None = None,
                        md: dict | None = None):
    """Cycle until the cell fails or the alarm asks to stop; then one final scan at open circuit.

    The alarm (an ophyd Signal the live monitor writes, ``beamline.alarm``
    by default) is read between runs: a suspender could pause the plan but
    not end it. When its level is in ``stop_levels`` the potentiostat goes to
    open circuit, one final scan is taken (``final_scan_kw``, default the
    regular scan) and the plan ends cleanly.

    Parameters
    ----------
    beamline : SimBeamline
    current_mA_cm2, half_cycle_s, style, scan_interval_s, max_half_cycles, cutoff_V, initial_scan, scan_kw
        As in :func:`operando_cycling`.
    alarm : ophyd Signal, optional
        Alarm level signal (``ok``, ``watch``, ``imminent``, ``failed``).
    stop_levels : sequence of str
        Levels that stop the experiment.
    final_scan_kw : dict, optional
        ``tomo_scan`` arguments of the final scan (for example more angles).
    experiment, md
        As in :func:`operando_cycling`.

    Yields
    ------
    msg : Msg

    Returns
    -------
    dict
        As :func:`operando_cycling`; ``stop_reason`` is ``alarm:<level>`` when
        the alarm stopped it.
    """
    j, half, cutoff, interval, n, scan_kw = _check_cycling(beamline, current_mA_cm2, half_cycle_s, style,
                                                           scan_interval_s, max_half_cycles, cutoff_V, scan_kw)
    alarm = beamline.alarm if alarm is None else alarm
    if not hasattr(alarm, "get"):
        raise ValueError(f"alarm must be a readable Signal, got {type(alarm).__name__}")
    stop_levels = tuple(stop_levels)
    final_kw = dict(scan_kw if final_scan_kw is None else final_scan_kw)
    check_scan_args(beamline, **final_kw)
    experiment = experiment if experiment is not None else Experiment()
    experiment.md.update({"protocol": {"plan": "cycle_until_failure", "style": style, "current_mA_cm2": j,
                                       "half_cycle_s": half, "scan_interval_s": interval, "cutoff_V": cutoff,
                                       "stop_levels": list(stop_levels)}}, **(md or {}))

    def alarm_level():
        level = yield from bps.rd(alarm)
        return str(level)

    def alarm_stop():
        level = yield from alarm_level()
        return f"alarm:{level}" if level in stop_levels else None

    def body():
        if initial_scan:
            yield from open_circuit(beamline.potentiostat)
            yield from tomo_scan(beamline, experiment=experiment, **scan_kw)
        reason = "max_half_cycles"
        for k in range(n):
            level = yield from alarm_level()
            if level in stop_levels:
                reason = f"alarm:{level}"
                yield from open_circuit(beamline.potentiostat)
                yield from tomo_scan(beamline, experiment=experiment, md={"final_scan": True}, **final_kw)
                break
            sign = 1.0 if k % 2 == 0 else -1.0
            r = yield from _half_cycle(beamline, experiment, sign * j, half, style, interval, scan_kw, cutoff,
                                       stop_check=alarm_stop)
            if r.startswith("alarm:"):
                reason = r  # stopped between the scans of a flowing half cycle: current off, final scan
                yield from open_circuit(beamline.potentiostat)
                yield from tomo_scan(beamline, experiment=experiment, md={"final_scan": True}, **final_kw)
                break
            if r != "duration":
                reason = r
                break
        return _summary(experiment, reason)

    return (yield from _with_safe_end(beamline, body()))
