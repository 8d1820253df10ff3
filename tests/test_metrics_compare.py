"""compare(): local current density with uncertainty against the twin's continuous truth."""

import numpy as np
import pytest

from sscell_live.metrics import compare
from sscell_live.metrics.pairwise import _bin_mean
from sscell_live.segment._recon import reconstruct_scan
from sscell_live.twin import CellTwin
from sscell_live.twin.truth import current_density_map_mA_cm2

DT_S = 900.0  # 15 min between scans


def _grey(twin):
    angles = np.linspace(0, np.pi, 150, endpoint=False)
    scan = twin.scan(angles)
    return reconstruct_scan(scan.projections, angles, scan.flats, scan.darks, scan.centre_px)


@pytest.fixture(scope="module")
def lsps_pair():
    twin = CellTwin.create("lsps", "mini", seed=7, n_lateral=96)
    twin.run(1.0, 3600, sample_period_s=900)
    before = {"labels": twin.labels().copy(), "grey": _grey(twin)}
    t0 = twin.truth()
    twin.run(1.0, DT_S, sample_period_s=900)
    after = {"labels": twin.labels().copy(), "grey": _grey(twin)}
    t1 = twin.truth()
    return twin, before, after, t0, t1


def _truth_binned(twin, t0, t1, side, b):
    j = current_density_map_mA_cm2(t0[f"li_thickness_continuous_map_{side}_um"],
                                   t1[f"li_thickness_continuous_map_{side}_um"], DT_S)
    return _bin_mean(j, twin.geometry.pellet_mask(), b)[0]


@pytest.mark.parametrize("with_grey", [False, True])
def test_current_density_map_within_its_uncertainty(lsps_pair, with_grey):
    twin, before, after, t0, t1 = lsps_pair
    q = t1["charge_passed_C"] - t0["charge_passed_C"]
    prev, cur = (before, after) if with_grey else (before["labels"], after["labels"])
    r = compare(prev, cur, DT_S, q, 1.5, bin_um=6.0)
    assert r["nominal_current_density_mA_cm2"] == pytest.approx(1.0, rel=0.02)
    for side in ("top", "bottom"):
        j, s = r[f"current_density_map_{side}"], r[f"current_density_sigma_map_{side}"]
        truth = _truth_binned(twin, t0, t1, side, 4)
        ok = np.isfinite(j) & np.isfinite(truth)
        assert ok.sum() > 200
        z = np.abs(j - truth)[ok] / s[ok]
        # a calibrated uncertainty: about 95 % of bins within 2 sigma
        assert np.mean(z < 2) > 0.85, (side, np.mean(z < 2))
        assert np.median(s[ok]) < 1.2  # better than one voxel over 15 min
    # the stripping (top) electrode is anchored by coulometry: its mean is the applied current
    assert r["current_density_mean_top_mA_cm2"] == pytest.approx(-1.0, abs=0.02)
    truth_top = _truth_binned(twin, t0, t1, "top", 4)
    ok = np.isfinite(truth_top) & np.isfinite(r["current_density_map_top"])
    assert np.sqrt(np.mean((r["current_density_map_top"] - truth_top)[ok] ** 2)) < 0.3


def test_compare_without_anchor_reports_common_uncertainty(lsps_pair):
    _twin, before, after, _t0, _t1 = lsps_pair
    r = compare(before["labels"], after["labels"], DT_S, 1e-3, 1.5, anchor="none")
    # one voxel of collector quantisation in each scan: common error bound about 0.5 mA/cm2
    assert np.nanmin(r["current_density_sigma_map_top"]) > 0.4


def test_compare_displacements_and_crack_growth():
    twin = CellTwin.create("lps", "mini", seed=8, n_lateral=96)
    twin.run(0.15, 1800, sample_period_s=900)
    a, ta = twin.labels().copy(), twin.truth()
    twin.run(-0.15, 1800, sample_period_s=900)
    b, tb = twin.labels(), twin.truth()
    r = compare(a, b, 1800, tb["charge_passed_C"] - ta["charge_passed_C"], 1.5)
    assert r["crack_volume_change_um3"] == pytest.approx(tb["crack_volume_um3"] - ta["crack_volume_um3"],
                                                         abs=0.02 * tb["crack_volume_um3"])
    assert r["crack_growth_rate_um3_s"] == pytest.approx(r["crack_volume_change_um3"] / 1800)
    for side in ("top", "bottom"):
        d_true = tb[f"collector_position_{side}_um"] - ta[f"collector_position_{side}_um"]
        assert r[f"collector_displacement_{side}_um"] == pytest.approx(d_true, abs=1.5)
        assert r[f"interface_displacement_{side}_um"] == 0.0


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), None])
def test_compare_rejects_bad_interval(bad):
    lab = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="elapsed_s"):
        compare(lab, lab, bad, 0.0, 1.5)
