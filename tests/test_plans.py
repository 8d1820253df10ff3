"""Plans on the simulated beamline, checked from the documents alone."""

from __future__ import annotations

import numpy as np
import pytest
from event_model import DocumentNames, schema_validators
from sscell_live.plans import Experiment, galvanostatic_step, tomo_scan


def _validate_all(docs):
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)


def _absorbance(frames, flats, darks):
    dark = darks.mean(axis=0)
    flat = flats.mean(axis=0) - dark
    return -np.log(np.clip((frames - dark) / flat, 1e-6, None))


def _potentiostat_record(runs):
    rows = []
    for run in runs.values():
        s = run["streams"].get("potentiostat")
        if s is None:
            continue
        for t, v, j, m in zip(s["potentiostat-cell_time_s"], s["potentiostat-voltage_V"],
                              s["potentiostat-current_mA_cm2"], s["potentiostat-mode"]):
            rows.append((float(t), float(v), float(j), str(m)))
    rows.sort(key=lambda r: r[0])
    return rows


def test_scans_and_steps_from_documents(RE, make_beamline, resolve_runs):
    bl = make_beamline()
    exp = Experiment()
    RE(tomo_scan(bl, num_angles=60, span_deg=360.0, num_darks=4, num_flats=6, experiment=exp))
    RE(galvanostatic_step(bl, 0.15, 1800.0, experiment=exp))
    RE(galvanostatic_step(bl, -0.15, 1800.0, experiment=exp))
    RE(tomo_scan(bl, num_angles=40, mode="fly", counter_rotation=True, num_darks=4, num_flats=6, experiment=exp))
    RE(galvanostatic_step(bl, 0.15, 600.0, experiment=exp))
    docs = list(RE.docs)
    _validate_all(docs)
    runs = resolve_runs(docs)

    kinds = [r["start"]["run_kind"] for r in runs.values()]
    assert kinds.count("tomo_scan") == 2 and kinds.count("galvanostatic_step") == 3
    assert {r["start"]["experiment_uid"] for r in runs.values()} == {exp.uid}
    assert all(r["stop"]["exit_status"] == "success" for r in runs.values())
    scans = [r for r in runs.values() if r["start"]["run_kind"] == "tomo_scan"]
    assert [s["start"]["scan_index"] for s in scans] == [0, 1]

    rows, cols = scans[0]["start"]["detector_shape"]
    assert (rows, cols) == (bl.twin.geometry.nz, 96)
    for scan, n in zip(scans, (60, 40)):
        st = scan["streams"]
        assert st["primary"]["detector"].shape == (n, rows, cols)
        assert st["dark"]["detector"].shape == (4, rows, cols)
        assert st["flat"]["detector"].shape == (6, rows, cols)
        assert st["primary"]["detector-rotation_angle_deg"].shape == (n,)
        assert np.all(np.diff(st["primary"]["detector-cell_time_s"]) > 0)
        assert set(st["dark"]["detector-image_key"]) == {2} and set(st["flat"]["detector-image_key"]) == {1}
    # counter-rotation: descending angles 0, -4.5, ...
    fly_angles = scans[1]["streams"]["primary"]["detector-rotation_angle_deg"]
    np.testing.assert_allclose(fly_angles, -4.5 * np.arange(40), atol=1e-6)

    # frame(theta) mirrors frame(theta + 180) on the 360-degree scan
    st = scans[0]["streams"]
    a = _absorbance(st["primary"]["detector"].astype(float), st["flat"]["detector"], st["dark"]["detector"])
    ang = st["primary"]["detector-rotation_angle_deg"]
    i, k = 5, int(np.flatnonzero(np.isclose(ang, ang[5] + 180.0))[0])
    q = 15  # a quarter turn away, for scale
    mirrored = min(np.sqrt(np.mean((a[i] - np.roll(a[k][:, ::-1], s, axis=1)) ** 2)) for s in (0, 1))
    unrelated = np.sqrt(np.mean((a[i] - a[i + q]) ** 2))
    signal = np.sqrt(np.mean(a[i] ** 2))
    assert mirrored < 0.05 * signal
    assert mirrored < 0.2 * unrelated

    # the voltage stream shows the current reversals; the experiment ends at open circuit
    rec = _potentiostat_record(runs)
    galv = [(v, j) for _, v, j, m in rec if m == "galvanostatic"]
    signs = np.sign([j for _, j in galv])
    assert np.count_nonzero(np.diff(signs)) >= 2
    assert all(np.sign(v) == np.sign(j) for v, j in galv)
    assert rec[-1][3] == "open_circuit" and rec[-1][2] == 0.0


def test_plans_validate_before_first_message(RE, make_beamline):
    bl = make_beamline()
    with pytest.raises(ValueError, match="outside the rotation stage limits"):
        list(tomo_scan(bl, num_angles=10, start_deg=350.0, span_deg=180.0))
    with pytest.raises(ValueError, match="mode"):
        list(tomo_scan(bl, num_angles=10, mode="spiral"))
    with pytest.raises(ValueError, match="range"):
        list(galvanostatic_step(bl, 1e6, 60.0))
    with pytest.raises(ValueError, match="duration_s"):
        list(galvanostatic_step(bl, 0.1, -5.0))
    assert RE.docs == []
