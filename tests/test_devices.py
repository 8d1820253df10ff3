"""Simulated devices: bad settings refused, the cell clock, stock bluesky plans."""

from __future__ import annotations

import asyncio
import math

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from sscell_live.devices import CellBinding, TomoDetector


def test_bad_settings_are_refused(RE, make_beamline, tmp_path):
    bl = make_beamline()
    with pytest.raises(ValueError, match="outside the limits"):
        RE(bps.mv(bl.stage, 1000.0))
    with pytest.raises(ValueError, match="range"):
        RE(bps.mv(bl.potentiostat, 1e6))  # 99 mA through the 0.0001 cm2 mini cell
    with pytest.raises(ValueError, match="compliance"):
        RE(bps.mv(bl.potentiostat, 5000.0))  # 0.5 mA is in range, but needs far more than the compliance
    tight = make_beamline(compliance_V=0.01)  # lps mini needs about 0.033 V at 0.15 mA/cm2
    with pytest.raises(ValueError, match="compliance"):
        RE(bps.mv(tight.potentiostat, 0.15))
    with pytest.raises(ValueError, match="exposure"):
        TomoDetector(bl.binding, bl.stage, bl.shutter, bl.translation, tmp_path, exposure_s=-0.1)
    with pytest.raises(Exception, match="exposure"):
        RE(bps.mv(bl.detector.acquire_time, -1.0))
    with pytest.raises(ValueError, match="time_scale"):
        CellBinding(bl.twin, time_scale=0)
    missing = make_beamline(write_directory=tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    with pytest.raises(Exception, match="does not exist"):  # FailedStatus wrapping FileNotFoundError
        RE(bp.count([missing.detector]))
    assert bl.binding.mode == "open_circuit"


def test_stock_plans_step_scan_and_files(RE, make_beamline):
    bl = make_beamline()
    RE(bps.mv(bl.shutter, "open"))
    RE(bp.scan([bl.detector, bl.potentiostat], bl.stage, 0.0, 90.0, 4))
    sres = [d for n, d in RE.docs if n == "stream_resource" and d["data_key"] == "detector"]
    assert len(sres) == 1
    path = sres[0]["uri"].split("localhost", 1)[1]
    with h5py.File(path, "r") as f:
        assert f["/entry/data/data"].shape == (4, bl.twin.geometry.nz, 96)
        np.testing.assert_allclose(f["/entry/instrument/NDAttributes/rotation_angle_deg"][:], [0, 30, 60, 90])
        assert list(f["/entry/instrument/NDAttributes/image_key"][:]) == [0, 0, 0, 0]
    RE(bps.mv(bl.shutter, "closed"))
    RE(bp.count([bl.detector], 2))
    path = [d for n, d in RE.docs if n == "stream_resource"][-1]["uri"].split("localhost", 1)[1]
    with h5py.File(path, "r") as f:
        assert list(f["/entry/instrument/NDAttributes/image_key"][:]) == [2, 2]  # darks


def test_clock_scale_injected_sleep_and_cutoff(RE, make_beamline):
    waits = []

    async def sleep(s):
        waits.append(s)
        await asyncio.sleep(0)

    bl = make_beamline(time_scale=3600.0, sleep=sleep, sample_period_s=60.0)
    RE(bps.mv(bl.potentiostat, 0.15))
    RE(bps.mv(bl.potentiostat.hold, 1800.0))
    assert math.isclose(bl.binding.time_s, 1800.0)
    assert math.isclose(sum(waits), 1800.0 / 3600.0)
    assert bl.binding.pending_samples() == 31  # switch-on sample + 30 periodic samples
    # protocol cut-off below the cell's polarization: the hold ends at the first sample, at open circuit
    RE(bps.mv(bl.potentiostat.cutoff_V, 0.01))
    RE(bps.mv(bl.potentiostat.hold, 600.0))
    assert bl.binding.mode == "open_circuit" and bl.binding.limit_reason == "cutoff"
    assert math.isclose(bl.binding.time_s, 1860.0)


def test_lockstep_barrier_waits_for_consumers(RE, make_beamline):
    from sscell_live.plans import galvanostatic_step

    bl = make_beamline(lockstep=True, time_scale=1.0)  # lockstep: never waits for the wall clock
    calls = []
    bl.binding.add_lockstep_waiter(lambda: calls.append(bl.binding.time_s))
    RE(galvanostatic_step(bl, 0.15, 600.0))
    RE(galvanostatic_step(bl, -0.15, 600.0))
    assert calls == [600.0, 1200.0]
