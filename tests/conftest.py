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
    indices), as the monitor does.

    Returns
    -------
    dict
        run uid -> {"start": doc, "stop": doc or None, "streams": {stream: {key: ndarray}}}
    """
    from collections import defaultdict
    from urllib.parse import urlparse

    import h5py
    import numpy as np

    runs, desc, sres = {}, {}, {}
    parts = defaultdict(lambda: defaultdict(list))  # (run, stream) -> key -> [arrays]
    for name, doc in docs:
        if name == "start":
            runs[doc["uid"]] = {"start": doc, "stop": None, "streams": {}}
        elif name == "stop":
            runs[doc["run_start"]]["stop"] = doc
        elif name == "descriptor":
            desc[doc["uid"]] = (doc["run_start"], doc["name"])
        elif name == "event":
            run, stream = desc[doc["descriptor"]]
            for k, v in doc["data"].items():
                parts[(run, stream)][k].append(np.asarray(v)[None])
        elif name == "stream_resource":
            sres[doc["uid"]] = doc
        elif name == "stream_datum":
            run, stream = desc[doc["descriptor"]]
            res = sres[doc["stream_resource"]]
            path = urlparse(res["uri"]).path
            with h5py.File(path, "r", swmr=True) as f:
                arr = f[res["parameters"]["dataset"]][doc["indices"]["start"]:doc["indices"]["stop"]]
            parts[(run, stream)][res["data_key"]].append(arr)
    for (run, stream), keys in parts.items():
        runs[run]["streams"][stream] = {k: np.concatenate(v) for k, v in keys.items()}
    return runs


@pytest.fixture
def resolve_runs():
    """The function :func:`runs_from_documents`."""
    return runs_from_documents
