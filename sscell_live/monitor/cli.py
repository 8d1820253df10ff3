"""``sscell-live replay TILED_URI EXPERIMENT_UID``: push an archived experiment through the monitor.

Pulls the experiment's raw runs from the Tiled server, re-synthesises their
documents and analyses every scan with the live monitor (frames read as
Tiled arrays), with a progress bar on stderr. The results are written back
to the same server as new analysis runs (``run_kind`` ``scan_analysis``,
``replay`` in their start documents), unless ``--no-write``. Prints a line
per scan (or one JSON object with ``--json``).
"""

from __future__ import annotations

import json
import math
import os
import sys

__all__ = ["register", "run"]

_LINE_KEYS = ("contact_fraction_top", "contact_fraction_bottom", "void_volume_top_um3", "void_volume_bottom_um3",
              "crack_volume_um3", "crack_penetration_fraction", "li_penetration_fraction")


def _finite_or_none(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def run(args) -> int:
    """Execute the ``replay`` subcommand; returns an exit code (0 ok, 1 a scan failed, 2 bad input)."""
    from .analysis import AnalysisOptions
    from .monitor import Monitor
    from .replay import parse_speed, replay

    say = (lambda *a: None) if args.json else print
    try:
        parse_speed(args.speed)
        from tiled.client import from_uri

        api_key = args.api_key or os.environ.get("TILED_API_KEY")
        client = from_uri(args.tiled_uri, api_key=api_key)
        emit = None
        if not args.no_write:
            from bluesky_tiled_plugins import TiledWriter

            emit = TiledWriter(client, batch_size=100)
        monitor = Monitor(options=AnalysisOptions(threads=args.threads), emit=emit,
                          slab_directory=args.slab_directory, queue_size=args.queue_size)
        try:
            summary = replay(args.tiled_uri, args.experiment_uid, monitor, speed=args.speed, api_key=api_key,
                             progress=not args.no_progress, frames=args.frames)
        finally:
            monitor.close()
    except (ValueError, LookupError, RuntimeError, OSError, TimeoutError) as exc:
        print(f"sscell-live replay: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # tiled/httpx connection and authentication errors
        print(f"sscell-live replay: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    scans = monitor.scans
    statuses = {s.run_uid: s for s in monitor.statuses}
    rows = []
    for _, r in scans.iterrows():
        st = statuses.get(r["run_uid"])
        rows.append({"run_uid": r["run_uid"], "scan_index": int(r["scan_index"]),
                     "analysis_run_uid": monitor.analysis_runs.get(r["run_uid"]),
                     "alarm_level": None if st is None else st.level,
                     **{k: _finite_or_none(v) for k, v in r.items()
                        if k not in ("run_uid", "scan_index", "row_kind")}})
    failed = [{"run_uid": s.run_uid, "scan_index": s.scan_index, "state": s.state, "error": s.error}
              for s in monitor.statuses if s.state != "ok"]
    a = monitor.latest_assessment
    out = {**{k: v for k, v in summary.items() if k != "analysis_runs"},
           "scans_analysed": len(rows), "failed_scans": failed, "errors": [e["error"] for e in monitor.errors],
           "assessment": None if a is None else {"level": a.level, "reasons": list(a.reasons),
                                                 "time_to_failure_s": a.time_to_failure_s},
           "written_to": None if args.no_write else args.tiled_uri, "scan_rows": rows}
    if args.json:
        print(json.dumps(out))
    else:
        say(f"{'scan':>4} {'t_h':>6} " + " ".join(f"{k[:16]:>16}" for k in _LINE_KEYS) + "  alarm")
        for r in rows:
            say(f"{r['scan_index']:>4} {(r.get('cell_time_s') or 0) / 3600:>6.2f} "
                + " ".join(f"{r.get(k) if r.get(k) is not None else float('nan'):>16.4g}" for k in _LINE_KEYS)
                + f"  {r['alarm_level']}")
        for f in failed:
            say(f"scan {f['scan_index']}: {f['state']}: {f['error']}")
        if a is not None:
            say(f"alarm: {a.level}" + (f" ({'; '.join(a.reasons)})" if a.reasons else ""))
        say(f"replayed {summary['runs']} runs ({summary['scans']} scans) in {summary['wall_s']:.1f} s"
            + ("" if args.no_write else f"; analysis runs written to {args.tiled_uri}"))
    return 1 if failed else 0


def register(subparsers) -> None:
    """Add the ``replay`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "replay", help="replay an archived experiment from Tiled through the live monitor",
        description="Pull an experiment's raw runs from a Tiled server, analyse every scan with the live "
                    "monitor (frames read as Tiled arrays) and write the results back as analysis runs.")
    p.add_argument("tiled_uri", metavar="TILED_URI", help="Tiled server, e.g. http://127.0.0.1:8000")
    p.add_argument("experiment_uid", metavar="EXPERIMENT_UID", help="experiment_uid of the raw runs")
    p.add_argument("--speed", default="max",
                   help="max (as fast as the analysis goes, nothing dropped), realtime, or xN (N times cell time)")
    p.add_argument("--api-key", default=None, help="Tiled API key (default $TILED_API_KEY)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-write", action="store_true", help="do not write analysis runs back to Tiled")
    p.add_argument("--slab-directory", default=None,
                   help="write reconstructed interface slabs (HDF5) here, a folder the Tiled server can read")
    p.add_argument("--threads", type=int, default=None, help="reconstruction threads (default all cores)")
    p.add_argument("--queue-size", type=int, default=8, help="monitor queue size (paced speeds drop beyond it)")
    p.add_argument("--frames", choices=("tiled", "files"), default="tiled",
                   help="read frames as Tiled arrays (default) or from the files the documents name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
