"""operando_cycling on the lps mini preset until it shorts, both styles, from the documents alone."""

from __future__ import annotations

import numpy as np
import pytest
from sscell_live.plans import Experiment, operando_cycling

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}


@pytest.mark.parametrize("style", ["paused", "flowing"])
def test_operando_cycling_until_short(RE, make_beamline, resolve_runs, style):
    bl = make_beamline(seed=1)  # shorts after about 9 h of cycling at 0.15 mA/cm2
    exp = Experiment()
    result = RE(operando_cycling(bl, 0.15, 1800.0, style=style, scan_interval_s=900.0, max_half_cycles=80,
                                 scan_kw=SCAN, experiment=exp)).plan_result
    assert result["stop_reason"] == "short"
    runs = resolve_runs(RE.docs)
    scans = [r for r in runs.values() if r["start"]["run_kind"] == "tomo_scan"]
    steps = [r for r in runs.values() if r["start"]["run_kind"] == "galvanostatic_step"]
    half_cycles = result["half_cycles"]
    if style == "paused":  # a pristine scan, then one step and one scan per half cycle
        assert len(steps) == half_cycles and len(scans) == half_cycles + 1
        assert all(s["start"]["current_mA_cm2"] == 0.0 for s in scans)
    else:  # each half cycle: step, scan (current on), step, scan; the shorting one may end early
        assert 2 * half_cycles - 1 <= len(steps) <= 2 * half_cycles, (len(steps), len(scans), result)
        assert len(scans) == len(steps) + 1
        assert sum(s["start"]["current_mA_cm2"] != 0.0 for s in scans) >= len(scans) - 2
    assert len(scans) == result["scans"] and len(steps) == result["steps"]
    for s in scans:
        assert s["streams"]["primary"]["detector"].shape == (24, bl.twin.geometry.nz, 96)
    # the short shows in the voltage record, and the experiment ends at open circuit
    rec = sorted((t, v, j, m) for r in runs.values() if "potentiostat" in r["streams"]
                 for t, v, j, m in zip(*(r["streams"]["potentiostat"][f"potentiostat-{k}"]
                                         for k in ("cell_time_s", "voltage_V", "current_mA_cm2", "mode"))))
    signs = np.sign([j for _, _, j, m in rec if m == "galvanostatic"])
    assert np.count_nonzero(np.diff(signs)) >= half_cycles - 2
    assert rec[-1][3] == "open_circuit"
    assert bl.binding.mode == "open_circuit"
