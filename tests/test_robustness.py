"""Robustness of acquisition, storage and the live monitor against bad data and a Tiled outage.

One module-scoped experiment (lps mini, seed 1, 24-angle scans) on a real
RunEngine, written to a real Tiled server (its own: the test stops it) by
``TiledServer.writer(background=True, backup_directory=...)``, with the live
monitor subscribed. A test-only callback, subscribed first, breaks scans at
their stop document (before the monitor's worker reads them):

====  =====================================================================
scan  what happens
====  =====================================================================
0     normal (the segmentation calibration is fitted here)
1     missing frames: the primary frame dataset cut to 22 of 24 frames
2     normal
3     corrupt HDF5 file: the primary file's first kilobyte overwritten
4     normal
5     NaN-filled frame: the primary frames rewritten as float32, frame 6 NaN
6     normal
7     aborted mid-scan (a pause from another thread, then RE.abort)
8     normal
9     the Tiled server stops in the middle of this run, stays down through
      a galvanostatic step, and comes back after it
10    normal (written straight to Tiled again)
====  =====================================================================

Then ``sscell-live replay-backup`` (:func:`sscell_live.storage.replay_backup`)
writes what TiledWriter backed up during the outage. Twin truth (contact fractions at each scan's
start; no current flows during these scans) is used by the test only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import shutil
import threading
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from sscell_live.plans import Experiment, galvanostatic_step, tomo_scan

from sscell_live.monitor import Monitor, RunData, load_scan
from sscell_live.monitor.analysis import ScanDataError
from sscell_live.cli import main as cli_main
from sscell_live.storage import TiledServer, replay_backup

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}
FRAMES = "/entry/data/data"
MISSING, CORRUPT, NAN, ABORTED, OUTAGE = 1, 3, 5, 7, 9
NORMAL = (0, 2, 4, 6, 8, 9, 10)
NAN_FRAME = 5  # 0-based frame index in the file: seq_num 6


def _break(path: str, fault: str) -> None:
    """Damage a closed detector file the way ``fault`` says (test-side only)."""
    if fault == "missing":
        with h5py.File(path, "r+") as f:
            f[FRAMES].resize(22, axis=0)  # the detector wrote 22 of the 24 frames the documents name
    elif fault == "corrupt":
        with open(path, "r+b") as f:
            f.write(b"\xff" * 1024)  # the HDF5 superblock is gone
    elif fault == "nan":
        with h5py.File(path, "r+") as f:
            a = f[FRAMES][...].astype(np.float32)
            a[NAN_FRAME] = np.nan
            del f[FRAMES]
            f.create_dataset(FRAMES, data=a)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    import tiled.client.utils as tiled_utils
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline

    root = tmp_path_factory.mktemp("robust")
    frames, backup = root / "frames", root / "backup"
    mp = pytest.MonkeyPatch()
    # an outage longer than the client's retry window (45 s by default) sends runs to the backup;
    # shrink the window so the test's outage (a scan and a step) is "long"
    mp.setattr(tiled_utils, "TILED_RETRY_TIMEOUT", 1.0)
    mp.setattr(tiled_utils, "TILED_RETRY_ATTEMPTS", 2)
    server = TiledServer(root / "tiled", readable_storage=[frames]).start()
    RE = RunEngine({}, call_returns_result=True)
    RE.docs = []
    bl = SimBeamline.create("lps", "mini", 1, n_lateral=96, time_scale=math.inf, write_directory=frames)
    writer = server.writer(backup_directory=backup, background=True)
    truth, files, scan_of, desc_run = {}, {}, {}, {}
    outage = {"down_at_doc": None}

    def track_descriptors(name, doc):
        if name == "descriptor":
            desc_run[doc["uid"]] = doc["run_start"]

    def test_side(name, doc):  # truth and damage: test-only, subscribed before the writer and the monitor
        RE.docs.append((name, doc))
        if name == "start" and doc["run_kind"] == "tomo_scan":
            t = bl.twin.truth()
            truth[doc["scan_index"]] = {s: t[f"contact_fraction_{s}"] for s in ("top", "bottom")}
            scan_of[doc["uid"]] = doc["scan_index"]
        elif name == "stream_resource" and doc["data_key"] == "detector":
            files.setdefault(doc["run_start"], []).append(urlparse(doc["uri"]).path)
        elif (name == "event" and outage["down_at_doc"] is None
              and scan_of.get(desc_run.get(doc["descriptor"])) == OUTAGE):
            # the server goes down mid-run, after the writer has sent what it had
            assert writer.flush(60)
            server.stop()
            outage["down_at_doc"] = len(RE.docs)
        elif name == "stop" and doc["run_start"] in scan_of:
            fault = {MISSING: "missing", CORRUPT: "corrupt", NAN: "nan"}.get(scan_of[doc["run_start"]])
            if fault:
                _break(files[doc["run_start"]][-1], fault)  # the primary stream's file

    monitor = Monitor(alarm=bl.alarm, queue_size=16)
    RE.subscribe(track_descriptors)
    RE.subscribe(test_side)
    RE.subscribe(writer)
    RE.subscribe(monitor)
    exp = Experiment()
    scan_uids = {}
    try:
        for i in range(ABORTED):
            (scan_uids[i],) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        # an operator aborts scan 7 mid-way (as test_plans_abort does: pause from another thread, then abort)
        acq, fired = bl.detector._acq, []

        async def sleep(seconds):
            if not fired and acq.file is not None and acq.last_kind == "projection" and acq.file.count >= 10:
                fired.append(True)
                threading.Thread(target=RE.request_pause, kwargs={"defer": False}, daemon=True).start()
            await asyncio.sleep(seconds)

        bl.binding.time_scale, bl.binding.sleep = 600.0, sleep
        with pytest.raises(RunEngineInterrupted):
            RE(tomo_scan(bl, **SCAN, experiment=exp))
        RE.abort("operator abort (test)")
        bl.binding.time_scale, bl.binding.sleep = math.inf, asyncio.sleep
        scan_uids[ABORTED] = [d for n, d in RE.docs if n == "start"][-1]["uid"]
        (scan_uids[8],) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        (scan_uids[OUTAGE],) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        assert not server.running
        (step_uid,) = RE(galvanostatic_step(bl, 0.15, 600.0, experiment=exp)).run_start_uids
        assert writer.flush(120)
        backed_up = sorted(p.name for p in backup.glob("*.jsonl"))
        server.start()
        (scan_uids[10],) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        assert writer.flush(120)
        # the operator's command (sscell-live replay-backup BACKUP_DIR TILED_URI), in this process
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cli_main(["replay-backup", str(backup), server.uri, "--api-key", server.api_key, "--json"])
        replayed = json.loads(out.getvalue())
        assert monitor.wait_idle(240), "analysis did not finish"
        yield {"RE": RE, "bl": bl, "server": server, "monitor": monitor, "writer": writer, "truth": truth,
               "scan_uids": scan_uids, "step_uid": step_uid, "files": files, "backup": backup,
               "backed_up": backed_up, "replayed": replayed, "replay_rc": rc, "exp": exp, "fired": fired}
    finally:
        monitor.close()
        writer.close(30)
        server.stop()
        mp.undo()


def _status(m, scan_index):
    (st,) = [s for s in m.statuses if s.scan_index == scan_index]
    return st


def _assert_normal(f, scan_index, tol=0.1):
    m = f["monitor"]
    st = _status(m, scan_index)
    assert st.state == "ok", (scan_index, st.error)
    row = m.scans[m.scans["scan_index"] == scan_index].iloc[0]
    for side in ("top", "bottom"):
        measured, true = row[f"contact_fraction_{side}"], f["truth"][scan_index][side]
        assert abs(measured - true) < tol, (scan_index, side, measured, true)
    for col in ("se_thickness_um", "void_volume_top_um3", "li_thickness_bottom_um"):
        assert np.isfinite(row[col]), (scan_index, col)


def test_acquisition_continued_and_every_run_is_in_tiled(faulty):
    f = faulty
    client = f["server"].client()
    assert f["fired"], "the abort was not triggered mid-scan"
    uids = [f["scan_uids"][i] for i in range(11)] + [f["step_uid"]]
    for i, uid in enumerate(uids):
        run = client[uid]
        stop = run.metadata["stop"]
        assert stop is not None, i
        assert stop["exit_status"] == ("abort" if i == ABORTED else "success"), (i, stop["exit_status"])
        assert run.metadata["start"]["experiment_uid"] == f["exp"].uid
    assert f["monitor"].errors == [] and f["writer"].errors == []
    # every scan reached the monitor, in order, with a status
    assert [s.scan_index for s in f["monitor"].statuses] == list(range(11))


def test_normal_scans_are_analysed_normally_after_each_fault(faulty):
    for i in NORMAL:
        _assert_normal(faulty, i)
    # the calibration was fitted on scan 0 and held: degraded scans never replace it
    exp_state = faulty["monitor"]._latest.state
    assert exp_state.calibration_run_uid == faulty["scan_uids"][0]


def test_missing_frames_are_named_and_the_scan_reconstructed_from_the_rest(faulty):
    m, path = faulty["monitor"], faulty["files"][faulty["scan_uids"][MISSING]][-1]
    st = _status(m, MISSING)
    assert st.state == "ok", st.error
    (warning,) = m.results[faulty["scan_uids"][MISSING]].warnings
    assert warning.startswith("2 of 24 projections unusable, reconstructed from the other 22")
    assert f"seq_num 23-24 missing: {path}:{FRAMES} holds only 22 frames" in warning
    _assert_normal(faulty, MISSING)
    _assert_normal(faulty, MISSING + 1)


def test_corrupt_file_is_an_error_naming_the_file_and_the_next_scan_recovers(faulty):
    m, path = faulty["monitor"], faulty["files"][faulty["scan_uids"][CORRUPT]][-1]
    st = _status(m, CORRUPT)
    assert st.state == "error" and st.level is None
    assert st.error.startswith("ScanDataError: run ") and "24 of 24 projections unusable" in st.error
    assert f"cannot read {path}" in st.error and "file signature not found" in st.error
    assert "Traceback" in st.traceback
    assert CORRUPT not in set(m.scans["scan_index"])  # no metrics row from a broken scan
    _assert_normal(faulty, CORRUPT + 1)


def test_nan_frame_is_dropped_and_named(faulty):
    m = faulty["monitor"]
    st = _status(m, NAN)
    assert st.state == "ok", st.error
    (warning,) = m.results[faulty["scan_uids"][NAN]].warnings
    assert warning == ("1 of 24 projections unusable, reconstructed from the other 23: primary: 1 frame(s) "
                       f"with NaN or infinite values dropped (seq_num {NAN_FRAME + 1})")
    _assert_normal(faulty, NAN)
    _assert_normal(faulty, NAN + 1)


def test_aborted_scan_gets_a_clear_status_and_partial_frames_are_stored(faulty):
    f = faulty
    st = _status(f["monitor"], ABORTED)
    assert st.state in ("error", "aborted")
    assert "exit_status 'abort'" in st.error and "operator abort (test)" in st.error
    assert "partial scan is not analysed" in st.error
    run = f["server"].client()[f["scan_uids"][ABORTED]]
    assert 8 <= run["primary"]["detector"].read().shape[0] < 24  # what was taken is stored
    _assert_normal(f, ABORTED + 1)


def test_tiled_outage_backup_replayed_and_nothing_lost(faulty):
    f = faulty
    outage_uid, step_uid = f["scan_uids"][OUTAGE], f["step_uid"]
    # TiledWriter backed up the two runs that met the outage, whole, one file per run
    assert f["backed_up"] == sorted(f"{u.split('-')[0]}.jsonl" for u in (outage_uid, step_uid))
    assert f["replay_rc"] == 0
    by_uid = {r["run_uid"]: r for r in f["replayed"]}
    assert set(by_uid) == {outage_uid, step_uid}
    assert all(r["state"] == "written" and r["error"] is None for r in f["replayed"]), f["replayed"]
    assert by_uid[outage_uid]["replaced_partial"] and not by_uid[step_uid]["replaced_partial"]
    assert by_uid[outage_uid]["documents"] == len(_run_docs(f["RE"].docs, outage_uid))
    assert by_uid[step_uid]["documents"] == len(_run_docs(f["RE"].docs, step_uid))
    assert not list(f["backup"].glob("*.jsonl")) and len(list(f["backup"].glob("*.jsonl.replayed"))) == 2
    # the replayed scan reads back from Tiled equal to its file; the step's potentiostat samples are all there
    client = f["server"].client()
    path = f["files"][outage_uid][-1]
    with h5py.File(path, "r") as h:
        np.testing.assert_array_equal(client[outage_uid]["primary"]["detector"].read(), h[FRAMES][:])
    volts = client[step_uid]["potentiostat"].read()["potentiostat-voltage_V"]
    n_events = sum(len(d["seq_num"]) if n == "event_page" else 1 for n, d in _run_docs(f["RE"].docs, step_uid)
                   if n in ("event", "event_page"))
    assert len(volts) == n_events == 12
    names = [n for n, _ in client[step_uid].documents()]
    assert names[0] == "start" and names[-1] == "stop"
    # analysis never depended on Tiled
    _assert_normal(f, OUTAGE)
    _assert_normal(f, OUTAGE + 1)
    # a second replay finds nothing left to do
    assert replay_backup(f["backup"], client) == []


def _run_docs(docs, run_uid):
    """The documents of one run, in order."""
    descs = {d["uid"] for n, d in docs if n == "descriptor" and d["run_start"] == run_uid}
    out = []
    for n, d in docs:
        if (n == "start" and d["uid"] == run_uid) or d.get("run_start") == run_uid or d.get("descriptor") in descs:
            out.append((n, d))
    return out


def test_too_many_missing_frames_is_an_error_and_lost_documents_are_counted(faulty, tmp_path):
    """load_scan on scan 2's documents, its primary file cut to 12 frames; then with two StreamDatums lost."""
    f = faulty
    uid = f["scan_uids"][2]
    src = f["files"][uid][-1]
    cut = tmp_path / "cut.h5"
    shutil.copy(src, cut)
    with h5py.File(cut, "r+") as h:
        h[FRAMES].resize(12, axis=0)

    def run_data(uri_from=None, uri_to=None, drop_seq=()):
        docs = _run_docs(f["RE"].docs, uid)
        run = None
        for n, d in docs:
            if n == "stream_resource" and uri_from and d["uri"].endswith(uri_from):
                d = {**d, "uri": f"file://localhost{uri_to}"}
            if n == "stream_datum" and d["seq_nums"]["start"] in drop_seq and \
                    d["descriptor"] in {x["uid"] for m, x in docs if m == "descriptor" and x["name"] == "primary"}:
                continue
            if n == "start":
                run = RunData(d)
            else:
                run.add(n, d)
        return run

    with pytest.raises(ScanDataError) as err:
        load_scan(run_data(src, str(cut)))
    msg = str(err.value)
    assert f"run {uid}: 12 of 24 projections unusable (at most 10% may be)" in msg
    assert f"seq_num 13-24 missing: {cut}:{FRAMES} holds only 12 frames" in msg
    scan = load_scan(run_data(drop_seq=(4, 9)))
    assert scan["projections"].shape[0] == 22 and len(scan["theta_rad"]) == 22
    assert "primary: 2 of 24 planned frames never announced" in scan["warnings"][0]
    # the angles kept are the ones of the frames kept (7.5-degree steps; seq_num 4 and 9 lost)
    expect = np.delete(np.arange(24) * 7.5, [3, 8])
    np.testing.assert_allclose(np.degrees(scan["theta_rad"]), expect, atol=1e-9)
