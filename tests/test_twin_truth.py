"""Truth maps and pairwise truth: local current density, collector displacement."""

import numpy as np
import pytest

from sscell_live.twin import CellTwin, mini
from sscell_live.twin.truth import current_density_map_mA_cm2

V_LI_CM3_MOL, F_C_MOL = 13.0, 96485.0


def test_current_density_map_from_thickness_change_averages_to_the_applied_current():
    twin = CellTwin.create("llzo", mini(64), seed=0)  # no interphase, no voids at 6 uA/cm2
    pellet = twin.geometry.pellet_mask()
    before = {s: twin.state.li_thickness_um(s).copy() for s in ("top", "bottom")}
    j, dt = 0.006, 6 * 3600.0
    twin.advance(j, dt)
    assert not twin.state.cracks
    top = current_density_map_mA_cm2(before["top"], twin.state.li_thickness_um("top"), dt)
    bottom = current_density_map_mA_cm2(before["bottom"], twin.state.li_thickness_um("bottom"), dt)
    # positive current strips the top (negative map) and plates the bottom, minus what
    # went into sub-surface pores of the bottom face
    assert top[pellet].mean() == pytest.approx(-j, rel=1e-6)
    into_pores = twin.state.li_in_pores_um3 / (pellet.sum() * twin.geometry.column_area_um2)  # um
    expected_bottom = j - into_pores * 1e-4 * F_C_MOL / (dt * V_LI_CM3_MOL) * 1e3
    assert bottom[pellet].mean() == pytest.approx(expected_bottom, rel=1e-6)


def test_collectors_follow_faraday():
    twin = CellTwin.create("llzo", mini(64), seed=1)
    area_um2 = twin.geometry.pellet_mask().sum() * twin.geometry.column_area_um2
    voids0 = twin.state.void_um["bottom"].sum() * twin.geometry.column_area_um2
    z_top0 = twin.state.collector_position_um("top")
    z_bot0 = twin.state.collector_position_um("bottom")
    stack0 = twin.truth()["stack_thickness_um"]
    j, dt = 0.006, 10 * 3600.0
    twin.advance(j, dt)
    t_li_um = j * dt * 1e-3 * V_LI_CM3_MOL / F_C_MOL * 1e4  # Faraday thickness
    # the top electrode thins: its collector moves down (+z) by the Faraday thickness
    assert twin.state.collector_position_um("top") - z_top0 == pytest.approx(t_li_um, rel=1e-5)
    # the bottom thickens by the same amount, minus the Li that went into pores
    # (inside the SE) and the Li that refilled interfacial voids (no room needed)
    into_pores_um = twin.state.li_in_pores_um3 / area_um2
    refilled_um = (voids0 - twin.state.void_um["bottom"].sum() * twin.geometry.column_area_um2) / area_um2
    assert refilled_um > 0
    expected = t_li_um - into_pores_um - refilled_um
    assert twin.state.collector_position_um("bottom") - z_bot0 == pytest.approx(expected, rel=1e-5)
    assert twin.truth()["stack_thickness_um"] - stack0 == pytest.approx(-into_pores_um - refilled_um, rel=1e-5)


def test_local_current_flows_only_through_contact_and_sums_to_the_nominal_current():
    twin = CellTwin.create("lsps", mini(64), seed=0)
    twin.advance(1.0, 60.0)
    pellet = twin.geometry.pellet_mask()
    j_top = twin.state.last_local_current["top"]
    contact = twin.truth()["contact_map_top"]
    assert np.all(j_top[pellet & ~contact] == 0)
    assert j_top[pellet].mean() == pytest.approx(1.0, rel=1e-9)
    # hotspots: the effective current density (nominal / contact) is the mean over contact columns
    assert j_top[contact].mean() == pytest.approx(1.0 / twin.truth()["contact_fraction_top"], rel=1e-9)
    assert j_top[contact].max() > 1.3 * j_top[contact].mean()


def test_rejects_a_non_positive_interval():
    with pytest.raises(ValueError, match="elapsed_s"):
        current_density_map_mA_cm2(np.zeros((2, 2)), np.ones((2, 2)), 0.0)
