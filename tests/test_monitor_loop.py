"""Closing the loop end to end: cycle_until_failure on each preset with the live monitor, runs in Tiled.

Each experiment (``conftest.CLOSED_LOOP``: mini cells, 96 columns, 24-angle
scans) runs in lockstep: the plan waits at each run boundary for
``monitor.wait_idle`` (the deterministic mode of DESIGN.md; the live default
never waits), so every scan is assessed before the plan reads the alarm. Raw
runs go to the session's Tiled server through a TiledWriter on the
RunEngine; the monitor emits one analysis run per scan to the same server
through its own TiledWriter. Twin truth (recorded by a test-only callback)
says whether the cell had failed when the plan stopped.

Measured (twin alone: lps seed 1 at 0.25 mA/cm2 shorts in its 11th half
cycle, llzo seed 1 at 35 uA/cm2 in its 3rd, lsps seed 1 at 1 mA/cm2 reaches
the 4 V cut-off at 9.9 h, lps at 0.02 mA/cm2 is unfailed after 60 half
cycles):

- ``lps``: ``watch`` from the first half cycle on (a crack across the SE:
  measured penetration 1.00, twin truth 1.00), ``imminent`` after the 9th
  half cycle (4.6 h; bulk resistance fallen 88 % and its trend), the plan
  stops with a final scan before the short;
- ``lsps``: ``watch`` from the pristine scan (the planned 1 mA/cm2 over a
  measured 0.23 contact is 48 % of the Lewis-LSPS stripping limit: a
  pre-flight warning), ``imminent`` after 3 h of current (the plated bottom
  face, measured 0.197 against 0.234 true, would carry 56 % of the limit
  once the current reverses), 6.8 h before the cut-off;
- ``llzo``: ``watch`` before the current (35 uA/cm2 planned, 135 % of the
  Dixit-LLZO CCD: a literature value alone never makes ``imminent``),
  ``imminent`` after the first half cycle (the applied current and the
  bulk-resistance fall), two half cycles before the short;
- the low-current control (0.02 mA/cm2, 6 half cycles) stays ``ok``.

Measured contact fractions on these sparse 24-angle scans against truth:
lsps within 3.7 points (0.197-0.245 against 0.234-0.250), llzo within 6.1
(-6.1 on the top face after the first half cycle), lps within 6.2 (+6.2 on the
top face at 2 h, as its voids fill); the issue's 3-point target is measured on
180-angle scans by ``benchmarks/segmentation.py``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from tiled.queries import Key

from sscell_live.monitor import ScanResult
from sscell_live.monitor.publish import ANALYSIS_RUN_KIND, find_analysis_runs, read_maps

FAILING = ["lps", "lsps", "llzo"]
KNOWN_GAPS: dict = {}  # preset -> reason, for a strict xfail of a measured gap


def _params(names):
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[n])) if n in KNOWN_GAPS else n
            for n in names]


def _scan_starts(docs):
    return [d for n, d in docs if n == "start" and d["run_kind"] == "tomo_scan"]


@pytest.mark.parametrize("name", _params(FAILING))
def test_alarm_stops_the_plan_before_the_cell_fails(closed_loop, name):
    run = closed_loop(name)
    result, monitor, docs = run["result"], run["monitor"], run["docs"]
    # the experiment ran into trouble: the twin failed, or the alarm stopped it first
    assert result["stop_reason"] == "alarm:imminent", result
    assert not run["twin_failed"]  # truth, test-only: stopped before the short or the cut-off
    scans = _scan_starts(docs)
    assert scans[-1].get("final_scan") is True and scans[-1]["current_mA_cm2"] == 0.0
    stops = {d["run_start"]: d for n, d in docs if n == "stop"}
    assert all(stops[s["uid"]]["exit_status"] == "success" for s in scans)
    assert run["beamline"].binding.mode == "open_circuit"
    st = monitor.statuses
    assert [s.state for s in st] == ["ok"] * len(scans)
    # lockstep: each scan was analysed before the next scan's run ended
    assert all(a.finished_wall <= b.stop_wall for a, b in itertools.pairwise(st))
    levels = [s.level for s in st]
    # the pristine scan may warn (a planned current near a literature limit) but never stops the plan
    assert levels[0] in {"ok", "watch"} and levels[-1] == "imminent"
    first = levels.index("imminent")
    assert set(levels[first:]) == {"imminent"}  # no flicker back, and never "failed" before the stop
    assert monitor.latest_assessment.level == run["beamline"].alarm.get() == "imminent"


def test_low_current_control_never_goes_past_watch(closed_loop):
    run = closed_loop("lps_low_current", tiled=False)
    assert run["result"]["stop_reason"] == "max_half_cycles"
    assert not run["twin_failed"]
    levels = [s.level for s in run["monitor"].statuses]
    assert len(levels) == run["result"]["scans"] == 7
    assert set(levels) <= {"ok", "watch"}, levels


@pytest.mark.parametrize("name", FAILING)
def test_raw_and_analysis_runs_are_in_tiled_and_linked(closed_loop, tiled_server, name):
    run = closed_loop(name)
    monitor, docs = run["monitor"], run["docs"]
    client = tiled_server.client()
    exp_uid = run["result"]["experiment_uid"]
    raw_uids = {d["uid"] for n, d in docs if n == "start"}
    scan_index = {d["uid"]: d["scan_index"] for d in _scan_starts(docs)}
    stored = [r.metadata for r in client.search(Key("start.experiment_uid") == exp_uid).values()]
    raw = {md["start"]["uid"]: md for md in stored if md["start"]["run_kind"] != ANALYSIS_RUN_KIND}
    live = {md["start"]["raw_run_uid"]: md for md in stored
            if md["start"]["run_kind"] == ANALYSIS_RUN_KIND and "replay" not in md["start"]}
    # every raw run reached Tiled, whole; every scan has one live analysis run, linked at its start
    assert set(raw) == raw_uids and all(md["stop"]["exit_status"] == "success" for md in raw.values())
    assert set(live) == set(scan_index) == set(monitor.analysis_runs)
    for uid, md in live.items():
        assert md["start"]["uid"] == monitor.analysis_runs[uid] and md["start"]["scan_index"] == scan_index[uid]
        assert md["stop"]["exit_status"] == "success"
    scans = monitor.scans.set_index("run_uid")
    assert monitor.errors == []
    first, last = _scan_starts(docs)[0]["uid"], _scan_starts(docs)[-1]["uid"]
    found = {}
    for uid in (first, last):  # found from the raw uid; metrics and alarm are the monitor's, bit for bit
        ana = next(r for r in find_analysis_runs(client, uid) if "replay" not in r.metadata["start"])
        assert ana.metadata["start"]["uid"] == monitor.analysis_runs[uid]
        found[uid] = ana
        prim = ana["primary"].read()
        row = scans.loc[uid]
        for key in ("contact_fraction_top", "contact_fraction_bottom", "crack_penetration_fraction",
                    "li_penetration_fraction", "void_volume_top_um3", "se_thickness_um", "cell_time_s"):
            np.testing.assert_array_equal(prim[key].values, [row[key]], err_msg=key)
        status = next(s for s in monitor.statuses if s.run_uid == uid)
        assert prim["alarm_level"].values[0] == status.level
        maps = read_maps(ana)
        np.testing.assert_array_equal(maps["contact_map_top"], monitor.results[uid].metrics["contact_map_top"])
        assert maps["contact_map_top"].shape == (96, 96) and maps["contact_map_top"].dtype == bool
    units = found[last]["primary"].descriptors[0]["data_keys"]
    assert units["void_volume_top_um3"]["units"] == "um3" and units["time_to_failure_s"]["units"] == "s"


_HAS_VOLUME = "volume" in {f.name for f in dataclasses.fields(ScanResult)}


@pytest.mark.xfail(not _HAS_VOLUME, strict=True,
                   reason="ScanResult carries no reconstructed volume yet (sscell_live/monitor/analysis.py)")
def test_live_analysis_runs_carry_the_interface_slabs(closed_loop, tiled_server):
    run = closed_loop("llzo")
    client = tiled_server.client()
    for raw_uid, ana_uid in run["monitor"].analysis_runs.items():
        ana = client[ana_uid]
        slabs, prim = ana["slabs"], ana["primary"].read()
        for side, (above, below) in {"top": (1, 2), "bottom": (2, 1)}.items():  # Li over SE, SE over Li
            lab = slabs[f"labels_slab_{side}"].read()[0]
            rec = slabs[f"recon_slab_{side}"].read()[0]
            assert lab.shape == rec.shape == (32, 96, 96) and rec.dtype == np.float32
            centre = lab.shape[1] // 2
            core = (slice(None), slice(centre - 16, centre + 16), slice(centre - 16, centre + 16))
            assert np.mean(lab[:8][core] == above) > 0.8 and np.mean(lab[-8:][core] == below) > 0.8, side
            assert prim[f"slab_{side}_row_start"].values[0] >= 0
