"""Degenerate inputs: clear errors or explicit empty results, never a crash or a silent NaN."""

import math

import numpy as np
import pytest

from sscell_live.metrics import MEASURED_METRICS, measure
from sscell_live.metrics.cracks import axial_runs_at_least
from sscell_live.registry import METRICS, Material


def _stack(li_top=4, se=12, li_bot=4, n=16):
    """A tiny ideal cell: steel | Li | SE | Li | steel, all columns pellet."""
    layers = [Material.STEEL] * 2 + [Material.LI] * li_top + [Material.SE] * se + [Material.LI] * li_bot + [Material.STEEL] * 2
    return np.broadcast_to(np.array(layers, np.uint8)[:, None, None], (len(layers), n, n)).copy()


def _no_nan(result):
    for k, val in result.items():
        if isinstance(val, float):
            assert math.isfinite(val), k


def test_ideal_cell():
    m = measure(_stack(), 1.5)
    assert m["contact_fraction_top"] == 1.0 and m["void_volume_top_um3"] == 0.0
    assert m["li_thickness_top_um"] == pytest.approx(6.0)
    assert m["se_thickness_um"] == pytest.approx(18.0) and m["se_porosity"] == 0.0
    assert m["crack_count"] == 0 and m["crack_fill_fraction_imaged"] == 0.0
    assert m["stack_thickness_um"] == pytest.approx((4 + 12 + 4) * 1.5)
    _no_nan(m)
    assert set(MEASURED_METRICS) <= set(m) and set(MEASURED_METRICS) <= set(METRICS)


def test_no_li_gives_zero_contact_with_a_note():
    lab = _stack()
    lab[lab == Material.LI] = Material.VACUUM
    m = measure(lab, 1.5)
    assert m["contact_fraction_top"] == 0.0 and m["li_volume_bottom_um3"] == 0.0
    assert any("no Li" in n for n in m["notes"])
    _no_nan(m)


def test_void_under_li_breaks_contact():
    lab = _stack()
    lab[5, :4, :4] = Material.VACUUM  # the Li layer just above the SE face (z=6 is SE)
    m = measure(lab, 1.5)
    assert m["contact_fraction_top"] == pytest.approx(1 - 16 / 256)
    assert m["void_volume_top_um3"] == pytest.approx(16 * 1.5**3) and m["void_count_top"] == 1


@pytest.mark.parametrize("make", [
    lambda: np.zeros((10, 8, 8), np.uint8),  # all vacuum
    lambda: np.full((10, 8, 8), Material.LI, np.uint8),  # no SE
    lambda: np.full((10, 8, 8), Material.HOUSING, np.uint8),
])
def test_volumes_without_a_cell_give_explicit_empty_results(make):
    m = measure(make(), 1.5)
    assert all(m[k] is None for k in MEASURED_METRICS)
    assert m["notes"] and "no cell" in m["notes"][0]


@pytest.mark.parametrize("voxel", [0, -1.5, float("nan"), float("inf"), "abc", None])
def test_bad_voxel_size(voxel):
    with pytest.raises(ValueError, match="voxel_size_um"):
        measure(_stack(), voxel)


def test_wrong_dtype_and_shape():
    with pytest.raises(TypeError, match="integer"):
        measure(_stack().astype(np.float32), 1.5)  # a grey volume, not labels
    with pytest.raises(TypeError, match="integer"):
        measure(_stack().astype(bool), 1.5)
    with pytest.raises(ValueError, match="3-D"):
        measure(_stack()[0], 1.5)
    with pytest.raises(ValueError, match="code"):
        measure(_stack() + 10, 1.5)
    with pytest.raises(ValueError, match="empty"):
        measure(np.zeros((0, 4, 4), np.uint8), 1.5)


def test_constant_volume_is_no_cell():
    m = measure(np.full((6, 6, 6), Material.SE, np.uint8), 1.5)  # SE only: no steel, but a pellet
    assert m["contact_fraction_top"] == 0.0 and m["stack_thickness_um"] is None
    assert any("collector" in n for n in m["notes"])


def test_effective_current_without_contact_is_none_with_note():
    lab = _stack()
    lab[lab == Material.LI] = Material.VACUUM
    m = measure(lab, 1.5, current_mA_cm2=1.0)
    assert m["effective_current_density_top_mA_cm2"] is None
    assert any("effective_current_density_top" in n for n in m["notes"])


def test_axial_runs_equal_a_vertical_opening():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 5, 5)) < 0.7
    got = axial_runs_at_least(mask, 4)
    # brute force: voxel kept when some window of 4 along z containing it is all True
    want = np.zeros_like(mask)
    for z0 in range(27):
        full = mask[z0:z0 + 4].all(axis=0)
        want[z0:z0 + 4] |= full[None]
    assert np.array_equal(got, want)


def test_crack_is_found_and_pore_is_not():
    lab = _stack(se=30, n=24)
    lab[6:22, 10, 4:16] = Material.VACUUM  # a sheet from the top face, 16 voxels deep
    lab[20:23, 18:21, 18:21] = Material.VACUUM  # a pore
    m = measure(lab, 1.5)
    assert m["crack_count"] == 1
    assert m["crack_volume_um3"] == pytest.approx(16 * 12 * 1.5**3)
    assert m["crack_penetration_fraction"] == pytest.approx(16 / 30)
    assert m["crack_width_median_um"] == pytest.approx(1.5)
    assert m["se_porosity"] == pytest.approx(27 / (30 * 24 * 24))
