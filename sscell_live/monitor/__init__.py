"""The live monitor: reconstruct, segment and measure every scan of an experiment, and raise the alarm.

Public API
----------
Monitor(alarm=None, *, options=None, queue_size=8, experiment_uid=None, analyse=None, emit=None, ...)
    Document callback (event_model ``DocumentRouter``) for ``RE.subscribe``:
    follows an experiment's runs by ``experiment_uid``, hands each scan to a
    worker thread at its stop document, keeps ``history`` (pandas),
    ``statuses``, ``latest_assessment``, ``results``; ``wait_idle(timeout)``,
    ``close()``. Publishes the alarm level with ``alarm.put(level)`` and one
    analysis run per scan through ``emit`` (a TiledWriter, for example).
AnalysisOptions
    Rows to reconstruct (all, interface slabs, a slice), Paganin delta/beta,
    ring removal, threads, segmentation preset.
analyse_scan(run_data, experiment_state, options, charge_C) -> ScanResult
    The per-scan pipeline (read frames, reconstruct, segment, measure).
RunData, read_stream_datum, TiledFrames
    One run's documents with frames resolved from StreamResource/StreamDatum,
    from the files (live) or from Tiled arrays (replay).
Publisher, find_analysis_runs, read_maps
    Analysis runs as bluesky documents (``publish``), found in Tiled from a
    raw run uid, maps read back.
replay(tiled_client_or_uri, experiment_uid, monitor, speed='max')
    An archived experiment pushed from Tiled through a monitor
    (``sscell-live replay``).
AnalysisWorker
    The bounded drop-oldest queue and its thread.
"""

from .analysis import (
    AnalysisOptions,
    ExperimentState,
    ScanDataError,
    ScanResult,
    analyse_scan,
    load_scan,
    scalar_metrics,
)
from .frames import RunData, TiledFrames, read_stream_datum
from .monitor import Monitor, ScanStatus
from .publish import Publisher, find_analysis_runs, read_maps
from .replay import replay
from .worker import AnalysisWorker, Job

__all__ = [
    "AnalysisOptions",
    "AnalysisWorker",
    "ExperimentState",
    "ScanDataError",
    "Job",
    "Monitor",
    "Publisher",
    "RunData",
    "ScanResult",
    "ScanStatus",
    "TiledFrames",
    "analyse_scan",
    "find_analysis_runs",
    "load_scan",
    "read_maps",
    "read_stream_datum",
    "replay",
    "scalar_metrics",
]
