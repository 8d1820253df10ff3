"""The live monitor: reconstruct, segment and measure every scan of an experiment, and raise the alarm.

Public API
----------
Monitor(alarm=None, *, options=None, queue_size=8, experiment_uid=None, analyse=None)
    Document callback (event_model ``DocumentRouter``) for ``RE.subscribe``:
    follows an experiment's runs by ``experiment_uid``, hands each scan to a
    worker thread at its stop document, keeps ``history`` (pandas),
    ``statuses``, ``latest_assessment``, ``results``; ``wait_idle(timeout)``,
    ``close()``. Publishes the alarm level with ``alarm.put(level)``.
AnalysisOptions
    Rows to reconstruct (all, interface slabs, a slice), Paganin delta/beta,
    ring removal, threads, segmentation preset.
analyse_scan(run_data, experiment_state, options, charge_C) -> ScanResult
    The per-scan pipeline (read frames, reconstruct, segment, measure).
RunData, read_stream_datum
    One run's documents with frames resolved from StreamResource/StreamDatum.
AnalysisWorker
    The bounded drop-oldest queue and its thread.
"""

from .analysis import (
    AnalysisOptions,
    ExperimentState,
    ScanResult,
    analyse_scan,
    load_scan,
    scalar_metrics,
)
from .frames import RunData, read_stream_datum
from .monitor import Monitor, ScanStatus
from .worker import AnalysisWorker, Job

__all__ = [
    "AnalysisOptions",
    "AnalysisWorker",
    "ExperimentState",
    "Job",
    "Monitor",
    "RunData",
    "ScanResult",
    "ScanStatus",
    "analyse_scan",
    "load_scan",
    "read_stream_datum",
    "scalar_metrics",
]
