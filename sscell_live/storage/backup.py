"""Replaying TiledWriter's backup directory into Tiled after an outage.

When ``TiledWriter(backup_directory=...)`` fails to write a document, it
abandons Tiled for the rest of that run and appends the *whole* run (every
document since its start, the ones already written included) to
``<backup_directory>/<first 8 hex digits of the run uid>.jsonl``, one
``{"name": ..., "doc": ...}`` per line. :func:`replay_backup` writes such
files into Tiled once the server is back:

- a run absent from Tiled is written with a fresh ``TiledWriter``;
- a run Tiled holds only partly (the outage began mid-run: no stop
  document, or another one) is deleted there and written again from the
  backup, which holds all of it. Only what Tiled itself wrote for that run
  is deleted (its event tables and array copies); detector files registered
  by reference are never touched (Tiled never deletes externally managed
  assets);
- a run Tiled already holds with the same stop document is left alone;
- a file whose last document is not a stop (a run still being backed up, or
  cut off by a crash) is skipped unless ``include_incomplete=True``.

A replayed file is renamed ``<name>.jsonl.replayed``, never deleted: raw
documents are never lost.

Example
-------
>>> from sscell_live.storage import replay_backup                      # doctest: +SKIP
>>> for r in replay_backup("runs/tiled-backup", server.client()):       # doctest: +SKIP
...     print(r.run_uid, r.state, r.error or "")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReplayedRun", "read_backup", "replay_backup"]

#: Suffix appended to a backup file once its run is in Tiled.
DONE_SUFFIX = ".replayed"


@dataclass
class ReplayedRun:
    """Outcome of replaying one backup file.

    ``state``: ``written`` (the run is now in Tiled), ``already`` (Tiled
    already held it whole), ``incomplete`` (no stop document: skipped, file
    left in place) or ``error`` (``error`` says why; file left in place).
    """

    path: Path
    run_uid: str | None
    state: str
    documents: int = 0
    replaced_partial: bool = False
    error: str | None = None


def read_backup(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """The documents of one backup file, in order.

    Raises
    ------
    ValueError
        A line that is not ``{"name": str, "doc": dict}`` JSON (file and line
        named), or an empty file. A cut-off *last* line (a crash while
        writing it) is dropped, since everything before it is intact.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    docs = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            name, doc = item["name"], item["doc"]
            if not isinstance(name, str) or not isinstance(doc, dict):
                raise TypeError("'name' must be a string and 'doc' an object")
        except (ValueError, KeyError, TypeError) as exc:
            if i == len(lines):
                break  # cut off mid-write
            raise ValueError(f"{path}: line {i} is not a backed-up document ({type(exc).__name__}: {exc})") from exc
        docs.append((name, doc))
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


def replay_backup(backup_directory: str | os.PathLike, client, *, batch_size: int = 100,
                  include_incomplete: bool = False) -> list[ReplayedRun]:
    """Write the runs of a TiledWriter backup directory into Tiled.

    Parameters
    ----------
    backup_directory : path
        The ``backup_directory`` given to ``TiledWriter`` (or
        :meth:`TiledServer.writer`); every ``*.jsonl`` file in it is a run.
    client : tiled client
        The catalog root the live writer wrote to (``server.client()``), with
        write access.
    batch_size : int
        ``TiledWriter`` batch size for the replay (events/StreamDatums per write).
    include_incomplete : bool
        Also write runs without a stop document.

    Returns
    -------
    list of ReplayedRun
        One per file, in file-name order. Errors are reported here, never
        raised, so that one bad file does not hold back the others.
    """
    from bluesky_tiled_plugins import TiledWriter

    out = []
    for path in sorted(Path(backup_directory).glob("*.jsonl")):
        rec = ReplayedRun(path, None, "error")
        out.append(rec)
        try:
            docs = read_backup(path)
            if docs[0][0] != "start":
                raise ValueError(f"{path}: the first document is a {docs[0][0]!r}, not the run's start")
            uid = docs[0][1]["uid"]
            rec.run_uid, rec.documents = uid, len(docs)
            stop = next((d for n, d in docs if n == "stop"), None)
            if docs[-1][0] != "stop" and not include_incomplete:
                rec.state = "incomplete"
                rec.error = f"{path}: the last document is a {docs[-1][0]!r}, not a stop (run unfinished?)"
                continue
            if uid in client:
                held = client[uid].metadata.get("stop")
                if stop is not None and held is not None and held.get("uid") == stop["uid"]:
                    rec.state = "already"
                    path.rename(path.with_name(path.name + DONE_SUFFIX))
                    continue
                # partly written before the outage: the backup holds the whole run
                client[uid].delete(recursive=True, external_only=False)
                rec.replaced_partial = True
            writer = TiledWriter(client, batch_size=batch_size)
            for name, doc in docs:
                writer(name, doc)
            written = client[uid].metadata.get("stop")
            if stop is not None and (written is None or written.get("uid") != stop["uid"]):
                raise RuntimeError(f"run {uid} was written but Tiled does not show its stop document")
            rec.state = "written"
            path.rename(path.with_name(path.name + DONE_SUFFIX))
        except Exception as exc:  # noqa: BLE001 - reported per file
            rec.state = "error"
            rec.error = f"{type(exc).__name__}: {exc}"
    return out
