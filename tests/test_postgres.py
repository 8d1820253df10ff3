"""Tiled on a PostgreSQL catalog (and PostgreSQL event tables): the same write, read-back and replay as SQLite.

A real PostgreSQL server (Debian's binaries, ``apt-get install postgresql``)
is started in a temporary folder on a free loopback port
(:class:`sscell_live.storage.LocalPostgres`; as the ``postgres`` account
when the tests run as root) and stopped at the end. Missing binaries fail
this test loudly: it never skips.

A short experiment (lps mini, seed 1: scan, galvanostatic step, scan) is
written live by TiledWriter with the monitor subscribed; then it is read
back (frames equal to the files, potentiostat table equal to the events,
``documents()``), replayed from Tiled through a fresh monitor (metrics equal
the live ones bit for bit), and a run Tiled holds only partly is completed
from a TiledWriter backup file (:func:`replay_backup`, which deletes the
partial run: a PostgreSQL-specific SQL path in Tiled).
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from sscell_live.plans import Experiment, galvanostatic_step, tomo_scan

from sscell_live.monitor import AnalysisOptions, Monitor
from sscell_live.monitor.replay import replay
from sscell_live.storage import LocalPostgres, TiledServer, find_postgres_bin, replay_backup

SCAN = {"num_angles": 24, "num_darks": 2, "num_flats": 2}


@pytest.fixture(scope="module")
def postgres():
    find_postgres_bin()  # FileNotFoundError naming the package to install: never a skip
    with LocalPostgres() as pg:
        yield pg


def _psql(pg, sql: str) -> str:
    return pg._run("psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", pg.database, "-tAc",
                   sql).strip()


def test_postgres_catalog_write_read_back_and_replay(postgres, tmp_path, frames_dir, RE, make_beamline):
    pg = postgres
    server = TiledServer(tmp_path / "tiled", readable_storage=[frames_dir], catalog_uri=pg.catalog_uri,
                         table_storage_uri=pg.storage_uri)
    assert f'uri: "{pg.catalog_uri}"' in (server.start().config_path.read_text())
    try:
        bl = make_beamline(seed=1)
        writer = server.writer()
        live = Monitor(options=AnalysisOptions(threads=1))
        writer_token = RE.subscribe(writer)
        live_token = RE.subscribe(live)
        exp = Experiment()
        (scan0,) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        (step,) = RE(galvanostatic_step(bl, 0.15, 1800.0, experiment=exp)).run_start_uids
        (scan1,) = RE(tomo_scan(bl, **SCAN, experiment=exp)).run_start_uids
        assert live.wait_idle(120)
        client = server.client()

        # read-back: the catalog rows live in PostgreSQL, frames equal the files, the table equals the events
        assert _psql(pg, f"SELECT count(*) FROM nodes WHERE key IN ('{scan0}', '{step}', '{scan1}')") == "3"
        run = client[scan0]
        assert run.metadata["start"]["experiment_uid"] == exp.uid and run.metadata["stop"]["exit_status"] == "success"
        (res,) = [d for n, d in RE.docs if n == "stream_resource" and d["run_start"] == scan0
                  and d["data_key"] == "detector" and d["uri"] in _uris_of_stream(RE.docs, scan0, "primary")]
        with h5py.File(urlparse(res["uri"]).path, "r") as f:
            np.testing.assert_array_equal(run["primary"]["detector"].read(), f[res["parameters"]["dataset"]][:])
        volts = np.asarray(client[step]["potentiostat"].read()["potentiostat-voltage_V"])
        sent = [d["data"]["potentiostat-voltage_V"] for n, d in RE.docs
                if n == "event" and d["descriptor"] in _descriptors(RE.docs, step, "potentiostat")]
        np.testing.assert_array_equal(volts, sent)
        # the event tables went to PostgreSQL too (Tiled names them table_<hash>), registered as such
        tables = _psql(pg, "SELECT string_agg(table_name, ',') FROM information_schema.tables "
                           "WHERE table_schema = 'public'").split(",")
        assert any(t.startswith("table_") for t in tables), tables
        assert int(_psql(pg, "SELECT count(*) FROM assets WHERE data_uri LIKE 'postgresql:%'")) >= 1
        assert int(_psql(pg, "SELECT count(*) FROM assets WHERE data_uri LIKE 'duckdb:%'")) == 0
        names = [n for n, _ in client[step].documents()]
        assert names[0] == "start" and names[-1] == "stop" and "event" in names

        # replay from Tiled through a fresh monitor: the live metrics, bit for bit
        again = Monitor(options=AnalysisOptions(threads=1))
        out = replay(client, exp.uid, again, speed="max", progress=False, timeout=120)
        assert out["runs"] == 3 and out["scans"] == 2 and out["idle"]
        a, b = live.scans, again.scans
        assert list(a["run_uid"]) == list(b["run_uid"]) == [scan0, scan1]
        metric_cols = [c for c in a.columns if c not in ("row_kind", "run_uid")]
        assert len(metric_cols) > 30
        for c in metric_cols:
            np.testing.assert_array_equal(a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float), err_msg=c)
        assert again.latest_assessment.level == live.latest_assessment.level
        live.close()
        again.close()

        # a run Tiled holds only partly (the outage began mid-run) is completed from the backup
        docs = []
        token = RE.subscribe(lambda n, d: docs.append((n, d)))
        RE.unsubscribe(writer_token)  # the live writer misses this run
        RE.unsubscribe(live_token)
        (late,) = RE(galvanostatic_step(bl, -0.15, 600.0, experiment=exp)).run_start_uids
        RE.unsubscribe(token)
        from bluesky_tiled_plugins import TiledWriter

        partial = TiledWriter(client)
        for n, d in docs[:3]:  # start and the first descriptor, then the server "went away"
            partial(n, d)
        assert late in client and client[late].metadata.get("stop") is None
        backup = tmp_path / "backup"
        backup.mkdir()
        (backup / f"{late.split('-')[0]}.jsonl").write_text(
            "".join(json.dumps({"name": n, "doc": d}) + "\n" for n, d in docs))
        (rec,) = replay_backup(backup, client)
        assert rec.state == "written" and rec.replaced_partial and rec.documents == len(docs), rec
        assert client[late].metadata["stop"]["exit_status"] == "success"
        n_events = sum(1 for n, _ in docs if n == "event")
        assert len(client[late]["potentiostat"].read()["potentiostat-voltage_V"]) == n_events == 12
    finally:
        server.stop()


def _descriptors(docs, run_uid, stream):
    return {d["uid"] for n, d in docs if n == "descriptor" and d["run_start"] == run_uid and d["name"] == stream}


def _uris_of_stream(docs, run_uid, stream):
    descs = _descriptors(docs, run_uid, stream)
    res_uids = {d["stream_resource"] for n, d in docs if n == "stream_datum" and d["descriptor"] in descs}
    return {d["uri"] for n, d in docs if n == "stream_resource" and d["uid"] in res_uids}


def test_missing_postgres_binaries_fail_loudly(monkeypatch, tmp_path):
    import sscell_live.storage.postgres as pgmod

    monkeypatch.setenv("SSCELL_PG_BIN", str(tmp_path))
    monkeypatch.setattr(pgmod, "DEBIAN_GLOB", str(tmp_path / "none" / "*"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install -y postgresql"):
        pgmod.find_postgres_bin()
