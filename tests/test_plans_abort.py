"""Aborting plans mid-scan and mid-step: safe state, partial runs stored with exit_status abort."""

from __future__ import annotations

import asyncio
import threading

import pytest
from bluesky.utils import RunEngineInterrupted
from sscell_live.plans import Experiment, galvanostatic_step, operando_cycling


def _pause_when(RE, binding, condition):
    """Request a pause (as a user's Ctrl-C does) the first time ``condition()`` holds at a device wait.

    The request comes from another thread, through the binding's injected
    sleep, so it lands while the plan is running.
    """
    fired = []

    async def sleep(seconds):
        if not fired and condition():
            fired.append(True)
            threading.Thread(target=RE.request_pause, kwargs={"defer": False}, daemon=True).start()
        await asyncio.sleep(seconds)

    binding.sleep = sleep
    return fired


@pytest.mark.parametrize("where", ["mid_scan", "mid_step"])
def test_abort_leaves_open_circuit_and_stores_partial_run(RE, make_beamline, tiled_server, where):
    bl = make_beamline(seed=2, time_scale=600.0)
    RE.subscribe(tiled_server.writer())
    exp = Experiment()
    acq = bl.detector._acq
    if where == "mid_scan":  # flowing style: current on while the scan runs
        plan = operando_cycling(bl, 0.15, 1200.0, style="flowing", scan_interval_s=300.0, initial_scan=False,
                                scan_kw={"num_angles": 40, "num_darks": 2, "num_flats": 2}, experiment=exp)
        fired = _pause_when(RE, bl.binding, lambda: acq.file is not None and acq.last_kind == "projection"
                            and acq.file.count >= 10)
    else:
        plan = galvanostatic_step(bl, -0.15, 3600.0, experiment=exp)
        fired = _pause_when(RE, bl.binding, lambda: bl.binding.time_s >= 600.0)
    with pytest.raises(RunEngineInterrupted):
        RE(plan)
    assert fired and RE.state == "paused"
    RE.abort("test abort")
    assert RE.state == "idle"
    assert bl.binding.mode == "open_circuit" and bl.binding.current_mA_cm2 == 0.0

    stops = [d for n, d in RE.docs if n == "stop"]
    assert stops[-1]["exit_status"] == "abort"
    run = tiled_server.client()[stops[-1]["run_start"]]
    assert run.metadata["stop"]["exit_status"] == "abort"
    if where == "mid_scan":
        assert run.metadata["start"]["run_kind"] == "tomo_scan"
        assert run.metadata["start"]["current_mA_cm2"] == 0.15
        frames = run["primary"]["detector"].read()
        assert 8 <= frames.shape[0] < 40  # the frame being triggered when the pause landed is not read
    else:
        assert run.metadata["start"]["run_kind"] == "galvanostatic_step"
        assert len(run["potentiostat"].read()["potentiostat-voltage_V"]) >= 9
