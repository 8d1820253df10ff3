"""The dashboard widget (pyqtgraph on PySide6): voltage, interface metrics and the alarm of one experiment.

Qt is touched only on the GUI thread: a ``QTimer`` there pulls the monitor's
history and latest assessment (both copies taken under the monitor's lock),
so the monitor's worker thread never calls into Qt.

Live use in an IPython beamline session (``%gui qt`` first)::

    dash = Dashboard(monitor); dash.show()

Offscreen snapshot (no display needed)::

    snapshot_png(monitor.history, monitor.latest_assessment, "dashboard.png")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pyqtgraph as pg
import shiboken6
from PySide6 import QtCore, QtWidgets

from .data import format_assessment, potentiostat_series, scan_table

__all__ = ["LEVEL_COLOURS", "Dashboard", "ensure_app", "snapshot_png"]

#: Background colour of the alarm label per level.
LEVEL_COLOURS = {"ok": "#2e7d32", "watch": "#f9a825", "imminent": "#ef6c00", "failed": "#c62828", "-": "#616161"}

#: curve name -> (plot, scan_table column or None for the voltage, pen colour, legend text)
_CURVES = {
    "voltage": ("voltage", None, "#1565c0", "cell voltage"),
    "contact_top": ("contact", "contact_fraction_top", "#2e7d32", "top (stripping for j > 0)"),
    "contact_bottom": ("contact", "contact_fraction_bottom", "#6a1b9a", "bottom"),
    "void_volume": ("volume", "void_volume_um3", "#00838f", "voids (top + bottom)"),
    "crack_volume": ("volume", "crack_volume_um3", "#c62828", "cracks"),
    "crack_penetration": ("penetration", "crack_penetration_fraction", "#ef6c00", "crack penetration"),
}

_PLOTS = {  # plot -> (title, y label, y units)
    "voltage": ("Cell voltage", "voltage", "V"),
    "contact": ("Contact fraction per scan", "contact fraction", ""),
    "volume": ("Void and crack volume per scan", "volume", "um³"),
    "penetration": ("Crack penetration per scan", "fraction of SE thickness", ""),
}


#: Dashboards not yet deleted. A pyqtgraph widget still alive when the interpreter shuts down
#: crashes it (segfault in Qt's teardown, PySide6 6.12 offscreen), so they are deleted at exit.
_ALIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register  # registered after pyqtgraph's own atexit hook, so it runs before it
def _delete_alive_dashboards() -> None:
    for dash in list(_ALIVE):
        with contextlib.suppress(Exception):  # best effort at exit
            if shiboken6.isValid(dash):
                shiboken6.delete(dash)


def ensure_app() -> QtWidgets.QApplication:
    """The running QApplication, or a new one (offscreen when there is no display)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QtWidgets.QApplication([])
    return app


class Dashboard(QtWidgets.QWidget):
    """Live plots of one experiment: voltage, contact fractions, void/crack volumes, penetration, alarm.

    Parameters
    ----------
    monitor : sscell_live.monitor.Monitor, optional
        Polled every ``refresh_ms`` on the GUI thread (``history`` and
        ``latest_assessment``). Without it, feed data with :meth:`update_from`.
    refresh_ms : int
        Refresh period of the timer, ms (0: no timer).
    parent : QWidget, optional

    Attributes
    ----------
    curves : dict
        name -> ``pyqtgraph.PlotDataItem``: ``voltage`` (x: cell time h,
        y: V), ``contact_top``, ``contact_bottom``, ``void_volume``,
        ``crack_volume``, ``crack_penetration`` (x: scan cell time h).
    plots : dict
        name -> ``pyqtgraph.PlotItem``.
    level_label, details_label : QLabel
        The alarm level (text exactly the assessment's level) and its
        reasons with the time to failure.
    timer : QTimer or None
    """

    def __init__(self, monitor=None, *, refresh_ms: int = 1000, parent=None):
        super().__init__(parent)
        self.monitor = monitor
        _ALIVE.add(self)
        self.setWindowTitle("sscell_live dashboard")
        layout = QtWidgets.QHBoxLayout(self)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, stretch=4)
        self.plots = {}
        for i, (name, (title, label, units)) in enumerate(_PLOTS.items()):
            p = self.graphics.addPlot(row=i, col=0, title=title)
            p.setLabel("left", label, units=units)
            if name != "voltage":  # fractions and um3 read better unscaled than as "x0.001" or "kum3"
                p.getAxis("left").enableAutoSIPrefix(False)
            p.setLabel("bottom", "cell time", units="h")
            p.showGrid(x=True, y=True, alpha=0.3)
            p.addLegend(offset=(5, 5), brush=pg.mkBrush(255, 255, 255, 210))
            self.plots[name] = p
        for name in ("contact", "volume", "penetration"):
            self.plots[name].setXLink(self.plots["voltage"])
        self.curves = {}
        for name, (plot, column, colour, legend) in _CURVES.items():
            kw = {} if column is None else {"symbol": "o", "symbolSize": 6, "symbolBrush": colour}
            self.curves[name] = self.plots[plot].plot([], [], pen=pg.mkPen(colour, width=2), name=legend,
                                                      connect="finite", **kw)
        side = QtWidgets.QVBoxLayout()
        title = QtWidgets.QLabel("Failure alarm")
        title.setStyleSheet("font-weight: bold;")
        self.level_label = QtWidgets.QLabel("-")
        self.level_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.level_label.setMinimumHeight(48)
        self.details_label = QtWidgets.QLabel("no assessment yet")
        self.details_label.setWordWrap(True)
        self.details_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        for w in (title, self.level_label, self.details_label):
            side.addWidget(w)
        side.addStretch(1)
        side.addWidget(self.status_label)
        panel = QtWidgets.QWidget()
        panel.setLayout(side)
        panel.setMinimumWidth(260)
        layout.addWidget(panel, stretch=1)
        self._set_level("-")
        self.resize(1200, 900)
        self.timer = None
        if monitor is not None and refresh_ms > 0:
            self.timer = QtCore.QTimer(self)
            self.timer.timeout.connect(self.refresh)
            self.timer.start(int(refresh_ms))

    # -- updates (GUI thread) --------------------------------------------------------
    def _set_level(self, level: str):
        colour = LEVEL_COLOURS.get(level, LEVEL_COLOURS["-"])
        self.level_label.setText(level)
        self.level_label.setStyleSheet(f"background: {colour}; color: white; font-size: 22pt; font-weight: bold;"
                                       " border-radius: 6px;")

    def update_from(self, history, assessment=None) -> None:
        """Show a history (monitor ``history`` DataFrame) and an assessment (or None).

        Call on the GUI thread only.
        """
        pot = potentiostat_series(history)
        self.curves["voltage"].setData(pot["cell_time_s"].to_numpy() / 3600.0, pot["voltage_V"].to_numpy())
        table = scan_table(history)
        x = table["cell_time_h"].to_numpy()
        for name, (_, column, _, _) in _CURVES.items():
            if column is not None:
                self.curves[name].setData(x, table[column].to_numpy(dtype=float))
        level, details = format_assessment(assessment)
        self._set_level(level)
        self.details_label.setText(details)

    def refresh(self) -> None:
        """Pull the monitor's history and latest assessment and redraw (the timer's slot)."""
        if self.monitor is None:
            return
        try:
            self.update_from(self.monitor.history, self.monitor.latest_assessment)
            backlog = getattr(self.monitor, "backlog", 0)
            dropped = getattr(self.monitor, "dropped", 0)
            self.status_label.setText(f"analysis backlog {backlog}, dropped {dropped}")
        except Exception as exc:  # noqa: BLE001 - a bad refresh must not kill the GUI; the next one retries
            self.status_label.setText(f"refresh failed: {type(exc).__name__}: {exc}")

    # -- snapshots ----------------------------------------------------------------------
    def render_png(self, path, size: tuple[int, int] | None = None) -> Path:
        """Render the widget to a PNG file (works offscreen); returns the path.

        Parameters
        ----------
        path : path
        size : (int, int), optional
            Width and height in pixels (default the widget's size).
        """
        if size is not None:
            self.resize(*size)
        self.ensurePolished()
        layout = self.layout()
        if layout is not None:
            layout.activate()
        QtWidgets.QApplication.processEvents()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"could not write the dashboard PNG to {path}")
        return path


def snapshot_png(history, assessment, path, size: tuple[int, int] = (1200, 900)) -> Path:
    """Render a dashboard of a history and an assessment to a PNG (offscreen when there is no display).

    Parameters
    ----------
    history : DataFrame
        A monitor history.
    assessment : sscell_live.alarm.Assessment or None
    path : path
    size : (int, int)
        Pixels.

    Returns
    -------
    Path
    """
    ensure_app()
    dash = Dashboard(refresh_ms=0)
    try:
        dash.update_from(history, assessment)
        return dash.render_png(path, size)
    finally:
        shiboken6.delete(dash)  # now: no event loop runs here to honour deleteLater

