"""The full-loop demo, tiny: embedded Tiled, RunEngine + TiledWriter, simulated beamline, live monitor.

An lps mini cell (64 wide, 16 angles) for two half cycles: the pristine scan
plus a scan after each half cycle (3 scans, 2 galvanostatic steps). The
printed per-scan lines must equal the monitor's history (recomputed here
from its rows, not through the demo's own table code), every raw run must be
in Tiled under the experiment uid when the stored folder is served again
with the printed API key, and the demo's server must be down after it returns.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

N_HALF = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the dashboard snapshot
    from sscell_live.demo import run_live_demo

    out = tmp_path_factory.mktemp("demo")
    lines = []
    result = run_live_demo("lps", seed=1, out=out, n_lateral=64, num_angles=16, num_darks=1, num_flats=2,
                           max_half_cycles=N_HALF, threads=1, say=lines.append)
    return result, lines, out


def _printed_rows(lines):
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("scan "))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("stopped:"):
            break
        parts = line.split()
        rows.append([float(p) for p in parts[:9]] + [parts[9]])
    return rows


def test_printed_lines_equal_the_monitor_history(demo):
    result, lines, _ = demo
    assert result.stop_reason == "max_half_cycles"
    rows = _printed_rows(lines)
    hist = result.history
    scans = hist[hist["row_kind"] == "scan"].sort_values("scan_index")
    pot = hist[hist["row_kind"] == "potentiostat"]
    assert len(rows) == len(scans) == N_HALF + 1
    level_of = {s.scan_index: s.level for s in result.statuses}
    assert all(s.state == "ok" for s in result.statuses)
    for row, (_, scan) in zip(rows, scans.iterrows()):
        k, t_h, j, v, top, bot, void, crack, pen, level = row
        assert k == scan["scan_index"]
        assert t_h == pytest.approx(scan["cell_time_s"] / 3600, abs=6e-4)
        on = pot[(pot["current_mA_cm2"] != 0) & (pot["cell_time_s"] <= scan["cell_time_s"])]
        if len(on):  # the half cycle that led to the scan: its last sample under current
            assert j == pytest.approx(on["current_mA_cm2"].iloc[-1], abs=6e-5)
            assert v == pytest.approx(on["voltage_V"].iloc[-1], abs=6e-5)
        else:
            assert np.isnan(j) and np.isnan(v) and k == 0
        assert top == pytest.approx(scan["contact_fraction_top"], abs=6e-5)
        assert bot == pytest.approx(scan["contact_fraction_bottom"], abs=6e-5)
        assert void == pytest.approx(scan["void_volume_top_um3"] + scan["void_volume_bottom_um3"], abs=0.06)
        assert crack == pytest.approx(scan["crack_volume_um3"], abs=0.06)
        assert pen == pytest.approx(scan["crack_penetration_fraction"], abs=6e-5)
        assert level == level_of[k]
    assert rows[1][2] == pytest.approx(0.15) and rows[2][2] == pytest.approx(-0.15)  # alternating half cycles
    assert rows[-1][7] > 0  # lps: a crack has opened after the first half cycle


def test_runs_are_in_tiled_and_the_server_stopped(demo):
    from tiled.queries import Key

    from sscell_live.storage import TiledServer

    result, lines, out = demo
    with pytest.raises(httpx.HTTPError):  # the demo's own server is down
        httpx.get(f"{result.tiled_uri}/healthz", timeout=2.0)
    assert any(result.api_key in line for line in lines)
    assert any(f"sscell-live replay {result.tiled_uri} {result.experiment_uid}" in line for line in lines)
    assert (out / "dashboard.png").stat().st_size > 10_000

    # served again from the stored folder with the printed key (what the demo tells the user to do)
    with TiledServer(result.tiled_dir, readable_storage=[result.frames_dir, out / "slabs"],
                     api_key=result.api_key) as server:
        client = server.client()
        hits = client.search(Key("start.experiment_uid") == result.experiment_uid)
        kinds = {}
        for uid in hits:
            kinds.setdefault(hits[uid].metadata["start"].get("run_kind"), []).append(uid)
        raw = kinds.get("tomo_scan", []) + kinds.get("galvanostatic_step", [])
        assert sorted(raw) == sorted(result.raw_run_uids)
        assert len(kinds["tomo_scan"]) == N_HALF + 1 and len(kinds["galvanostatic_step"]) == N_HALF
        for uid in kinds["tomo_scan"]:
            assert hits[uid].metadata["stop"]["exit_status"] == "success"
        if result.emitted:  # analysis runs, one per scan, linked to their raw scan
            analysis = kinds.get("scan_analysis", [])
            linked = {hits[u].metadata["start"]["raw_run_uid"] for u in analysis}
            assert linked == set(kinds["tomo_scan"])


def test_dashboard_shows_the_demo_history(demo):
    """The dashboard fed the real monitor history of the demo plots its scan columns and its alarm level."""
    from sscell_live.dashboard import Dashboard, ensure_app

    result, _, _ = demo
    ensure_app()
    dash = Dashboard(refresh_ms=0)
    dash.update_from(result.history, result.assessment)
    scans = result.history[result.history["row_kind"] == "scan"].sort_values("scan_index")
    x, y = dash.curves["contact_bottom"].getData()
    np.testing.assert_allclose(x, scans["cell_time_s"].to_numpy() / 3600.0)
    np.testing.assert_allclose(y, scans["contact_fraction_bottom"].to_numpy())
    assert dash.level_label.text() == result.assessment.level == result.statuses[-1].level
