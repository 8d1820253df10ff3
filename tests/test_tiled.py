"""Writing an experiment, and an analysis run with its slabs, into a real Tiled server (loopback) and reading them back."""

from __future__ import annotations

import json
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


def test_analysis_run_with_slabs_roundtrip(tiled_server, frames_dir):
    """An analysis run (metrics, maps, external HDF5 slabs, alarm) written by TiledWriter and read back."""
    from sscell_live.alarm import Assessment
    from sscell_live.metrics import measure
    from sscell_live.monitor import ScanResult
    from sscell_live.monitor.publish import Publisher, find_analysis_runs, read_maps
    from sscell_live.registry import METRICS
    from sscell_live.twin import CellTwin
    from sscell_live.twin.geometry import mini

    labels = CellTwin.create("lps", mini(64), 2).labels()
    rng = np.random.default_rng(0)
    volume = (labels.astype(np.float32) + rng.normal(0, 0.1, labels.shape)).astype(np.float32)
    metrics = measure(labels, 1.5, current_mA_cm2=0.15, charge_C=1e-3)
    rows = (3, 3 + labels.shape[0])  # as if detector rows 3.. were reconstructed
    result = ScanResult("raw-uid-1", 4, 7200.0, metrics, 1.5, rows, {"reconstruct": 0.5})
    raw_start = {"uid": "raw-uid-1", "experiment_uid": "exp-1", "scan_index": 4, "current_mA_cm2": 0.0,
                 "cell": {"chemistry": "lps"}}
    alarm = Assessment("watch", ["a crack penetrates 100% of the SE"], 5400.0, 600.0, None)
    docs = Publisher(frames_dir / "analysis", slab_half_rows=8).documents(
        raw_start, result, assessment=alarm, charge_C=1e-3, volume=volume, labels=labels)
    writer = tiled_server.writer()
    for name, doc in docs:
        writer(name, doc)

    client = tiled_server.client()
    (run,) = find_analysis_runs(client, "raw-uid-1")
    md = run.metadata["start"]
    assert (md["experiment_uid"], md["scan_index"], md["run_kind"]) == ("exp-1", 4, "scan_analysis")
    prim = run["primary"].read()
    for name, value in metrics.items():  # every scalar registry metric, bit for bit (None -> NaN)
        if name in METRICS and (value is None or np.ndim(value) == 0) and "map" not in name:
            expected = np.nan if value is None else float(value)
            np.testing.assert_array_equal(prim[name].values, [expected], err_msg=name)
    assert prim["alarm_level"].values[0] == "watch" and prim["time_to_failure_s"].values[0] == 5400.0
    assert json.loads(prim["alarm_reasons"].values[0]) == ["a crack penetrates 100% of the SE"]
    assert np.isnan(prim["charge_to_failure_C"].values[0])
    maps = read_maps(run)
    for name in ("contact_map_top", "void_map_bottom_um", "li_thickness_map_top_um", "porosity_factor_map_in_plane"):
        np.testing.assert_array_equal(maps[name], metrics[name], err_msg=name)
    # slabs: 16 rows around each interface, from the external HDF5 file, served by Tiled
    for side in ("top", "bottom"):
        z = int(round(metrics[f"interface_position_{side}_um"] / 1.5))
        slab = run["slabs"][f"recon_slab_{side}"].read()
        np.testing.assert_array_equal(slab[0], volume[z - 8:z + 8])
        np.testing.assert_array_equal(run["slabs"][f"labels_slab_{side}"].read()[0], labels[z - 8:z + 8])
        assert prim[f"slab_{side}_row_start"].values[0] == rows[0] + z - 8
