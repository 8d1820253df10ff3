"""The out-of-process monitor: documents over 0MQ to a monitor in another process, the alarm level back.

The RunEngine in this process publishes a short operando experiment (lps
mini, seed 1, two paused half cycles: 3 scans, 2 galvanostatic steps)
through bluesky's Publisher and 0MQ proxy (``bluesky-0MQ-proxy``, a
subprocess); ``python -m sscell_live.monitor.remote``
in a subprocess analyses it (RemoteDispatcher -> Monitor) and publishes its
alarm level, which an :class:`AlarmListener` here puts into the beamline's
alarm Signal (the one the plans read). An in-process Monitor with the same
options sees the same documents: the remote metrics must equal its metrics
exactly, and the level on the Signal must be its level.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bluesky.callbacks.zmq import Publisher
from sscell_live.plans import Experiment, operando_cycling

from sscell_live.monitor import AnalysisOptions, Monitor
from sscell_live.monitor.remote import AlarmListener
from sscell_live.storage.server import free_port

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}
LEVELS = {"ok", "watch", "imminent", "failed"}


def _listening(port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture
def remote_monitor(tmp_path):
    """bluesky's 0MQ proxy and the remote monitor, each a subprocess."""
    proxy_exe = shutil.which("bluesky-0MQ-proxy", path=str(Path(sys.executable).parent))
    assert proxy_exe, "bluesky-0MQ-proxy (installed with bluesky) not found next to the interpreter"
    in_port, out_port, alarm_port = free_port(), free_port(), free_port()
    procs, logs = [], []
    try:
        for cmd in ([proxy_exe, "--in-address", f"127.0.0.1:{in_port}", "--out-address", f"127.0.0.1:{out_port}"],
                    [sys.executable, "-m", "sscell_live.monitor.remote", "--zmq", f"127.0.0.1:{out_port}",
                     "--alarm-port", str(alarm_port), "--alarm-host", "127.0.0.1", "--threads", "1",
                     "--heartbeat-s", "0.5"]):
            logs.append(open(tmp_path / f"log{len(logs)}.txt", "wb"))
            procs.append(subprocess.Popen(cmd, stdout=logs[-1], stderr=subprocess.STDOUT))
            if len(procs) == 1:
                assert _listening(in_port) and _listening(out_port), "the 0MQ proxy did not start"
        yield in_port, alarm_port, procs[1], tmp_path / "log1.txt"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for f in logs:
            f.close()


def _link(publisher, listener, timeout=60.0):
    """Wait until documents published here reach the remote monitor (0MQ drops what is sent before
    the PUB/SUB connections are up): publish a stop document of no run, which the monitor counts and
    ignores, until the remote reports having received one."""
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        publisher("stop", {"uid": f"link-probe-{sent}", "run_start": "no-such-run", "time": time.time()})
        sent += 1
        if listener.wait_for(lambda s: s.last is not None and (s.last["documents"] or 0) > 0, 0.5):
            # probes still in flight may land later: wait until two heartbeats agree on the count
            seen = None
            while seen != listener.last["documents"]:
                seen = listener.last["documents"]
                seq = listener.last["wall"]
                listener.wait_for(lambda s: s.last["wall"] > seq + 0.9, 5)
            return seen
    raise AssertionError("documents published here never reached the remote monitor")


def test_remote_monitor_metrics_equal_in_process_and_alarm_comes_back(RE, make_beamline, remote_monitor):
    in_port, alarm_port, proc, log_path = remote_monitor
    bl = make_beamline(seed=1)
    bl.alarm.put("unset")  # so that the remote's put is visible
    puts = []
    bl.alarm.subscribe(lambda value, **kw: puts.append(value), run=False)
    listener = AlarmListener(f"127.0.0.1:{alarm_port}", bl.alarm)
    publisher = Publisher(f"127.0.0.1:{in_port}")
    local = Monitor(options=AnalysisOptions(threads=1))
    try:
        assert listener.wait_ready(120), "the remote monitor never published: " + log_path.read_text()[-3000:]
        assert listener.last["level"] is None and listener.last["documents"] == 0
        probes = _link(publisher, listener)
        RE.subscribe(publisher)
        RE.subscribe(local)
        result = RE(operando_cycling(bl, 0.15, 1800.0, max_half_cycles=2, scan_kw=SCAN,
                                     experiment=Experiment())).plan_result
        assert result["scans"] == 3
        n_docs = len(RE.docs) + probes
        assert local.wait_idle(180)
        # every document arrived, every scan was analysed there and its result came back
        assert listener.wait_for(lambda s: len(s.scans) == 3 and s.last["documents"] == n_docs, 180), \
            (len(listener.scans), listener.last, log_path.read_text()[-3000:])
        assert listener.wait_for(lambda s: s.last["seq"] >= 5, 60)  # 3 scans + 2 step re-assessments
        remote = {s["run_uid"]: s for s in listener.scans}
        local_scans = local.scans
        assert sorted(remote) == sorted(local_scans["run_uid"])
        for _, row in local_scans.iterrows():
            r = remote[row["run_uid"]]
            assert r["state"] == "ok" and r["error"] is None and r["scan_index"] == row["scan_index"]
            assert r["level"] in LEVELS
            assert r["cell_time_s"] == row["cell_time_s"]
            assert len(r["metrics"]) >= 30
            for k, v in r["metrics"].items():
                mine = float(row[k])
                assert (v == mine) or (math.isnan(v) and math.isnan(mine)), (row["scan_index"], k, v, mine)
            assert np.isfinite(r["metrics"]["contact_fraction_top"])
        # the remote's level, arrived on the acquisition side's Signal, is the in-process monitor's level
        a = local.latest_assessment
        assert listener.last["level"] == a.level == bl.alarm.get()
        assert listener.last["reasons"] == list(a.reasons)
        assert puts and puts[-1] == a.level and set(puts) <= LEVELS
        assert listener.errors == [] and local.errors == []
    finally:
        listener.close()
        publisher.close()
        local.close()
    # the analysis process stops cleanly on SIGTERM
    proc.terminate()
    assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    assert "Traceback" not in log_path.read_text()
