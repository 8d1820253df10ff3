"""CLI, HDF5 output and Dask distribution of the reconstruction."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sscell_live.cli import main
from sscell_live.recon import open_scan, reconstruct, reconstruct_source
from sscell_live.recon.backends import fourier
from sscell_live.recon.cli import parse_rows

pytestmark = pytest.mark.skipif(not fourier.available(), reason="finufft not installed")


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    """A small twin scan written as Data Exchange."""
    from sscell_live.twin import Beam, CellTwin, Detector

    twin = CellTwin.create("lps", "mini", seed=0, n_lateral=64)
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    scan = twin.scan(theta, beam=Beam(energy_keV=25, phase_contrast=False),
                     detector=Detector(centre_offset_px=1.6, noise=True), rng=3)
    path = tmp_path_factory.mktemp("scan") / "twin.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = scan.projections
        f["exchange/data_white"] = scan.flats
        f["exchange/data_dark"] = scan.darks
        f["exchange/theta"] = np.degrees(theta)
        f["exchange/theta"].attrs["units"] = "degrees"
    return path, scan


def test_parse_rows():
    assert parse_rows("3:6,10") == [3, 4, 5, 10]
    assert parse_rows(None) is None
    with pytest.raises(ValueError, match="bad row"):
        parse_rows("a:b")


def test_cli_writes_volume_equal_to_api(scan_file, tmp_path):
    path, scan = scan_file
    out = tmp_path / "vol.h5"
    rc = main(["reconstruct", str(path), "-o", str(out), "--rows", "10:30", "--bin", "2",
               "--center", str(scan.centre_px), "-q"])
    assert rc == 0
    api = reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, center=scan.centre_px,
                      rows=slice(10, 30), binning=2)
    with h5py.File(out) as f:
        vol = f["volume"][()]
        assert f["volume"].attrs["binning"] == 2
        assert tuple(f["volume"].attrs["rows"]) == (10, 29)
    assert vol.shape == (10, 32, 32)
    np.testing.assert_allclose(vol, api, rtol=1e-5, atol=1e-6)


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    assert main(["reconstruct", str(bad), "-o", str(tmp_path / "o.h5"), "-q"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err


def test_out_of_core_blocks_equal_in_memory(scan_file, tmp_path):
    path, scan = scan_file
    whole = reconstruct_source(open_scan(path), center=scan.centre_px)
    with h5py.File(tmp_path / "o.h5", "w") as f:
        ds = f.create_dataset("v", shape=whole.shape, dtype="f4")
        # a tiny chunk size forces many blocks
        reconstruct_source(open_scan(path), center=scan.centre_px, out=ds, chunk_mb=0.05)
        np.testing.assert_allclose(ds[()], whole, rtol=1e-5, atol=1e-6)


def test_dask_local_cluster_gives_same_volume(scan_file):
    distributed = pytest.importorskip("distributed")
    path, scan = scan_file
    local = reconstruct_source(open_scan(path), center=scan.centre_px, chunk_mb=0.2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        farmed = reconstruct_source(open_scan(path), center=scan.centre_px, chunk_mb=0.2, client=client, threads=1)
        # in-memory arrays are scattered to the workers once
        arr = reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, center=scan.centre_px,
                          chunk_mb=0.2, client=client, threads=1)
    np.testing.assert_allclose(farmed, local, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arr, local, rtol=1e-5, atol=1e-6)


def test_paganin_keeps_dc_and_blocks_match_whole(scan_file):
    from sscell_live.recon import paganin_filter

    path, scan = scan_file
    pag = {"energy_keV": 25.0, "distance_mm": 100.0, "pixel_size_um": 1.5, "delta_beta": 300.0}
    flat = np.full((40, 40), 0.8, dtype=np.float32)
    assert np.allclose(paganin_filter(flat, **pag), 0.8, rtol=1e-5)  # uniform field unchanged (DC gain 1)
    step = np.where(np.arange(40) < 20, 0.9, 0.5).astype(np.float32)[None, :].repeat(40, 0)
    step[:, 19] += 0.2  # a propagation fringe at the edge
    out = paganin_filter(step, **pag)
    assert np.abs(np.diff(out[20])).max() < np.abs(np.diff(step[20])).max()  # low-pass: fringe smoothed
    # blocks of rows read with their margin give the slices of a whole-detector pass
    whole = reconstruct_source(open_scan(path), center=scan.centre_px, rows=slice(20, 40), paganin=pag)
    blocks = reconstruct_source(open_scan(path), center=scan.centre_px, rows=slice(20, 40), paganin=pag,
                                chunk_mb=0.05)
    np.testing.assert_allclose(blocks, whole, rtol=1e-4, atol=1e-6)


#: non-contiguous, with a lone row and a run of odd length (pairs packed across runs)
ROWS = [3, 4, 5, 17, 30, 31, 32]


def test_row_list_equals_full_range_indexed(scan_file):
    _, scan = scan_file

    def rec(rows, **kw):
        return reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, center=scan.centre_px,
                           rows=rows, **kw)

    full = rec(slice(0, 33))
    scale = np.abs(full).max()
    for rows in (ROWS, np.array(ROWS[::-1])):  # any sequence, any order: ascending output
        sel = rec(rows)
        assert sel.shape == (len(ROWS), 64, 64)
        # slices are packed two per transform, with other partners here than in the full range: a
        # partner leaks in only at the gridding's accuracy (eps = 1e-2), far below row-to-row differences
        err = np.abs(sel - full[ROWS]).max(axis=(1, 2)) / scale
        assert err.max() < 0.03, err
        for i, r in enumerate(ROWS):  # each output slice is its own row, not a neighbour
            own = np.sqrt(((sel[i] - full[r]) ** 2).mean())
            assert own < 0.2 * min(np.sqrt(((sel[i] - full[q]) ** 2).mean()) for q in range(33) if q != r)
    # the pixel-driven backend reconstructs slice by slice: exactly the same numbers
    np.testing.assert_array_equal(rec([17, 3, 4], algorithm="torch"), rec(slice(3, 18), algorithm="torch")[[0, 1, 14]])


def test_cli_rows_accepts_ranges_and_single_rows(scan_file, tmp_path):
    path, scan = scan_file
    assert parse_rows("100:140,900:940") == list(range(100, 140)) + list(range(900, 940))
    assert parse_rows("3:6,17,30:33") == ROWS
    out = tmp_path / "vol.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--rows", "3:6,17,30:33",
                 "--center", str(scan.centre_px), "-q"]) == 0
    api = reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, center=scan.centre_px, rows=ROWS)
    with h5py.File(out) as f:
        assert list(f["volume"].attrs["row_indices"]) == ROWS
        np.testing.assert_allclose(f["volume"][()], api, rtol=1e-5, atol=1e-6)
