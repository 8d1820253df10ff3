"""Slab selection: interfaces from the projections, regions at their own binning in one HDF5 file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sscell_live.recon import (
    ArraySource,
    Region,
    find_interfaces,
    plan_regions,
    reconstruct,
    reconstruct_regions,
)
from sscell_live.recon.backends import fourier

pytestmark = pytest.mark.skipif(not fourier.available(), reason="finufft not installed")


@pytest.fixture(scope="module")
def twin():
    from sscell_live.twin import CellTwin

    return CellTwin.create("lps", "mini", seed=0, n_lateral=96)


@pytest.mark.parametrize("phase_contrast", [True, False])
def test_interfaces_found_within_one_row_of_truth(twin, phase_contrast):
    from sscell_live.twin import Beam

    theta = np.linspace(0, np.pi, 9, endpoint=False)
    scan = twin.scan(theta, beam=Beam(energy_keV=25, phase_contrast=phase_contrast), rng=3)
    top, bottom = find_interfaces(scan.projections, scan.flats, scan.darks)
    assert abs(top - twin.geometry.se_top_index) <= 1, top
    assert abs(bottom - twin.geometry.se_bottom_index) <= 1, bottom
    with pytest.raises(ValueError, match="cannot locate the solid electrolyte"):
        find_interfaces(np.full((2, 40, 16), 500.0), np.full((40, 16), 1000.0), None)


def test_plan_regions_covers_rows_with_binned_bulk():
    regs = plan_regions(180, (60, 120), half_width=8, bulk_binning=4, outer=True)
    assert [r.name for r in regs] == ["outer_top", "interface_top", "bulk", "interface_bottom", "outer_bottom"]
    assert regs[1] == Region("interface_top", 52, 68, 1) and regs[2].binning == 4
    # contiguous, binned regions a multiple of their binning
    assert all(a.stop == b.start for a, b in zip(regs, regs[1:]))
    assert all((r.stop - r.start) % r.binning == 0 for r in regs)
    assert plan_regions(180, (60, 70), half_width=8) == [Region("interfaces", 52, 78, 1)]
    with pytest.raises(ValueError, match="not ordered"):
        plan_regions(180, (120, 60))


def test_reconstruct_regions_writes_one_group_per_region(twin, tmp_path):
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    scan = twin.scan(theta, rng=4)
    src = ArraySource(scan.projections, theta, scan.flats.mean(0), scan.darks.mean(0),
                      metadata={"pixel_size_um": scan.pixel_size_um})
    path = tmp_path / "regions.h5"
    res = reconstruct_regions(src, center=scan.centre_px, out=path, half_width=6, bulk_binning=4)
    top, bottom = res["interfaces"]
    assert abs(top - twin.geometry.se_top_index) <= 1 and abs(bottom - twin.geometry.se_bottom_index) <= 1
    with h5py.File(path) as f:
        assert set(f) == {"interface_top", "bulk", "interface_bottom"}
        assert list(f.attrs["interfaces_rows"]) == [top, bottom]
        slab, bulk = f["interface_top/volume"], f["bulk/volume"]
        assert slab.shape == (12, 96, 96) and bulk.shape[1:] == (24, 24)
        assert slab.attrs["voxel_size_um"] == pytest.approx(scan.pixel_size_um)
        assert bulk.attrs["voxel_size_um"] == pytest.approx(4 * scan.pixel_size_um)
        assert list(slab.attrs["rows"]) == [top - 6, top + 6]
        assert list(slab.attrs["z_range_um"]) == pytest.approx([(top - 6) * 1.5, (top + 6) * 1.5])
        r0, r1 = bulk.attrs["rows"]
        assert bulk.shape[0] == (r1 - r0) // 4 and f["interface_bottom/volume"].attrs["rows"][0] == r1
        # the slab is the full-resolution reconstruction of its rows
        ref = reconstruct(scan.projections, theta, scan.flats, scan.darks, center=scan.centre_px,
                          rows=range(top - 6, top + 6))
        np.testing.assert_allclose(slab[()], ref, atol=1e-6)


def test_cli_regions_auto(twin, tmp_path):
    from sscell_live.cli import main

    theta = np.linspace(0, np.pi, 60, endpoint=False)
    scan = twin.scan(theta, rng=5)
    path, out = tmp_path / "scan.h5", tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = scan.projections
        f["exchange/data_white"] = scan.flats
        f["exchange/data_dark"] = scan.darks
        f["exchange/theta"] = np.degrees(theta)
    assert main(["reconstruct", str(path), "-o", str(out), "--regions", "auto", "--slab-rows", "4",
                 "--center", str(scan.centre_px), "-q"]) == 0
    with h5py.File(out) as f:
        assert set(f) == {"interface_top", "bulk", "interface_bottom"}
        assert f["interface_top/volume"].shape == (8, 96, 96) and f["bulk/volume"].attrs["binning"] == 4
