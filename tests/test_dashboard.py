"""The dashboard widget (pyqtgraph, Qt offscreen) shows the monitor's numbers and the alarm level.

A synthetic monitor history (potentiostat rows and scan rows, the layout of
``Monitor.history``) and the real alarm's assessment of it; the plotted
curve data must equal the history's columns, the alarm label the
assessment's level, and a rendered PNG must show the plots and the level's
colour. A stand-in monitor whose history changes checks the QTimer refresh.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyqtgraph")
pytest.importorskip("PySide6")

from sscell_live.alarm import assess


def _history(n_half: int, short_at_end: bool = False, seed: int = 0) -> pd.DataFrame:
    """A monitor-like history: 30-min half cycles at +-0.15 mA/cm2, samples every 5 min, a scan after each."""
    rng = np.random.default_rng(seed)
    pot, scans, t = [], [], 0.0
    scans.append({"row_kind": "scan", "scan_index": 0, "cell_time_s": 10.0, "current_mA_cm2": 0.0,
                  "contact_fraction_top": 0.6, "contact_fraction_bottom": 0.7, "void_volume_top_um3": 1000.0,
                  "void_volume_bottom_um3": 500.0, "crack_volume_um3": 0.0, "crack_penetration_fraction": 0.0})
    t = 20.0
    for k in range(n_half):
        j = 0.15 if k % 2 == 0 else -0.15
        for i in range(7):
            v = np.sign(j) * (0.03 + 0.002 * k + 0.0005 * rng.standard_normal())
            if short_at_end and k == n_half - 1 and i >= 2:
                v = np.sign(j) * 1e-4  # collapse to ~0 V under current: a short
            pot.append({"row_kind": "potentiostat", "cell_time_s": t + 300.0 * i, "voltage_V": v,
                        "current_mA_cm2": j, "charge_passed_C": 0.0, "bulk_resistance_ohm": 200.0})
        t += 1800.0
        pot.append({"row_kind": "potentiostat", "cell_time_s": t, "voltage_V": 0.0, "current_mA_cm2": 0.0,
                    "charge_passed_C": 0.0, "bulk_resistance_ohm": 200.0})
        scans.append({"row_kind": "scan", "scan_index": k + 1, "cell_time_s": t + 10.0, "current_mA_cm2": 0.0,
                      "contact_fraction_top": 0.6 - 0.02 * k + 0.01 * rng.standard_normal(),
                      "contact_fraction_bottom": 0.7 + 0.01 * k, "void_volume_top_um3": 1000.0 + 300.0 * k,
                      "void_volume_bottom_um3": 500.0 + 50.0 * k, "crack_volume_um3": 2000.0 * k,
                      "crack_penetration_fraction": min(1.0, 0.3 * k)})
        t += 20.0
    df = pd.concat([pd.DataFrame(pot), pd.DataFrame(scans)], ignore_index=True)
    return df.sort_values("cell_time_s", kind="stable").reset_index(drop=True)


def _expected(history):
    pot = history[history["row_kind"] == "potentiostat"]
    scans = history[history["row_kind"] == "scan"].sort_values("scan_index")
    x = scans["cell_time_s"].to_numpy() / 3600.0
    return {
        "voltage": (pot["cell_time_s"].to_numpy() / 3600.0, pot["voltage_V"].to_numpy()),
        "contact_top": (x, scans["contact_fraction_top"].to_numpy()),
        "contact_bottom": (x, scans["contact_fraction_bottom"].to_numpy()),
        "void_volume": (x, (scans["void_volume_top_um3"] + scans["void_volume_bottom_um3"]).to_numpy()),
        "crack_volume": (x, scans["crack_volume_um3"].to_numpy()),
        "crack_penetration": (x, scans["crack_penetration_fraction"].to_numpy()),
    }


def _image_array(path):
    from PySide6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB32)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., 2::-1].copy()  # BGRA -> RGB


def test_dashboard_shows_history_and_alarm(tmp_path):
    from sscell_live.dashboard import LEVEL_COLOURS, Dashboard, ensure_app

    ensure_app()
    history = _history(8, short_at_end=True)
    a = assess(history, cell={"area_cm2": 0.03, "cutoff_V": 10.0})
    assert a.level == "failed"  # the short: the label must turn to it (and its colour)
    dash = Dashboard(refresh_ms=0)
    dash.update_from(history, a)

    for name, (x, y) in _expected(history).items():
        cx, cy = dash.curves[name].getData()
        np.testing.assert_allclose(cx, x, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(cy, y, rtol=0, atol=1e-9, err_msg=name)
    assert dash.level_label.text() == a.level
    for reason in a.reasons:
        assert reason in dash.details_label.text()

    png = dash.render_png(tmp_path / "dash.png", size=(900, 700))
    img = _image_array(png)
    assert img.shape == (700, 900, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # curves, text, grids: not blank
    rgb = tuple(int(LEVEL_COLOURS["failed"][i:i + 2], 16) for i in (1, 3, 5))
    assert (img == rgb).all(axis=-1).sum() > 2000  # the red alarm panel is drawn
    curve_rgb = tuple(int("#1565c0"[i:i + 2], 16) for i in (1, 3, 5))  # the voltage pen
    assert (img == curve_rgb).all(axis=-1).sum() > 100
    dash.deleteLater()


def test_dashboard_timer_follows_the_monitor():
    from PySide6 import QtCore, QtWidgets

    from sscell_live.dashboard import Dashboard, ensure_app

    class StandIn:  # what the dashboard reads of a Monitor
        backlog = dropped = 0

        def __init__(self, history):
            self.history = history
            self.latest_assessment = assess(history)

    ensure_app()
    mon = StandIn(_history(2))
    assert mon.latest_assessment.level != "failed"
    dash = Dashboard(mon, refresh_ms=20)
    assert dash.timer is not None and dash.timer.isActive()

    def wait_for(cond):
        deadline = QtCore.QDeadlineTimer(10_000)
        while not cond() and not deadline.hasExpired():
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        return cond()

    def n_scans():
        x = dash.curves["contact_top"].getData()[0]
        return 0 if x is None else len(x)

    assert n_scans() == 0  # nothing drawn before the timer's first refresh
    assert wait_for(lambda: n_scans() == 3)
    assert dash.level_label.text() == mon.latest_assessment.level
    later = _history(6, short_at_end=True)
    mon.history, mon.latest_assessment = later, assess(later)
    assert wait_for(lambda: dash.level_label.text() == "failed")
    np.testing.assert_allclose(dash.curves["crack_volume"].getData()[1], _expected(later)["crack_volume"][1])
    dash.timer.stop()
    dash.deleteLater()
