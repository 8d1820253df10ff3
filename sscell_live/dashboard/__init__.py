"""Dashboard (pyqtgraph on PySide6): live plots of an experiment's voltage, metrics and alarm level.

Public API
----------
Dashboard(monitor=None, refresh_ms=1000)
    The widget; a QTimer on the GUI thread pulls ``monitor.history`` and
    ``monitor.latest_assessment``. ``update_from(history, assessment)``,
    ``refresh()``, ``render_png(path)``; ``curves``, ``level_label``.
snapshot_png(history, assessment, path)
    Offscreen PNG of a dashboard (no display needed).
scan_table(history), potentiostat_series(history), format_assessment(a)
    The numbers shown (pure pandas; the demo prints the same table).

Qt is imported only when ``Dashboard``/``snapshot_png``/``ensure_app`` are
first used, so the data functions work without a display stack.
"""

from .data import SCAN_COLUMNS, format_assessment, potentiostat_series, scan_table

__all__ = ["SCAN_COLUMNS", "Dashboard", "ensure_app", "format_assessment", "potentiostat_series", "scan_table",
           "snapshot_png"]

_QT_NAMES = ("Dashboard", "ensure_app", "snapshot_png", "LEVEL_COLOURS")


def __getattr__(name):
    if name in _QT_NAMES:
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
