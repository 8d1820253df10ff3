"""Writing an experiment into a real Tiled server (loopback) and reading it back."""

from __future__ import annotations

from urllib.parse import urlparse

import h5py
import numpy as np
from sscell_live.plans import Experiment, galvanostatic_step, tomo_scan


def test_tiled_roundtrip_frames_equal_files(RE, make_beamline, tiled_server):
    bl = make_beamline(seed=1)
    writer = tiled_server.writer()
    RE.subscribe(writer)
    exp = Experiment()
    (scan_uid,) = RE(tomo_scan(bl, num_angles=30, num_darks=3, num_flats=4, experiment=exp)).run_start_uids
    (step_uid,) = RE(galvanostatic_step(bl, 0.15, 600.0, experiment=exp)).run_start_uids

    client = tiled_server.client()
    run = client[scan_uid]
    assert run.metadata["start"]["experiment_uid"] == exp.uid
    assert run.metadata["stop"]["exit_status"] == "success"
    frames = run["primary"]["detector"].read()
    angles = run["primary"]["detector-rotation_angle_deg"].read()

    # the same frames, straight from the file the documents reference
    sres = [d for n, d in RE.docs if n == "stream_resource" and d["data_key"] == "detector"]
    descs = {d["uid"]: d["name"] for n, d in RE.docs if n == "descriptor" and d["run_start"] == scan_uid}
    datums = [d for n, d in RE.docs if n == "stream_datum" and descs.get(d["descriptor"]) == "primary"]
    res_uids = {d["stream_resource"] for d in datums}
    (res,) = [r for r in sres if r["uid"] in res_uids]
    with h5py.File(urlparse(res["uri"]).path, "r") as f:
        on_disk = f[res["parameters"]["dataset"]][:]
        angles_on_disk = f["/entry/instrument/NDAttributes/rotation_angle_deg"][:]
    assert frames.shape == on_disk.shape == (30, bl.twin.geometry.nz, 96)
    np.testing.assert_array_equal(frames, on_disk)
    np.testing.assert_array_equal(angles, angles_on_disk)
    assert run["dark"]["detector"].read().shape[0] == 3

    # documents() needs the json-seq exporter the server config registers
    names = [name for name, _ in client[step_uid].documents()]
    assert names[0] == "start" and names[-1] == "stop" and "event" in names
    volts = client[step_uid]["potentiostat"].read()["potentiostat-voltage_V"]
    assert len(volts) == 12  # switch-on sample, 10 samples of 60 s, the open-circuit sample
    assert volts[0] > 0 and volts[-1] == 0.0
