"""Replay from Tiled over HTTP: an experiment stored by the closed-loop test, pushed through a new monitor.

The llzo experiment of ``conftest.CLOSED_LOOP`` (raw runs and live analysis
runs in the session's Tiled server; 3 scans and a step since the alarm
stops it after the first half cycle) is replayed with
``sscell-live replay`` in-process: documents re-synthesised by the server's
json-seq exporter, frames read as Tiled arrays. Same code path, options and
thread count as live, so every scalar metric must be equal bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sscell_live.cli import main
from sscell_live.monitor import Monitor, ScanResult
from sscell_live.monitor.frames import TiledFrames
from sscell_live.monitor.publish import find_analysis_runs
from sscell_live.monitor.replay import parse_speed, replay


@pytest.mark.parametrize("text, factor", [("max", None), ("realtime", 1.0), ("x10", 10.0), ("10x", 10.0),
                                          ("2.5", 2.5), (60, 60.0)])
def test_parse_speed(text, factor):
    assert parse_speed(text) == factor


@pytest.mark.parametrize("bad", ["fast", "x0", "x-2", "xinf", ""])
def test_parse_speed_rejects(bad):
    with pytest.raises(ValueError, match="speed"):
        parse_speed(bad)


def test_replay_cli_equals_live_bit_for_bit(closed_loop, tiled_server, capsys, monkeypatch):
    live = closed_loop("llzo")
    exp_uid = live["result"]["experiment_uid"]
    calls = []
    original = TiledFrames.__call__

    def spy(self, stream, resource, datum):
        calls.append((stream, resource["data_key"]))
        return original(self, stream, resource, datum)

    monkeypatch.setattr(TiledFrames, "__call__", spy)
    code = main(["replay", tiled_server.uri, exp_uid, "--api-key", tiled_server.api_key, "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["experiment_uid"] == exp_uid and out["errors"] == [] and out["failed_scans"] == []
    starts = [d for n, d in live["docs"] if n == "start"]
    n_scans = sum(d["run_kind"] == "tomo_scan" for d in starts)
    assert (out["runs"], out["scans"]) == (len(starts), n_scans) and n_scans >= 3 and out["idle"]
    # frames came from Tiled: detector frames, angles and cell times of every stream of every scan
    assert {("primary", "detector"), ("flat", "detector"), ("dark", "detector"),
            ("primary", "detector-rotation_angle_deg")} <= set(calls)

    scans = live["monitor"].scans
    rows = out["scan_rows"]
    assert [r["run_uid"] for r in rows] == list(scans["run_uid"])
    metric_cols = [c for c in scans.columns if c not in ("run_uid", "row_kind")]
    assert len(metric_cols) > 40
    for col in metric_cols:
        replayed = np.array([np.nan if r.get(col) is None else r[col] for r in rows], dtype=float)
        np.testing.assert_array_equal(replayed, scans[col].to_numpy(dtype=float), err_msg=col)
    assert [r["alarm_level"] for r in rows] == [s.level for s in live["monitor"].statuses]
    assert out["assessment"]["level"] == live["monitor"].latest_assessment.level

    # the replay's results are new analysis runs in Tiled, next to the live ones
    client = tiled_server.client()
    for r in rows:
        found = find_analysis_runs(client, r["run_uid"])
        assert [a.metadata["start"]["uid"] for a in found] == [live["monitor"].analysis_runs[r["run_uid"]],
                                                              r["analysis_run_uid"]]
        new = found[1].metadata["start"]
        assert new["replay"]["source"] == tiled_server.uri and new["replay"]["frames"] == "tiled"
        old_prim, new_prim = found[0]["primary"].read(), found[1]["primary"].read()
        for key in ("contact_fraction_top", "li_penetration_fraction", "crack_volume_um3", "alarm_level"):
            np.testing.assert_array_equal(new_prim[key].values, old_prim[key].values, err_msg=key)


def test_replay_paced_by_cell_time(closed_loop, tiled_server):
    live = closed_loop("llzo")

    def quick(run, state, options, charge_C):  # no reconstruction: this test is about pacing
        return ScanResult(run.uid, run.start["scan_index"], 0.0, {"contact_fraction_top": 0.5}, 1.5, (0, 1))

    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    monitor = Monitor(analyse=quick)
    factor = 3600.0
    summary = replay(tiled_server.client(), live["result"]["experiment_uid"], monitor, speed=f"x{factor:g}",
                     progress=False, sleep=sleep, clock=lambda: now[0])
    monitor.close()
    assert summary["speed"] == factor and summary["scans"] == len(live["monitor"].statuses)
    assert all(s.state == "ok" for s in monitor.statuses) and monitor.dropped == 0
    # the documents were fed at cell-time / factor: the waits add up to the experiment's cell duration
    h = monitor.history
    t = h.loc[h.row_kind == "potentiostat", "cell_time_s"].to_numpy()  # the readings replay paces by
    assert sum(slept) == pytest.approx((t.max() - t.min()) / factor, rel=1e-9)
    assert len(slept) > 50  # one wait per potentiostat sample (60 s of cell time apart)


def test_replay_cli_errors(tiled_server, capsys):
    assert main(["replay", tiled_server.uri, "no-such-experiment", "--api-key", tiled_server.api_key,
                 "--no-progress"]) == 2
    assert "no raw runs of experiment 'no-such-experiment'" in capsys.readouterr().err
    assert main(["replay", tiled_server.uri, "x", "--speed", "warp", "--api-key", tiled_server.api_key]) == 2
    assert "speed must be" in capsys.readouterr().err
