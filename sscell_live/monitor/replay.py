"""Replay an archived experiment from Tiled through the live monitor.

``replay(tiled_client_or_uri, experiment_uid, monitor, speed=...)`` finds the
experiment's raw runs in a Tiled catalog (``start.experiment_uid``; the
``tomo_scan`` and ``galvanostatic_step`` runs, in acquisition order),
re-synthesises each run's documents (``run.documents()``: the server's
``application/json-seq`` exporter) and pushes them through the same
:class:`~sscell_live.monitor.Monitor` the live session uses. Frames are read
as Tiled arrays (:class:`~sscell_live.monitor.frames.TiledFrames`), so the
replaying machine needs HTTP access to the server only.

What differs from the live stream, and why it does not matter here:

- exported documents are re-synthesised: event uids, StreamResource and
  StreamDatum uids differ, and each stream's frames come as one StreamDatum
  (the monitor orders frames by sequence number and reads them by index);
- ``fill`` is not supported by SQL-backed runs: frames are fetched on the
  analysis worker through the frame source instead.

With the same code, options and thread count the metrics equal the live
ones bit for bit (the frames, angles and potentiostat readings are the same
numbers; the history is rebuilt in the same order).

Speed (cell time): ``max`` feeds documents as fast as the analysis keeps up
(back-pressure: the replay waits for room in the monitor's queue, so no scan
is dropped); ``realtime`` and ``xN`` pace documents by their
``*cell_time_s`` readings, N times faster than the cell lived them, and the
monitor's drop-oldest policy applies as it would live.
"""

from __future__ import annotations

import math
import time

__all__ = ["RAW_RUN_KINDS", "parse_speed", "raw_runs", "replay"]

#: Raw run kinds an experiment consists of (analysis runs are skipped).
RAW_RUN_KINDS = ("tomo_scan", "galvanostatic_step")


def parse_speed(speed) -> float | None:
    """``'max'`` -> None, ``'realtime'`` -> 1.0, ``'x10'`` / ``'10x'`` / ``'10'`` / 10 -> 10.0.

    Raises
    ------
    ValueError
        Anything else, or a factor that is not a positive finite number.
    """
    if speed is None:
        return None
    if isinstance(speed, str):
        text = speed.strip().lower()
        if text == "max":
            return None
        if text == "realtime":
            return 1.0
        num = text[1:] if text.startswith("x") else text[:-1] if text.endswith("x") else text
        try:
            factor = float(num)
        except ValueError:
            raise ValueError(f"speed must be 'max', 'realtime' or 'xN' (N times cell time), got {speed!r}") from None
    else:
        factor = float(speed)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"speed factor must be a positive finite number, got {speed!r}")
    return factor


def _connect(source, api_key=None):
    if isinstance(source, str):
        from tiled.client import from_uri

        return from_uri(source, api_key=api_key)
    return source


def raw_runs(client, experiment_uid: str) -> list:
    """The raw runs of an experiment in a Tiled catalog, in acquisition order.

    Parameters
    ----------
    client : tiled container client
    experiment_uid : str

    Returns
    -------
    list of BlueskyRun clients
        ``tomo_scan`` and ``galvanostatic_step`` runs whose start document
        has this ``experiment_uid``, sorted by start time (then step and
        scan counters).

    Raises
    ------
    LookupError
        No raw run of that experiment in the catalog.
    """
    from tiled.queries import Key

    hits = client.search(Key("start.experiment_uid") == str(experiment_uid))
    runs = [r for r in hits.values() if r.metadata["start"].get("run_kind") in RAW_RUN_KINDS]
    if not runs:
        raise LookupError(f"no raw runs of experiment {experiment_uid!r} in the Tiled catalog "
                          f"({getattr(client, 'uri', client)})")

    def key(r):
        s = r.metadata["start"]
        return (s.get("time", 0.0), s.get("step_index", 0), s.get("scan_index", 0))

    return sorted(runs, key=key)


def _cell_time(name: str, doc: dict) -> float | None:
    if name != "event":
        return None
    for k, v in doc.get("data", {}).items():
        if k.endswith("cell_time_s"):
            try:
                t = float(v)
            except (TypeError, ValueError):
                return None
            return t if math.isfinite(t) else None
    return None


def replay(source, experiment_uid: str, monitor, *, speed="max", api_key: str | None = None,
           progress: bool = True, frames: str = "tiled", wait: bool = True, timeout: float | None = None,
           sleep=time.sleep, clock=time.monotonic) -> dict:
    """Push an archived experiment's documents through a monitor.

    Parameters
    ----------
    source : tiled client or str
        The catalog (a tiled container client) or its URI (``http://host:port``).
    experiment_uid : str
    monitor : Monitor
        The monitor (its ``emit`` writes the new analysis runs, for example a
        TiledWriter on the same catalog).
    speed : {'max', 'realtime', 'xN'} or float
        See the module docstring.
    api_key : str, optional
        Tiled API key (with a URI source).
    progress : bool
        A tqdm progress bar (runs) on stderr.
    frames : {'tiled', 'files'}
        Read frames as Tiled arrays (default) or from the files the
        StreamResources name (same machine as the data).
    wait : bool
        Wait for the monitor to finish the last scan before returning
        (without waiting, the monitor keeps the replay's frame source and
        analysis metadata for the scans still queued).
    timeout : float, optional
        Seconds to wait for that, and for room in the monitor's queue.
    sleep, clock : callables
        Injected for tests (pacing).

    Returns
    -------
    dict
        ``experiment_uid``, ``runs``, ``scans``, ``steps``, ``documents``,
        ``speed`` (factor or None), ``wall_s``, ``idle`` (the monitor
        finished), ``analysis_runs`` (raw scan uid -> analysis run uid).

    Raises
    ------
    ValueError
        Bad ``speed`` or ``frames``.
    LookupError
        No raw run of the experiment in the catalog.
    RuntimeError
        The server cannot export a run's documents (json-seq exporter not
        registered) or a document stream is malformed.
    """
    from tqdm import tqdm

    from .frames import TiledFrames

    factor = parse_speed(speed)
    if frames not in ("tiled", "files"):
        raise ValueError(f"frames must be 'tiled' or 'files', got {frames!r}")
    client = _connect(source, api_key)
    runs = raw_runs(client, experiment_uid)
    by_uid = {r.metadata["start"]["uid"]: r for r in runs}

    old_frames, old_md = monitor.frames, dict(monitor.publisher.md)
    if frames == "tiled":
        monitor.frames = lambda start: TiledFrames(by_uid[start["uid"]]) if start["uid"] in by_uid else None
    where = source if isinstance(source, str) else str(getattr(client, "uri", ""))
    monitor.publisher.md["replay"] = {"source": where, "speed": "max" if factor is None else factor, "frames": frames}
    n_docs = n_scans = n_steps = 0
    t_wall0 = time.perf_counter()
    cell0 = wall0 = None
    try:
        bar = tqdm(runs, desc=f"replay {experiment_uid[:8]}", unit="run", disable=not progress)
        for run in bar:
            kind = run.metadata["start"].get("run_kind")
            try:
                docs = list(run.documents())
            except Exception as exc:
                raise RuntimeError(
                    f"could not export the documents of run {run.metadata['start']['uid']} from Tiled "
                    f"(is the application/json-seq exporter registered for BlueskyRun?): {exc}") from exc
            for name, doc in docs:
                if factor is not None:
                    t = _cell_time(name, doc)
                    if t is not None:
                        if cell0 is None:
                            cell0, wall0 = t, clock()
                        ahead = wall0 + (t - cell0) / factor - clock()
                        if ahead > 0:
                            sleep(ahead)
                elif name == "stop" and not monitor.wait_room(timeout):
                    raise TimeoutError(f"the monitor's queue stayed full for {timeout} s")
                monitor(name, dict(doc))  # a plain dict: the exported Document is immutable
                n_docs += 1
            n_scans += kind == "tomo_scan"
            n_steps += kind == "galvanostatic_step"
            bar.set_postfix(scans=n_scans, backlog=monitor.backlog)
        bar.close()
        idle = monitor.wait_idle(timeout) if wait else False
    finally:
        if monitor.backlog == 0:  # scans still queued need the replay's frame source and metadata
            monitor.frames = old_frames
            monitor.publisher.md.clear()
            monitor.publisher.md.update(old_md)
    scan_uids = [u for u, r in by_uid.items() if r.metadata["start"].get("run_kind") == "tomo_scan"]
    return {"experiment_uid": experiment_uid, "runs": len(runs), "scans": n_scans, "steps": n_steps,
            "documents": n_docs, "speed": factor, "wall_s": time.perf_counter() - t_wall0, "idle": idle,
            "analysis_runs": {u: monitor.analysis_runs[u] for u in scan_uids if u in monitor.analysis_runs}}
