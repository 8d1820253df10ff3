"""Shared fixtures: one Tiled server per test session, and simulated beamlines.

The Tiled server is real (``tiled serve config`` on loopback, SQLite catalog,
API key, json-seq exporter for BlueskyRun); it takes about 10 s to start,
so every test that needs one shares this session-scoped instance.
"""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory):
    """Detector write directory shared by the session (served by reference by Tiled)."""
    return tmp_path_factory.mktemp("frames")


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory, frames_dir):
    """A running ``sscell_live.storage.TiledServer`` (one per session)."""
    from sscell_live.storage.server import TiledServer

    server = TiledServer(tmp_path_factory.mktemp("tiled"), readable_storage=[frames_dir])
    server.start()
    yield server
    server.stop()


#: Closed-loop experiments (cycle_until_failure with the live monitor, lockstep), shared by
#: test_monitor_e2e.py and test_replay.py: name -> (chemistry, seed, |j| mA/cm2, half cycle s,
#: style, scan interval s, cut-off V, max half cycles). Mini cells, 96 columns, 24-angle scans.
CLOSED_LOOP = {
    "lps": ("lps", 1, 0.25, 1800.0, "paused", None, 10.0, 20),  # twin shorts in the 11th half cycle (5.0-5.5 h)
    "lsps": ("lsps", 1, 1.0, 5 * 3600.0, "flowing", 3600.0, 4.0, 4),  # twin hits the 4 V cut-off at 9.9 h
    "llzo": ("llzo", 1, 0.035, 3600.0, "paused", None, 10.0, 10),  # twin shorts in the 3rd half cycle (2-3 h)
    "lps_low_current": ("lps", 1, 0.02, 1800.0, "paused", None, 10.0, 6),  # control: unfailed after 60 half cycles
}
CLOSED_LOOP_SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}


@pytest.fixture(scope="session")
def closed_loop(request, frames_dir):
    """``get(name, tiled=True)``: run (once per session) a :data:`CLOSED_LOOP` experiment with the live monitor.

    With ``tiled``, raw runs go to the session's Tiled server through a
    TiledWriter on the RunEngine, and the monitor emits its analysis runs to
    Tiled through its own TiledWriter and writes slabs next to the frames.
    The monitor runs in lockstep (the plan waits for it at every run
    boundary: deterministic). Twin truth is recorded at each
    scan's start by a test-only callback (the current is off during
    paused-style scans; in the flowing style it flows on during the scan).

    Returns
    -------
    dict
        ``result`` (the plan's), ``monitor`` (closed), ``beamline``,
        ``docs`` (every raw document), ``truth`` (scan run uid -> twin truth
        scalars), ``twin_failed`` (truth at the end), ``name``.
    """
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline
    from sscell_live.monitor import Monitor
    from sscell_live.plans import Experiment, cycle_until_failure

    cache = {}
    tiled_server = None

    def get(name, tiled=True):
        nonlocal tiled_server
        if name in cache:
            return cache[name]
        if tiled and tiled_server is None:  # started only when a test needs it
            tiled_server = request.getfixturevalue("tiled_server")
        chem, seed, j, half, style, interval, cutoff, max_half = CLOSED_LOOP[name]
        RE = RunEngine({}, call_returns_result=True)
        bl = SimBeamline.create(chem, "mini", seed, n_lateral=96, time_scale=math.inf, lockstep=True,
                                write_directory=frames_dir)
        monitor = Monitor(alarm=bl.alarm, emit=tiled_server.writer() if tiled else None,
                          slab_directory=frames_dir / "analysis")
        bl.binding.add_lockstep_waiter(lambda: monitor.wait_idle(300))
        docs, truth = [], {}

        def test_side(name_, doc):  # test-only: twin truth at each scan's start
            docs.append((name_, doc))
            if name_ == "start" and doc["run_kind"] == "tomo_scan":
                t = bl.twin.truth()
                truth[doc["uid"]] = {k: v for k, v in t.items() if isinstance(v, (bool, int, float))}

        RE.subscribe(test_side)
        if tiled:
            RE.subscribe(tiled_server.writer())
        RE.subscribe(monitor)
        result = RE(cycle_until_failure(bl, j, half, style=style, scan_interval_s=interval, cutoff_V=cutoff,
                                        max_half_cycles=max_half, scan_kw=CLOSED_LOOP_SCAN,
                                        experiment=Experiment())).plan_result
        assert monitor.wait_idle(300), f"{name}: the monitor did not finish"
        monitor.close()
        cache[name] = {"name": name, "result": result, "monitor": monitor, "beamline": bl, "docs": docs,
                       "truth": truth, "twin_failed": bool(bl.twin.failed)}
        return cache[name]

    return get


@pytest.fixture
def make_beamline(frames_dir, RE):
    """Factory of simulated beamlines writing into the session's frames directory."""
    from sscell_live.devices import SimBeamline

    def make(chemistry="lps", seed=0, n_lateral=96, **kw):
        kw.setdefault("time_scale", math.inf)
        kw.setdefault("write_directory", frames_dir)
        return SimBeamline.create(chemistry, "mini", seed, n_lateral=n_lateral, **kw)

    return make


@pytest.fixture
def RE():
    """A fresh RunEngine whose documents are also kept in ``RE.docs``."""
    from bluesky import RunEngine

    engine = RunEngine({}, call_returns_result=True)
    engine.docs = []
    engine.subscribe(lambda name, doc: engine.docs.append((name, doc)))
    return engine


def runs_from_documents(docs):
    """Group documents by run and resolve every stream's data, frames read from the files referenced.

    Uses the documents alone (StreamResource uri + dataset, StreamDatum
    indices) through :class:`sscell_live.monitor.frames.RunData`, as the
    monitor does.

    Returns
    -------
    dict
        run uid -> {"start": doc, "stop": doc or None, "streams": {stream: {key: ndarray}}}
    """
    from sscell_live.monitor.frames import RunData

    out = {}
    for uid, run in RunData.from_documents(docs).items():
        streams = {}
        for stream in dict.fromkeys(run.descriptors.values()):
            data = run.resolve(stream)
            if data:
                streams[stream] = data
        out[uid] = {"start": run.start, "stop": run.stop, "streams": streams}
    return out


@pytest.fixture
def resolve_runs():
    """The function :func:`runs_from_documents`."""
    return runs_from_documents
