"""The full-loop demo: a simulated operando experiment with the live monitor on the embedded Tiled.

``run_live_demo`` wires every part of DESIGN.md's data flow on one machine:

- an embedded Tiled server (:class:`~sscell_live.storage.TiledServer`,
  catalog in ``<out>/tiled``, serving the detector's frames in
  ``<out>/frames`` by reference) and a RunEngine with a ``TiledWriter``
  subscribed: raw runs go to Tiled;
- a :class:`~sscell_live.devices.SimBeamline` bound to a digital twin;
- the live :class:`~sscell_live.monitor.Monitor` subscribed to the same
  RunEngine, publishing its alarm level on ``beamline.alarm`` (and its
  analysis runs to Tiled through a second ``TiledWriter`` when the monitor
  accepts ``emit``);
- ``cycle_until_failure`` on a cell that fails: it stops on the alarm
  (``imminent``) with a final scan, or at the short / cut-off.

A line is printed per scan as the monitor finishes it (from the monitor's
history, never from the twin), then where the experiment is stored and how
to replay it. The server is stopped on exit, Ctrl-C included.

The old twin-only demo (no devices, no monitor) is
:func:`sscell_live.cli.run_demo`.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sscell_live.dashboard.data import SCAN_COLUMNS, scan_table

__all__ = ["LIVE_PROTOCOLS", "LiveDemoResult", "add_arguments", "command", "format_scan_line", "run_live_demo",
           "scan_header"]

#: chemistry -> (default twin seed, cycle_until_failure arguments) of a cell that fails (mini twin, 96 wide).
#: lps: Hao-LPS, paused scans after 30-min half cycles at 0.15 mA/cm2 (cracks; seed 3 shorts at 14.5 h of
#: cell time, the alarm says imminent near 9.7 h). lsps: Lewis-LSPS, 1 mA/cm2, 5-h half cycles, scans every
#: 30 min while current flows (contact loss; seed 0 reaches the 4 V cut-off at 9.5 h). llzo: 35 uA/cm2, above
#: the twin's CCD (~26 uA/cm2), scans every 15 min while current flows (a filament; seed 3 shorts at 4 h).
LIVE_PROTOCOLS = {
    "lps": (3, {"current_mA_cm2": 0.15, "half_cycle_s": 1800.0, "style": "paused", "cutoff_V": 10.0}),
    "lsps": (0, {"current_mA_cm2": 1.0, "half_cycle_s": 5 * 3600.0, "style": "flowing", "scan_interval_s": 1800.0,
                 "cutoff_V": 4.0}),
    "llzo": (3, {"current_mA_cm2": 0.035, "half_cycle_s": 3600.0, "style": "flowing", "scan_interval_s": 900.0,
                 "cutoff_V": 10.0}),
}

_FORMATS = {  # column -> (header, width, format)
    "scan_index": ("scan", 4, "d"),
    "cell_time_h": ("t_h", 7, ".3f"),
    "current_mA_cm2": ("j_mA/cm2", 9, ".4f"),
    "voltage_V": ("V", 8, ".4f"),
    "contact_fraction_top": ("contact_top", 11, ".4f"),
    "contact_fraction_bottom": ("contact_bot", 11, ".4f"),
    "void_volume_um3": ("void_um3", 10, ".1f"),
    "crack_volume_um3": ("crack_um3", 10, ".1f"),
    "crack_penetration_fraction": ("crack_pen", 9, ".4f"),
}


def scan_header() -> str:
    """Header of the per-scan lines."""
    return " ".join(f"{_FORMATS[c][0]:>{_FORMATS[c][1]}}" for c in SCAN_COLUMNS) + "  alarm"


def format_scan_line(row, level: str | None) -> str:
    """One printed line: the :func:`~sscell_live.dashboard.data.scan_table` row and the alarm level."""
    parts = []
    for c in SCAN_COLUMNS:
        _, width, fmt = _FORMATS[c]
        v = float(row[c])
        if not math.isfinite(v):
            parts.append(f"{'nan':>{width}}")
        else:
            parts.append(f"{int(v) if fmt == 'd' else v:>{width}{fmt}}")
    return " ".join(parts) + f"  {level or '-'}"


@dataclass
class LiveDemoResult:
    """What a live demo did and where it is stored.

    Attributes
    ----------
    experiment_uid : str
    stop_reason : str
        ``cycle_until_failure``'s (``alarm:imminent``, ``short``, ``cutoff``,
        ...), or ``interrupted``.
    tiled_uri, api_key : str
        The server's address while it ran and its API key (also in
        ``<tiled_dir>/config.yml``).
    tiled_dir, frames_dir : Path
    raw_run_uids : list of str
        Start uids of every run the RunEngine produced.
    scans : DataFrame
        The printed table (:func:`~sscell_live.dashboard.data.scan_table`)
        plus ``run_uid`` and ``alarm_level``.
    statuses : list
        The monitor's :class:`~sscell_live.monitor.ScanStatus` of every scan.
    lines : list of str
        Every line printed.
    wall_s : float
        Wall time of the experiment (server start to monitor idle), s.
    emitted : bool
        Whether the monitor wrote analysis runs (it accepted ``emit``).
    history : DataFrame
        The monitor's history of the experiment at the end.
    assessment : sscell_live.alarm.Assessment or None
        The monitor's latest assessment.
    """

    experiment_uid: str
    stop_reason: str
    tiled_uri: str
    api_key: str
    tiled_dir: Path
    frames_dir: Path
    raw_run_uids: list
    scans: pd.DataFrame
    statuses: list
    lines: list = field(default_factory=list)
    wall_s: float = float("nan")
    emitted: bool = False
    history: pd.DataFrame | None = None
    assessment: object = None


def _existing_api_key(tiled_dir: Path) -> str | None:
    """The API key of a previous demo's config, so that a re-run keeps the printed key valid."""
    cfg = tiled_dir / "config.yml"
    if not cfg.is_file():
        return None
    m = re.search(r'single_user_api_key:\s*"([^"]+)"', cfg.read_text())
    return m.group(1) if m else None


class _ScanPrinter:
    """Prints a line per analysed scan from a thread that polls the monitor (never from the worker)."""

    def __init__(self, monitor, say, period_s: float = 0.25):
        self.monitor, self.say, self.period_s = monitor, say, period_s
        self.done: set = set()
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._last_error = None
        self._thread = threading.Thread(target=self._loop, name="sscell-demo-printer", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def poll(self):
        statuses = {s.run_uid: s for s in self.monitor.statuses}
        for s in statuses.values():
            if s.state in ("skipped", "error") and s.run_uid not in self.done:
                self.done.add(s.run_uid)
                self.say(f"{s.scan_index:>4} analysis {s.state}: {s.error}")
        hist = self.monitor.history
        table = scan_table(hist)
        if not len(table):
            return
        uids = hist[hist["row_kind"] == "scan"].sort_values("scan_index", kind="stable")["run_uid"].to_list()
        for uid, (_, row) in zip(uids, table.iterrows()):
            st = statuses.get(uid)
            # a scan row exists before its assessment: print once the status is final
            if uid in self.done or st is None or st.state != "ok":
                continue
            self.done.add(uid)
            self.rows.append({**row.to_dict(), "run_uid": uid, "alarm_level": st.level})
            self.say(format_scan_line(row, st.level))

    def _loop(self):
        while not self._stop.wait(self.period_s):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - printing must never end the experiment
                msg = f"(printer: {type(exc).__name__}: {exc})"
                if msg != self._last_error:  # once, not every poll
                    self._last_error = msg
                    self.say(msg)

    def stop(self):
        self._stop.set()
        self._thread.join(5.0)
        self.poll()  # whatever finished since the last poll


def _start_server(server, boot: dict) -> None:
    """Start the Tiled server (in a helper thread); an error is handed back in ``boot['error']``."""
    try:
        server.start()
    except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
        boot["error"] = exc


class _PauseOnSigint:
    """RunEngine context manager: the first Ctrl-C pauses at once (bluesky's default waits for a checkpoint).

    The signal handler only sets an event; a helper thread asks the RunEngine
    to pause (as bluesky's own ``SigintHandler`` does), then ``RE(plan)``
    raises ``RunEngineInterrupted`` and :func:`run_live_demo` aborts the run,
    which runs the plan's cleanup (potentiostat to open circuit).
    """

    def __init__(self, RE):
        self.RE = RE
        self._event = threading.Event()
        self._done = False
        self._old = None

    def _watch(self):
        while True:
            self._event.wait()
            if self._done:
                return
            self._event.clear()
            with contextlib.suppress(Exception):  # not running any more: nothing to pause
                self.RE.request_pause(defer=False)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, lambda signum, frame: self._event.set())
            threading.Thread(target=self._watch, name="sscell-demo-sigint", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done = True
        self._event.set()
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run_live_demo(chemistry: str = "lps", seed: int | None = None, out: Path | str = "runs/demo", *,
                  n_lateral: int = 96, num_angles: int = 60, num_darks: int = 2, num_flats: int = 4,
                  current_mA_cm2: float | None = None, half_cycle_s: float | None = None, max_half_cycles: int = 60,
                  lockstep: bool = True, time_scale: float = math.inf, stop_on_alarm: bool = True,
                  threads: int | None = None, port: int | None = None, serve_after: bool = False, snapshot: bool = True,
                  quiet: bool = False, say=None) -> LiveDemoResult:
    """Run a simulated ``cycle_until_failure`` experiment with the live monitor and the embedded Tiled.

    Parameters
    ----------
    chemistry : str
        ``lps`` (cracks, short), ``lsps`` (contact loss, cut-off) or
        ``llzo`` (filament, short); protocol from :data:`LIVE_PROTOCOLS`.
    seed : int, optional
        Twin seed (default the preset's: a cell that fails in a few hours of cell time).
    out : path
        Output folder: ``<out>/tiled`` (catalog, config with the API key,
        server log), ``<out>/frames`` (detector HDF5), ``<out>/slabs``
        (reconstructed interface slabs of the analysis runs),
        ``<out>/dashboard.png``.
    n_lateral : int
        Mini-cell width, voxels of 1.5 um (detector columns).
    num_angles, num_darks, num_flats : int
        Frames of each tomography scan.
    current_mA_cm2, half_cycle_s : float, optional
        Override the preset's current density (mA/cm2) and half-cycle length (s).
    max_half_cycles : int
        Upper bound on half cycles.
    lockstep : bool
        The plan waits for the monitor at each run boundary (deterministic:
        every scan is assessed before the plan reads the alarm). False is the
        live mode: acquisition never waits, paced by ``time_scale``.
    time_scale : float
        Cell seconds per wall second when not in lockstep (``inf``: as fast
        as the machine goes; the monitor may then fall behind and drop scans).
    stop_on_alarm : bool
        Stop on ``imminent``/``failed`` (False: only on ``failed``, i.e. run
        to the failure itself).
    threads : int, optional
        Reconstruction threads (default all cores).
    port : int, optional
        Tiled port (default a free one).
    serve_after : bool
        Keep the server running after the experiment until Ctrl-C (to replay it).
    snapshot : bool
        Write the dashboard to ``<out>/dashboard.png`` at the end (Qt offscreen
        if no display).
    quiet : bool
        Print nothing.
    say : callable, optional
        Where lines go (default ``print`` with flush).

    Returns
    -------
    LiveDemoResult

    Raises
    ------
    ValueError
        Unknown chemistry or bad protocol settings (raised before anything starts).
    """
    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted

    from sscell_live.devices import SimBeamline
    from sscell_live.monitor import AnalysisOptions, Monitor
    from sscell_live.plans import Experiment, cycle_until_failure
    from sscell_live.storage import TiledServer

    if chemistry not in LIVE_PROTOCOLS:
        raise ValueError(f"unknown chemistry {chemistry!r}; choose one of {sorted(LIVE_PROTOCOLS)}")
    default_seed, proto = LIVE_PROTOCOLS[chemistry]
    seed = default_seed if seed is None else int(seed)
    proto = dict(proto)
    if current_mA_cm2 is not None:
        proto["current_mA_cm2"] = float(current_mA_cm2)
    if half_cycle_s is not None:
        proto["half_cycle_s"] = float(half_cycle_s)
    if say is None:
        say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    lines: list[str] = []

    def emit_line(text: str):
        lines.append(text)
        say(text)

    out = Path(out).resolve()
    tiled_dir, frames_dir, slabs_dir = out / "tiled", out / "frames", out / "slabs"
    for d in (frames_dir, slabs_dir):
        d.mkdir(parents=True, exist_ok=True)
    scan_kw = {"num_angles": int(num_angles), "num_darks": int(num_darks), "num_flats": int(num_flats)}

    t0 = time.perf_counter()
    server = TiledServer(tiled_dir, readable_storage=[frames_dir, slabs_dir], api_key=_existing_api_key(tiled_dir),
                         port=port)
    # the server boots (~10 s, another process) while this one builds the twin and the devices
    boot: dict = {}
    starter = threading.Thread(target=_start_server, args=(server, boot), name="sscell-demo-tiled", daemon=True)
    emit_line(f"starting Tiled server in {tiled_dir} ...")
    starter.start()
    monitor = printer = None
    try:
        RE = RunEngine({}, call_returns_result=True, context_managers=[_PauseOnSigint])  # first: devices use its loop
        bl = SimBeamline.create(chemistry, "mini", seed, n_lateral=n_lateral, write_directory=frames_dir,
                                time_scale=math.inf if lockstep else time_scale, lockstep=lockstep)
        raw_uids: list[str] = []
        RE.subscribe(lambda name, doc: raw_uids.append(doc["uid"]) if name == "start" else None)
        experiment = Experiment()
        plan_kw = {k: v for k, v in proto.items() if k != "current_mA_cm2"}
        stop_levels = ("imminent", "failed") if stop_on_alarm else ("failed",)
        plan = cycle_until_failure(bl, proto["current_mA_cm2"], max_half_cycles=max_half_cycles,
                                   stop_levels=stop_levels, scan_kw=scan_kw, experiment=experiment, **plan_kw)
        emit_line(f"sscell_live live demo: {chemistry} mini cell {bl.twin.geometry.shape} voxels of "
                  f"{bl.twin.geometry.voxel_size_um} um, seed {seed}; {num_angles} angles per scan")
        emit_line("protocol: cycle_until_failure " + ", ".join(f"{k}={v}" for k, v in proto.items())
                  + f"; {'lockstep' if lockstep else f'live, time scale {time_scale}'}")
        starter.join()
        if "error" in boot:
            raise boot["error"]
        RE.subscribe(server.writer())
        kw = {"options": AnalysisOptions(threads=threads)}
        accepts = inspect.signature(Monitor).parameters  # analysis-run output arrived with a later monitor
        emitted = "emit" in accepts
        if emitted:
            kw["emit"] = server.writer()  # its own writer: the worker thread calls it
        if emitted and "slab_directory" in accepts:
            kw["slab_directory"] = slabs_dir
        monitor = Monitor(alarm=bl.alarm, experiment_uid=experiment.uid, **kw)
        if lockstep:
            bl.binding.add_lockstep_waiter(monitor.wait_idle)
        RE.subscribe(monitor)
        emit_line(f"Tiled at {server.uri}; experiment {experiment.uid}")
        emit_line(scan_header())
        printer = _ScanPrinter(monitor, emit_line).start()
        try:
            stop_reason = RE(plan).plan_result["stop_reason"]
            monitor.wait_idle()
        except (KeyboardInterrupt, RunEngineInterrupted):
            # bluesky pauses on Ctrl-C; aborting runs the plan's cleanup (potentiostat to open circuit)
            stop_reason = "interrupted"
            emit_line("interrupted: aborting the run (potentiostat to open circuit)")
            if RE.state != "idle":
                RE.abort("interrupted by the user")
            monitor.wait_idle(10.0)
        printer.stop()
        wall = time.perf_counter() - t0
        hist = monitor.history
        statuses = monitor.statuses
        n_ok = sum(s.state == "ok" for s in statuses)
        emit_line(f"stopped: {stop_reason} after {experiment.half_cycle_index} half cycles, "
                  f"{bl.binding.twin.time_s / 3600:.2f} h of cell time; {n_ok}/{len(statuses)} scans analysed, "
                  f"{monitor.dropped} dropped; {wall:.0f} s wall")
        a = monitor.latest_assessment
        if a is not None:
            emit_line(f"alarm: {a.level}" + "".join(f"\n  - {r}" for r in a.reasons))
        if snapshot:
            png = out / "dashboard.png"
            try:
                from sscell_live.dashboard import snapshot_png

                snapshot_png(hist, a, png)
                emit_line(f"dashboard snapshot: {png}")
            except Exception as exc:  # noqa: BLE001 - a missing display stack must not lose the report
                emit_line(f"(no dashboard snapshot: {type(exc).__name__}: {exc})")
        emit_line(f"stored in Tiled: {server.uri} (catalog {tiled_dir / 'catalog.db'}), frames in {frames_dir}")
        emit_line(f"  experiment uid: {experiment.uid} ({len(raw_uids)} raw runs"
                  + (", analysis runs written by the monitor" if emitted else "") + ")")
        emit_line(f"  API key: {server.api_key} (also in {server.config_path})")
        emit_line(f"  serve it again: tiled serve config {server.config_path}")
        emit_line(f"  replay: TILED_API_KEY={server.api_key} sscell-live replay {server.uri} {experiment.uid}")
        if serve_after and stop_reason != "interrupted":
            emit_line("serving until Ctrl-C ...")
            try:
                while server.running:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return LiveDemoResult(experiment.uid, stop_reason, server.uri, server.api_key, tiled_dir, frames_dir,
                              list(raw_uids), pd.DataFrame(printer.rows), statuses, lines, wall, emitted, hist, a)
    finally:
        if printer is not None:
            printer._stop.set()
        if monitor is not None:
            monitor.close(timeout=30.0, drain=False)
        starter.join(120.0)  # never stop a server half-started: its process would outlive us
        server.stop()


# ---------------------------------------------------------------------------
# command line (``sscell-live demo``): cli.py adds the parser with add_arguments and calls command
# ---------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """Add the ``sscell-live demo`` options to an argparse parser (``parser.set_defaults(func=command)``)."""
    parser.add_argument("--chemistry", default="lps", choices=sorted(LIVE_PROTOCOLS),
                        help="SE preset: lps (cracks, short), lsps (contact loss, cut-off), llzo (filament, short); "
                             "default lps")
    parser.add_argument("--seed", type=int, default=None,
                        help="twin seed (default the preset's: lps 3, lsps 0, llzo 3; twin-only: 3)")
    parser.add_argument("--n-lateral", type=int, default=96, help="cell width in voxels of 1.5 um (default 96)")
    parser.add_argument("--out", default="runs/demo",
                        help="output folder: tiled/ (catalog, config, API key), frames/, slabs/, dashboard.png "
                             "(default runs/demo)")
    parser.add_argument("--angles", type=int, default=60, help="projections per tomography scan (default 60)")
    parser.add_argument("--current", type=float, default=None, help="current density, mA/cm2 (default the preset's)")
    parser.add_argument("--half-cycle-s", type=float, default=None, help="half-cycle length, s (default the preset's)")
    parser.add_argument("--max-half-cycles", type=int, default=60, help="upper bound on half cycles (default 60)")
    parser.add_argument("--live", action="store_true",
                        help="acquisition never waits for the monitor (default: lockstep, every scan is assessed "
                             "before the plan reads the alarm)")
    parser.add_argument("--time-scale", type=float, default=math.inf,
                        help="with --live: cell seconds per wall second (default inf: as fast as possible)")
    parser.add_argument("--to-failure", action="store_true",
                        help="do not stop at the 'imminent' alarm: cycle until the cell fails")
    parser.add_argument("--threads", type=int, default=None, help="reconstruction threads (default all cores)")
    parser.add_argument("--port", type=int, default=None, help="Tiled server port (default a free one)")
    parser.add_argument("--serve", action="store_true",
                        help="keep the Tiled server running after the experiment until Ctrl-C (to replay it)")
    parser.add_argument("--no-snapshot", action="store_true", help="do not write <out>/dashboard.png")
    parser.add_argument("--twin-only", action="store_true",
                        help="the twin-only demo: no devices, monitor or Tiled; one HDF5 file with the twin's truth")
    parser.add_argument("--scan-angles", type=int, default=181,
                        help="with --twin-only: projections of the final simulated scan, 0 to skip (default 181)")


def command(args) -> int:
    """Run ``sscell-live demo`` from parsed arguments; exit code 0, 2 (bad input) or 130 (Ctrl-C)."""
    import sys

    try:
        if args.twin_only:
            from sscell_live.cli import run_demo

            run_demo(args.chemistry, 3 if args.seed is None else args.seed, args.n_lateral, args.out, args.scan_angles)
            return 0
        result = run_live_demo(args.chemistry, args.seed, args.out, n_lateral=args.n_lateral, num_angles=args.angles,
                               current_mA_cm2=args.current, half_cycle_s=args.half_cycle_s,
                               max_half_cycles=args.max_half_cycles, lockstep=not args.live,
                               time_scale=args.time_scale, stop_on_alarm=not args.to_failure, threads=args.threads,
                               port=args.port, serve_after=args.serve, snapshot=not args.no_snapshot)
    except (ValueError, OSError) as exc:
        print(f"sscell-live demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 130 if result.stop_reason == "interrupted" else 0
