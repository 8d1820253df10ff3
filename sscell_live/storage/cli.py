"""``sscell-live replay-backup BACKUP_DIR TILED_URI``: write runs TiledWriter backed up during an outage.

Registered by :mod:`sscell_live.cli` (``SUBCOMMAND_MODULES``). One line per
backup file (or one JSON object with ``--json``); exit code 0 when every run
is in Tiled, 1 when a file was left in place (error or unfinished run), 2 on
bad input (no such folder, server unreachable).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["register", "run"]


def run(args) -> int:
    """Execute the ``replay-backup`` subcommand; returns an exit code."""
    from .backup import replay_backup

    folder = Path(args.backup_directory)
    if not folder.is_dir():
        print(f"sscell-live replay-backup: error: {folder} is not a folder", file=sys.stderr)
        return 2
    try:
        from tiled.client import from_uri

        client = from_uri(args.tiled_uri, api_key=args.api_key or os.environ.get("TILED_API_KEY"))
    except Exception as exc:  # tiled/httpx connection and authentication errors
        print(f"sscell-live replay-backup: error: cannot connect to {args.tiled_uri}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    results = replay_backup(folder, client, batch_size=args.batch_size, include_incomplete=args.include_incomplete)
    if args.json:
        print(json.dumps([{"file": str(r.path), "run_uid": r.run_uid, "state": r.state, "documents": r.documents,
                           "replaced_partial": r.replaced_partial, "error": r.error} for r in results]))
    else:
        if not results:
            print(f"no backup files (*.jsonl) in {folder}")
        for r in results:
            extra = " (partial run in Tiled replaced)" if r.replaced_partial else ""
            print(f"{r.path.name}: {r.state} run {r.run_uid} ({r.documents} documents){extra}"
                  + (f": {r.error}" if r.error else ""))
    return 0 if all(r.state in ("written", "already") for r in results) else 1


def register(subparsers) -> None:
    """Add the ``replay-backup`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "replay-backup", help="write the runs a TiledWriter backed up during a Tiled outage into Tiled",
        description="Write every run of a TiledWriter backup directory (JSON lines, one file per run) into a "
                    "Tiled server; runs Tiled holds only partly are replaced; replayed files are renamed "
                    "*.jsonl.replayed, never deleted.")
    p.add_argument("backup_directory", metavar="BACKUP_DIR", help="the TiledWriter backup_directory")
    p.add_argument("tiled_uri", metavar="TILED_URI", help="Tiled server, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, help="Tiled API key (default $TILED_API_KEY)")
    p.add_argument("--batch-size", type=int, default=100, help="events/StreamDatums per write (default 100)")
    p.add_argument("--include-incomplete", action="store_true", help="also write runs without a stop document")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of lines")
    p.set_defaults(func=run)
