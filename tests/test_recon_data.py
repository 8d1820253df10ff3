"""Centre finding, file readers on real data, ring removal and bad inputs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from skimage.transform import iradon

from sscell_live.recon import (
    average_frames,
    find_center,
    minus_log,
    normalize,
    open_scan,
    reconstruct,
    reconstruct_source,
    ring_amplitude,
)
from sscell_live.recon.backends import fourier

pytestmark = pytest.mark.skipif(not fourier.available(), reason="finufft not installed")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOOTH = DATA / "aps_tooth_dxchange" / "tooth.h5"
NEXUS = DATA / "diamond_k11_nexus" / "k11-18014.nxs"
needs_data = pytest.mark.skipif(not TOOTH.exists() or not NEXUS.exists(),
                                reason="../shared/data (real test scans) not present")


@pytest.fixture(scope="module")
def twin():
    from sscell_live.twin import CellTwin

    return CellTwin.create("lps", "mini", seed=0, n_lateral=128)


def _scan(twin, offset=0.0, bad=0.0, rng=1, n_angles=180):
    from sscell_live.twin import Beam, Detector

    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    return twin.scan(theta, beam=Beam(energy_keV=25, phase_contrast=False),
                     detector=Detector(centre_offset_px=offset, bad_pixel_fraction=bad, noise=True), rng=rng)


def _truth(twin, rows):
    from sscell_live.twin.xray import material_optics

    lut = np.zeros(256)
    for code, (mu_um, _) in material_optics(25, chemistry="lps").items():
        lut[code] = mu_um * twin.geometry.voxel_size_um
    return lut[twin.labels()[rows]]


def _disk(n):
    return np.hypot(*(np.mgrid[:n, :n] - n // 2)) < n // 2 - 4


@pytest.mark.parametrize("offset", [3.3, -7.7])
def test_centre_found_within_half_pixel_on_twin(twin, offset):
    scan = _scan(twin, offset=offset, bad=0.002)
    p = minus_log(normalize(scan.projections, average_frames(scan.flats, "flats"), average_frames(scan.darks, "darks")))
    c = find_center(p.transpose(1, 0, 2), scan.angles_rad)
    assert abs(c - scan.centre_px) < 0.5, (c, scan.centre_px)


def test_reconstruct_finds_centre_itself(twin):
    scan = _scan(twin, offset=-7.7)
    rows = [twin.geometry.se_top_index + 12]
    auto = reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, rows=rows)
    given = reconstruct(scan.projections, scan.angles_rad, scan.flats, scan.darks, rows=rows, center=scan.centre_px)
    mask = _disk(128)
    assert np.sqrt(np.mean((auto - given)[:, mask] ** 2)) < 0.1 * np.sqrt(np.mean(given[:, mask] ** 2))


@needs_data
def test_tooth_dxchange_centre_and_reconstruction():
    scan = open_scan(TOOTH)
    assert scan.fmt == "dxchange" and scan.shape == (181, 2, 640)
    p = minus_log(normalize(scan.projections(), average_frames(scan.flats(), "flats"),
                            average_frames(scan.darks(), "darks")))
    c = find_center(p.transpose(1, 0, 2), scan.theta_rad)
    assert abs(c - 296) <= 1.0, c
    vol = reconstruct_source(scan)  # centre found inside, from the file block by block
    assert vol.shape == (2, 640, 640) and np.isfinite(vol).all()
    # same image as scikit-image iradon of the same sinogram with the axis moved to n // 2
    shift = round(320 - c)  # whole pixels: np.roll moves the data without interpolating it
    sino = np.roll(p[:, 0], shift, axis=1)
    ref = iradon(sino.T.astype(np.float64), np.rad2deg(scan.theta_rad), circle=True)
    at_int = reconstruct(scan.projections(), scan.theta_rad, scan.flats(), scan.darks(), center=320 - shift)[0]
    mask = _disk(640)
    assert np.corrcoef(at_int[mask], ref[mask])[0, 1] > 0.98
    # the file path (auto centre, sub-pixel) gives the same image as the in-memory path
    assert np.corrcoef(vol[0][mask], at_int[mask])[0, 1] > 0.95


@needs_data
def test_nexus_nxtomo_reads_image_keys_linked_files_and_reconstructs():
    scan = open_scan(NEXUS)
    assert scan.fmt == "nxtomo"
    assert scan.n_angles == 3001 and len(scan.flat_index) == 100 and len(scan.dark_index) == 100
    deg = np.degrees(scan.theta_rad)
    assert 89 < deg.min() < 91 and 269 < deg.max() < 271
    flats = scan.flats()
    assert flats.shape == (100, 22, 26) and flats.mean() > scan.darks().mean()
    vol = reconstruct_source(scan, center=13.0)
    assert vol.shape == (22, 26, 26) and np.isfinite(vol).all()
    # against iradon of the same sinogram (angles 90-270 degrees, axis at 13 = n // 2)
    p = minus_log(normalize(scan.projections(slice(10, 11)), average_frames(flats[:, 10:11], "flats"),
                            average_frames(scan.darks()[:, 10:11], "darks")))[:, 0]
    ref = iradon(p.T.astype(np.float64), deg, circle=True)
    mask = np.hypot(*(np.mgrid[:26, :26] - 13)) < 11
    # a 26-px crop of a larger sample: truncated, so only the inscribed disk compares (measured 0.936)
    assert np.corrcoef(vol[10][mask], ref[mask])[0, 1] > 0.9


def test_ring_removal_lowers_rings_5x_without_hurting_rmse(twin):
    rows = list(range(twin.geometry.se_top_index - 20, twin.geometry.se_bottom_index + 20, 4))
    truth = _truth(twin, rows)
    clean, bad = _scan(twin, offset=3.3, bad=0.0), _scan(twin, offset=3.3, bad=0.01)
    mask = _disk(128)

    def rec(s, rr):
        return reconstruct(s.projections, s.angles_rad, s.flats, s.darks, center=s.centre_px, rows=rows,
                           ring_removal=rr)

    def rings(v):
        return np.mean([ring_amplitude(v[i] - truth[i]) for i in range(len(rows))])

    def rmse(v):
        return np.sqrt(np.mean((v - truth)[:, mask] ** 2))

    bad_raw, bad_fixed = rec(bad, None), rec(bad, "sorting")
    clean_raw, clean_fixed = rec(clean, None), rec(clean, "sorting")
    assert rings(bad_raw) >= 5 * rings(bad_fixed), (rings(bad_raw), rings(bad_fixed))
    assert rmse(bad_fixed) <= 1.05 * rmse(clean_raw)
    assert rmse(clean_fixed) <= 1.05 * rmse(clean_raw)


# -- bad inputs ----------------------------------------------------------------------------------
def _small():
    rng = np.random.default_rng(0)
    proj = rng.uniform(500, 900, (30, 4, 32)).astype(np.float32)
    return proj, np.linspace(0, np.pi, 30, endpoint=False), np.full((2, 4, 32), 1000.0), np.full((2, 4, 32), 100.0)


def test_mismatched_shapes_are_named():
    proj, th, fl, dk = _small()
    with pytest.raises(ValueError, match="theta has 29 angles but projections have 30"):
        reconstruct(proj, th[:-1], fl, dk, center=16)
    with pytest.raises(ValueError, match=r"flats frames are \(4, 30\)"):
        reconstruct(proj, th, fl[:, :, :30], dk, center=16)
    with pytest.raises(ValueError, match="darks"):
        reconstruct(proj, th, fl, dk[:, :3], center=16)
    with pytest.raises(ValueError, match="3-D"):
        reconstruct(proj[0], th, fl, dk, center=16)


def test_empty_angles_zero_flats_nan_frames_are_named():
    proj, th, fl, dk = _small()
    with pytest.raises(ValueError, match="theta is empty"):
        reconstruct(proj[:0], th[:0], fl, dk, center=16)
    with pytest.raises(ValueError, match="flat fields have no beam"):
        reconstruct(proj, th, np.zeros_like(fl), dk, center=16)
    bad = proj.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"projection frames \[7\] are entirely NaN"):
        reconstruct(bad, th, fl, dk, center=16)
    with pytest.raises(ValueError, match="radians"):
        reconstruct(proj, np.degrees(th) * 3, fl, dk, center=16)


def test_isolated_nan_and_dead_pixels_are_repaired():
    proj, th, fl, dk = _small()
    p = proj.copy()
    p[3, 1, 5] = np.nan
    fl2 = fl.copy()
    fl2[:, 2, 9] = 100.0  # dead: flat equals dark
    out = reconstruct(p, th, fl2, dk, center=16)
    assert np.isfinite(out).all()


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "scan.h5"
    proj, th, fl, dk = _small()
    with h5py.File(path, "w") as f:
        f["exchange/data"] = proj
        f["exchange/data_white"] = fl
        f["exchange/data_dark"] = dk
        f["exchange/theta"] = np.degrees(th)
    raw = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        reconstruct_source(open_scan(cut), center=16)
    with pytest.raises(FileNotFoundError):
        open_scan(tmp_path / "missing.h5")
    ok = reconstruct_source(open_scan(path), center=16)
    assert ok.shape == (4, 32, 32)
