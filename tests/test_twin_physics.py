"""Physics tests of the digital twin (SCIENCE.md sections 3 and 5).

Every expectation here is computed from physics (Faraday, Bruggeman,
Butler-Volmer, a resistor network) or recounted by independent code on the
*material* label volume and the geometry; none is read back from the twin's
own bookkeeping. The twin's ``truth()`` is only ever the thing under test.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sscell_live.registry import Material
from sscell_live.twin import CellTwin, mini, preset

# Physical constants, typed in here on purpose (SCIENCE.md section 3), not
# imported from the package under test.
V_LI_CM3_MOL = 13.0
F_C_MOL = 96485.0
R_J_MOL_K = 8.314

VACUUM, LI, SE, INTERPHASE, STEEL, HOUSING = (int(m) for m in (
    Material.VACUUM, Material.LI, Material.SE, Material.INTERPHASE, Material.STEEL, Material.HOUSING))

SIDES = ("top", "bottom")


# ---------------------------------------------------------------------------
# independent helpers
# ---------------------------------------------------------------------------
def faraday_um(q_mC_cm2: float) -> float:
    """Li metal thickness moved by a charge density, um (Faraday)."""
    return q_mC_cm2 * 1e-3 / F_C_MOL * V_LI_CM3_MOL * 1e4


def pellet_columns_from_geometry(g) -> np.ndarray:
    """Columns whose centre lies inside the pellet disc, bool (y, x) (own code)."""
    # the cell axis passes through the centre of column n/2 (TomoPy convention)
    c = (np.arange(g.n_lateral) - g.n_lateral / 2) * g.voxel_size_um
    r = np.hypot(c[:, None], c[None, :])
    return r <= g.pellet_diameter_um / 2


def pellet_columns_from_labels(lab: np.ndarray) -> np.ndarray:
    """Pellet columns are those holding current-collector steel."""
    return (lab == STEEL).any(axis=0)


def n_pellet_columns(twin) -> int:
    return int(pellet_columns_from_geometry(twin.geometry).sum())


def electrode_from_face(lab: np.ndarray, g, side: str) -> np.ndarray:
    """Electrode region ordered outward from the SE face (index 0 touches the SE)."""
    if side == "top":
        return lab[: g.se_top_index][::-1]
    return lab[g.se_bottom_index :]


def count_on_labels(lab: np.ndarray, g, band_um: float = 8.5) -> dict:
    """Metrics recounted from material labels and geometry alone."""
    v = g.voxel_size_um
    pellet = pellet_columns_from_labels(lab)
    n_cols = int(pellet.sum())
    nb = max(1, int(band_um / v + 1e-9))
    out = {"pellet": pellet, "n_cols": n_cols}
    for side in SIDES:
        e = electrode_from_face(lab, g, side)  # (depth from face, y, x)
        depth = e.shape[0]
        # the Li band starts after any interphase on the SE face
        first = np.argmax(e != INTERPHASE, axis=0)
        idx = np.clip(first[None] + np.arange(nb)[:, None, None], 0, depth - 1)
        band = np.take_along_axis(e, idx, axis=0)
        contact = pellet & (band == LI).any(axis=0) & ~(band == VACUUM).any(axis=0)
        out[f"contact_map_{side}"] = contact
        out[f"contact_fraction_{side}"] = contact.sum() / n_cols
        # voxels between the collector steel and the SE face: ordered from the
        # collector, everything after the first non-steel voxel
        from_cc = e[::-1]
        below_steel = np.logical_or.accumulate(from_cc != STEEL, axis=0)
        out[f"void_volume_{side}_um3"] = float(((from_cc == VACUUM) & below_steel & pellet).sum() * v**3)
        li_cols = ((e == LI) & pellet).sum(axis=0)
        out[f"li_thickness_{side}_um"] = float(li_cols[pellet].mean() * v)
        out[f"interphase_thickness_{side}_um"] = float(((e == INTERPHASE) & pellet).sum(axis=0)[pellet].mean() * v)
        # steel thickness seen from the far end of the volume = collector face
        steel_run = np.argmax(from_cc != STEEL, axis=0)
        out[f"steel_run_{side}"] = steel_run
    # collector faces: top one at z = steel_run_top, bottom one at nz - steel_run_bottom
    nz = lab.shape[0]
    faces = (nz - out["steel_run_bottom"]) - out["steel_run_top"]
    out["stack_thickness_um"] = float(faces[pellet].mean() * v)
    se = lab[g.se_top_index : g.se_bottom_index]
    out["se"] = se
    out["transparent"] = ((se == VACUUM) | (se == LI)) & pellet[None]
    out["se_li"] = (se == LI) & pellet[None]
    out["n_se_voxels"] = n_cols * se.shape[0]
    return out


def rasterise_cracks(crack_dicts: list[dict], g) -> tuple[np.ndarray, np.ndarray]:
    """Own raster of the semi-elliptical through-plane cracks, SE-local (z, y, x).

    Follows the documented crack geometry (``state.Crack``): inside when
    (s/L)^2 + (d/D)^2 <= 1 and |n| <= half the elliptically tapering opening,
    which the renderer keeps at least 0.75 voxel so a crack stays visible;
    Li fills |s| <= li_width/2 from the mouth down to li_depth and from the
    far face up li_far.
    """
    v = g.voxel_size_um
    n = g.n_lateral
    nse = g.se_bottom_index - g.se_top_index
    pellet = pellet_columns_from_geometry(g)
    crack = np.zeros((nse, n, n), dtype=bool)
    li = np.zeros_like(crack)
    xy = (np.arange(n) - n / 2) * v
    for c in crack_dicts:
        k = np.arange(nse)
        d = (k + 0.5) * v if c["side"] == "top" else (nse - k - 0.5) * v
        d = d[:, None, None]
        dy = xy[None, :, None] - c["y_um"]
        dx = xy[None, None, :] - c["x_um"]
        ca, sa = math.cos(c["angle_rad"]), math.sin(c["angle_rad"])
        s = dx * ca + dy * sa
        nn = -dx * sa + dy * ca
        rho2 = (s / c["half_length_um"]) ** 2 + (d / c["depth_um"]) ** 2
        half = np.maximum(0.5 * c["width_um"] * np.sqrt(np.clip(1 - rho2, 0, 1)), 0.75 * v)
        inside = (rho2 <= 1) & (np.abs(nn) <= half) & pellet[None]
        filled = inside & (np.abs(s) <= c["li_width_um"] / 2) & (
            (d <= c["li_depth_um"]) | (d >= c["depth_um"] - c["li_far_um"]))
        crack |= inside
        li |= filled
    return crack, li


def bv_overpotential_V(j_mA_cm2: float, j0_mA_cm2: float, T: float) -> float:
    """Symmetric Butler-Volmer: j = 2 j0 sinh(F eta / (2 R T)), solved for eta."""
    return 2 * R_J_MOL_K * T / F_C_MOL * math.asinh(j_mA_cm2 / (2 * j0_mA_cm2))


def hand_voltage_V(twin, j: float) -> float:
    """Fresh-cell voltage from the chemistry parameters, the geometry and own counts."""
    chem, g = twin.chemistry, twin.geometry
    if j == 0:
        return 0.0
    m = count_on_labels(twin.labels(), g)
    pellet = m["pellet"]
    phi = float(twin.state.pores[:, pellet].mean())
    kappa = chem.se_conductivity_S_cm * (1 - phi) ** 1.5
    l_cm = (g.se_bottom_index - g.se_top_index) * g.voxel_size_um * 1e-4
    J = abs(j)
    total = J * 1e-3 * l_cm / kappa
    rt_f = R_J_MOL_K * chem.temperature_K / F_C_MOL
    j_eff = {s: J / m[f"contact_fraction_{s}"] for s in SIDES}
    for s in SIDES:
        total += bv_overpotential_V(j_eff[s], chem.exchange_current_mA_cm2, chem.temperature_K)
        total += j_eff[s] * 1e-3 * chem.interfacial_resistance_ohm_cm2
    strip = "top" if j > 0 else "bottom"
    j_lim = chem.supply_limit_mA_cm2 * twin.rates.supply_limit
    assert j_eff[strip] < j_lim, "pick a current below the supply limit"
    total += -rt_f * math.log(1 - j_eff[strip] / j_lim)
    return math.copysign(total, j)


def li_top_um3(twin) -> float:
    return float(twin.state.li_thickness_um("top").sum() * twin.geometry.voxel_size_um**2)


def li_bottom_um3(twin) -> float:
    return float(twin.state.li_thickness_um("bottom").sum() * twin.geometry.voxel_size_um**2)


# ---------------------------------------------------------------------------
# 0. the pellet and its area
# ---------------------------------------------------------------------------
def test_pellet_columns_and_area():
    twin = CellTwin.create("lps", "mini", seed=0, n_lateral=96)
    g = twin.geometry
    mine = pellet_columns_from_geometry(g)
    assert np.array_equal(mine, pellet_columns_from_labels(twin.labels()))
    # the voxel columns sample the nominal disc area to within 2 %
    area_cols_cm2 = mine.sum() * g.voxel_size_um**2 * 1e-8
    nominal_cm2 = math.pi * (g.pellet_diameter_um / 2 * 1e-4) ** 2
    assert area_cols_cm2 == pytest.approx(nominal_cm2, rel=0.02)
    assert g.area_cm2 == pytest.approx(nominal_cm2, rel=1e-12)


# ---------------------------------------------------------------------------
# 1. Faraday balance
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "chem, j, t_s, seed",
    [("lps", 0.5, 1800.0, 3), ("llzo", 0.02, 3600.0, 1), ("lps", -0.3, 1200.0, 4)],
)
def test_faraday_strip_equals_plate(chem, j, t_s, seed):
    twin = CellTwin.create(chem, "mini", seed=seed, n_lateral=64)
    g = twin.geometry
    area_um2 = n_pellet_columns(twin) * g.voxel_size_um**2
    expected = faraday_um(abs(j) * t_s) * area_um2
    strip_vol, plate_vol = (li_top_um3, li_bottom_um3) if j > 0 else (li_bottom_um3, li_top_um3)
    s0, p0 = strip_vol(twin), plate_vol(twin)
    c0, o0 = twin.state.li_in_cracks_um3(), twin.state.li_in_pores_um3
    twin.advance(j, t_s)
    assert not twin.shorted, "the Faraday test must stay below the short"
    stripped = s0 - strip_vol(twin)
    gained = (plate_vol(twin) - p0) + (twin.state.li_in_cracks_um3() - c0) + (twin.state.li_in_pores_um3 - o0)
    assert stripped == pytest.approx(expected, rel=0.01)
    assert gained == pytest.approx(expected, rel=0.01)
    # the charge counter follows the clock
    assert twin.state.charge_mC_cm2 == pytest.approx(j * t_s, rel=1e-9)
    # the collector of the stripping side moved by about the Faraday thickness
    # (less where voids opened instead), never by more
    side = "top" if j > 0 else "bottom"
    moved = (g.li_top_um if side == "top" else g.li_bottom_um) - twin.state.gap_um[side]
    assert 0.0 < moved <= faraday_um(abs(j) * t_s) * 1.001


def test_faraday_cracks_and_pores_take_li():
    """Li that enters cracks (lps) or sub-surface pores (llzo) is part of the plating budget."""
    lps = CellTwin.create("lps", "mini", seed=3, n_lateral=64)
    lps.advance(0.5, 1800.0)
    assert lps.state.li_in_cracks_um3() > 0
    llzo = CellTwin.create("llzo", "mini", seed=1, n_lateral=64)
    llzo.advance(0.02, 3600.0)
    assert llzo.state.li_in_pores_um3 > 0


def test_faraday_budget_with_interphase_lsps():
    twin = CellTwin.create("lsps", "mini", seed=2, n_lateral=64)
    chem, g = twin.chemistry, twin.geometry
    j, t_s = 1.0, 3600.0
    area_um2 = n_pellet_columns(twin) * g.voxel_size_um**2
    expected = faraday_um(j * t_s) * area_um2
    top0, bot0, int0 = li_top_um3(twin), li_bottom_um3(twin), twin.state.interphase_volume_um3()
    twin.advance(j, t_s)
    stripped = top0 - li_top_um3(twin)
    plated = li_bottom_um3(twin) - bot0
    d_int = twin.state.interphase_volume_um3() - int0
    assert stripped == pytest.approx(expected, rel=0.01)
    # the interphase grows at the reducing (plating) interface only
    assert d_int > 0
    assert twin.state.interphase_um["top"].max() == 0.0
    # its thickness is proportional to the charge routed to it
    assert d_int == pytest.approx(chem.interphase_um_per_mC_cm2 * chem.interphase_share * j * t_s * area_um2, rel=0.01)
    # budget: stripped Li = plated Li metal + the share of the current routed to
    # the interphase + the Li metal the interphase reaction eats beyond that
    eaten = (chem.interphase_li_consumption - 1.0) * d_int
    assert stripped == pytest.approx(plated + chem.interphase_share * stripped + eaten, rel=0.01)
    assert plated < stripped * (1 - chem.interphase_share) + 1e-9


def test_faraday_budget_interphase_share_only():
    """With no extra Li consumption the budget is exactly share-routed + plated."""
    chem = preset("lsps").with_(interphase_li_consumption=1.0)
    twin = CellTwin(chem, mini(n_lateral=64), seed=5)
    j, t_s = 1.0, 3600.0
    top0, bot0 = li_top_um3(twin), li_bottom_um3(twin)
    twin.advance(j, t_s)
    stripped = top0 - li_top_um3(twin)
    plated = li_bottom_um3(twin) - bot0
    assert stripped == pytest.approx(plated + chem.interphase_share * stripped, rel=0.01)


def test_full_cycle_conserves_li_lps():
    twin = CellTwin.create("lps", "mini", seed=1, n_lateral=64)
    total0 = twin.state.total_li_um3()
    for j, t in [(0.5, 1800), (-0.5, 1800), (0.15, 1800), (-0.15, 900), (0.0, 600), (-1.0, 600), (1.0, 300)]:
        twin.advance(j, t)
    assert not twin.shorted
    assert twin.state.li_in_cracks_um3() > 0  # Li went into cracks, and is still counted
    assert twin.state.total_li_um3() == pytest.approx(total0, rel=1e-6)
    # net charge: Faraday predicts the net electrode thickness change
    q = twin.state.charge_mC_cm2
    assert q == pytest.approx(0.5 * 1800 - 0.5 * 1800 + 0.15 * 1800 - 0.15 * 900 - 600 + 300, rel=1e-9)


# ---------------------------------------------------------------------------
# 2. bookkeeping against an independent count on the label volume
# ---------------------------------------------------------------------------
def _state_pristine():
    return CellTwin.create("lsps", "mini", seed=0, n_lateral=64)


def _state_lsps_cycled():
    twin = CellTwin.create("lsps", "mini", seed=2, n_lateral=64)
    twin.advance(1.0, 3600.0)
    twin.advance(-1.0, 1800.0)
    return twin


def _state_lps_cracked():
    twin = CellTwin.create("lps", "mini", seed=3, n_lateral=64)
    for k in range(4):
        twin.advance(0.5 if k % 2 == 0 else -0.5, 1800.0)
    assert not twin.shorted
    return twin


def _state_llzo_pores():
    # well below the critical current density (about 26 uA/cm2): no filament
    twin = CellTwin.create("llzo", "mini", seed=1, n_lateral=64)
    twin.advance(0.01, 7200.0)
    twin.advance(-0.01, 7200.0)
    assert not twin.shorted and twin.state.li_in_pores.any()
    return twin


_STATES = {"pristine": _state_pristine, "lsps_cycled": _state_lsps_cycled,
           "lps_cracked": _state_lps_cracked, "llzo_pores": _state_llzo_pores}


@pytest.fixture(scope="module", params=sorted(_STATES))
def cell_state(request):
    return request.param, _STATES[request.param]()


def test_bookkeeping_matches_label_count(cell_state):
    name, twin = cell_state
    g = twin.geometry
    lab = twin.labels()
    truth = twin.truth()
    m = count_on_labels(lab, g)
    assert np.array_equal(m["pellet"], pellet_columns_from_geometry(g))
    for side in SIDES:
        assert truth[f"contact_fraction_{side}"] == pytest.approx(m[f"contact_fraction_{side}"], abs=0.005), side
        assert np.array_equal(truth[f"contact_map_{side}"], m[f"contact_map_{side}"]), side
        assert truth[f"void_volume_{side}_um3"] == pytest.approx(m[f"void_volume_{side}_um3"], rel=0.02, abs=1e-9), side
        assert truth[f"li_thickness_{side}_um"] == pytest.approx(m[f"li_thickness_{side}_um"], abs=1e-9), side
        assert truth[f"interphase_thickness_{side}_um"] == pytest.approx(m[f"interphase_thickness_{side}_um"], abs=1e-9)
        # voxel count against the continuous state: within one voxel
        cont = float(twin.state.li_thickness_um(side)[m["pellet"]].mean())
        assert m[f"li_thickness_{side}_um"] == pytest.approx(cont, abs=g.voxel_size_um)
    assert truth["stack_thickness_um"] == pytest.approx(m["stack_thickness_um"], abs=g.voxel_size_um)
    # only SE, pores/cracks (vacuum) and Li may sit inside the SE slab
    se_vals = set(np.unique(m["se"][:, m["pellet"]]).tolist())
    assert se_vals <= {SE, VACUUM, LI}

    cracked = bool(truth["cracks"])
    assert cracked == (name == "lps_cracked")
    if cracked:
        crack, li_crack = rasterise_cracks(truth["cracks"], g)
        pores = twin.state.pores
        assert crack.any() and li_crack.any()
        # the label volume is exactly pores + cracks
        mismatch = np.count_nonzero(m["transparent"] != (pores | crack))
        assert mismatch <= 0.005 * np.count_nonzero(m["transparent"])
        mismatch_li = np.count_nonzero(m["se_li"] != ((twin.state.li_in_pores & ~crack) | li_crack))
        assert mismatch_li <= 0.01 * max(1, np.count_nonzero(m["se_li"]))
        v3 = g.voxel_size_um**3
        assert truth["crack_volume_um3"] == pytest.approx(crack.sum() * v3, rel=0.02)
        assert truth["li_in_crack_volume_um3"] == pytest.approx(li_crack.sum() * v3, rel=0.02)
        # the Li seen in cracks tracks the Li the plating budget sent there
        assert li_crack.sum() * v3 == pytest.approx(twin.state.li_in_cracks_um3(), rel=0.3)
        # what labels alone can say: transparent voxels outside the pristine
        # pores are crack voxels, a lower bound on the crack volume
        lower = np.count_nonzero(m["transparent"] & ~pores) * v3
        assert lower <= truth["crack_volume_um3"] + 1e-9
        assert lower >= 0.7 * truth["crack_volume_um3"]
        porosity = np.count_nonzero(m["transparent"] & ~crack) / m["n_se_voxels"]
        assert truth["crack_count"] >= 1
    else:
        assert truth["crack_volume_um3"] == 0.0
        porosity = np.count_nonzero(m["transparent"]) / m["n_se_voxels"]
    if name == "llzo_pores":
        # Li plated into sub-surface pores: seen as Li inside the SE, within
        # the sub-surface depth of the faces, and as much as the budget sent
        li_se = m["se_li"]
        assert li_se.any()
        depth_vox = int(round(twin.chemistry.subsurface_depth_um / g.voxel_size_um))
        assert not li_se[depth_vox:-depth_vox].any()
        v3 = g.voxel_size_um**3
        assert li_se.sum() * v3 <= twin.state.li_in_pores_um3 + 1e-9
        assert li_se.sum() * v3 > twin.state.li_in_pores_um3 - 2 * v3
        assert truth["xray_transparent_volume_um3"] == pytest.approx(m["transparent"].sum() * v3, rel=0.02)
    # 0.5 points where the crack raster is involved; crack-free states are
    # pure voxel counts on both sides and must agree exactly
    assert truth["se_porosity"] == pytest.approx(porosity, abs=0.005 if cracked else 1e-12)
    # and the pore space has the preset's porosity (a random field: 30 %)
    assert porosity == pytest.approx(twin.chemistry.porosity, rel=0.3)


def test_lsps_cycled_state_has_voids_and_interphase():
    """The cycled lsps state is what test_bookkeeping claims to cover."""
    twin = _state_lsps_cycled()
    m = count_on_labels(twin.labels(), twin.geometry)
    assert m["void_volume_top_um3"] > 0 and m["void_volume_bottom_um3"] > 0
    assert m["interphase_thickness_bottom_um"] > 0
    # Lewis-LSPS: contact of order 20-25 % of the nominal area
    assert 0.15 < m["contact_fraction_top"] < 0.35


# ---------------------------------------------------------------------------
# 3. voltage of a fresh cell by hand
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("chem, j", [("lsps", 1.0), ("lps", 0.5), ("llzo", 0.05)])
def test_fresh_voltage_by_hand(chem, j):
    twin = CellTwin.create(chem, "mini", seed=7, n_lateral=64)
    for jj in (j, -j, 0.3 * j):
        expected = hand_voltage_V(twin, jj)
        got = twin.voltage(jj).voltage_V
        assert math.copysign(1.0, got) == math.copysign(1.0, jj)
        assert got == pytest.approx(expected, rel=0.01), (jj, got, expected)
    assert twin.voltage(0.0).voltage_V == 0.0
    # the ohmic SE part alone: bulk resistance by Bruggeman
    g = twin.geometry
    phi = float(twin.state.pores[:, pellet_columns_from_geometry(g)].mean())
    r_bulk = (g.se_bottom_index - g.se_top_index) * g.voxel_size_um * 1e-4 / (
        twin.chemistry.se_conductivity_S_cm * (1 - phi) ** 1.5 * g.area_cm2)
    assert twin.bulk_resistance_ohm() == pytest.approx(r_bulk, rel=0.01)
    # the voltage grows with current
    assert abs(twin.voltage(2 * j).voltage_V) > abs(twin.voltage(j).voltage_V)


def test_voltage_uses_effective_current_density():
    """Less contact, higher polarization: lsps (25 % contact) vs the same cell at 100 %."""
    base = preset("lsps")
    poor = CellTwin(base, mini(n_lateral=64), seed=1)
    good = CellTwin(base.with_(initial_contact=1.0), poor.geometry, seed=1)
    m = count_on_labels(good.labels(), good.geometry)
    assert m["contact_fraction_top"] == pytest.approx(1.0)
    assert abs(poor.voltage(1.0).voltage_V) > 2 * abs(good.voltage(1.0).voltage_V)
    assert good.voltage(1.0).voltage_V == pytest.approx(hand_voltage_V(good, 1.0), rel=0.01)


# ---------------------------------------------------------------------------
# 4. short circuit
# ---------------------------------------------------------------------------
def _drive_to_short(chem, j, step_s, seed, half_s=1800.0):
    """Alternate +-j in half cycles until the cell shorts.

    Returns the shorted twin, a copy of it one step before the short and the
    sign of the current at the short.
    """
    twin = CellTwin.create(chem, "mini", seed=seed, n_lateral=64)
    sign, elapsed, prev = 1.0, 0.0, None
    for _ in range(5000):
        prev = copy.deepcopy(twin)
        twin.advance(sign * j, step_s)
        if twin.shorted:
            return twin, prev, sign
        elapsed += step_s
        if elapsed >= half_s - 1e-9:
            sign, elapsed = -sign, 0.0
    raise AssertionError(f"{chem} seed {seed} never shorted")


_SHORT_CASES = {"llzo": ("llzo", 0.1, 60.0, 0), "lps": ("lps", 0.15, 300.0, 1)}


@pytest.fixture(scope="module", params=sorted(_SHORT_CASES))
def shorted_cell(request):
    return request.param, _drive_to_short(*_SHORT_CASES[request.param])


def test_short_circuit_voltage_collapses(shorted_cell):
    name, (twin, prev, sign) = shorted_cell
    chem, j = _SHORT_CASES[name][:2]
    g = twin.geometry
    assert twin.shorted and not prev.shorted
    assert twin.truth()["li_path_connects"] is True
    # resistor network: the filament's resistance in parallel with the SE
    pellet = pellet_columns_from_geometry(g)
    phi = float(twin.state.pores[:, pellet].mean())
    kappa = twin.chemistry.se_conductivity_S_cm * (1 - phi) ** 1.5
    r_se = (g.se_bottom_index - g.se_top_index) * g.voxel_size_um * 1e-4 / (kappa * g.area_cm2)
    r_short = twin.chemistry.short_resistance_ohm
    r = 1.0 / (1.0 / r_se + 1.0 / r_short)
    current_A = j * 1e-3 * g.area_cm2
    v = twin.voltage(sign * j).voltage_V
    assert abs(v) == pytest.approx(current_A * r, rel=0.01)
    assert abs(v) < 0.010
    assert math.copysign(1.0, v) == sign
    assert twin.bulk_resistance_ohm() == pytest.approx(r, rel=0.01)
    # the collapse: one step earlier the cell polarised far more
    assert abs(prev.voltage(sign * j).voltage_V) > 10 * abs(v)
    # once shorted, the current bypasses the electrodes: no more Li moves
    li = twin.state.total_li_um3(), li_top_um3(twin)
    twin.advance(j, 600.0)
    assert (twin.state.total_li_um3(), li_top_um3(twin)) == pytest.approx(li, rel=1e-12)


def test_li_path_connects_only_with_the_short(shorted_cell):
    name, (twin, prev, sign) = shorted_cell
    early = prev.truth()["li_path_connects"]
    assert early is False
    assert twin.truth()["li_path_connects"] is True


# ---------------------------------------------------------------------------
# 5. determinism
# ---------------------------------------------------------------------------
def _protocol(twin):
    twin.advance(0.5, 1800.0)
    rec = twin.run(-0.5, 1800.0, sample_period_s=300.0)
    return rec


def test_determinism_same_seed():
    a = CellTwin.create("lps", "mini", seed=11, n_lateral=64)
    b = CellTwin.create("lps", "mini", seed=11, n_lateral=64)
    ra, rb = _protocol(a), _protocol(b)
    assert np.array_equal(ra.voltage_V, rb.voltage_V)
    assert np.array_equal(a.labels(), b.labels())
    assert a.voltage(0.3).voltage_V == b.voltage(0.3).voltage_V
    assert a.truth()["cracks"] == b.truth()["cracks"]


def test_different_seed_different_cell():
    a = CellTwin.create("lps", "mini", seed=11, n_lateral=64)
    b = CellTwin.create("lps", "mini", seed=12, n_lateral=64)
    la, lb = a.labels(), b.labels()
    g = a.geometry
    se = slice(g.se_top_index, g.se_bottom_index)
    assert not np.array_equal(la[se], lb[se])  # different pores
    ma, mb = count_on_labels(la, g), count_on_labels(lb, g)
    assert not np.array_equal(ma["contact_map_top"], mb["contact_map_top"])
    assert a.voltage(0.5).voltage_V != b.voltage(0.5).voltage_V


# ---------------------------------------------------------------------------
# 6. bad input
# ---------------------------------------------------------------------------
def test_bad_input_raises_helpful_errors():
    twin = CellTwin.create("lps", "mini", seed=0, n_lateral=32)
    with pytest.raises(ValueError, match="duration"):
        twin.run(0.1, -10.0)
    with pytest.raises(ValueError, match="dt_s"):
        twin.advance(0.1, -1.0)
    with pytest.raises(ValueError, match="finite"):
        twin.advance(float("nan"), 10.0)
    with pytest.raises(ValueError, match="finite"):
        twin.run(float("nan"), 10.0)
    with pytest.raises(ValueError, match="finite"):
        twin.advance(float("inf"), 10.0)
    with pytest.raises(ValueError, match="unknown chemistry"):
        CellTwin.create("nmc", "mini")
    with pytest.raises(ValueError, match="unknown geometry"):
        CellTwin.create("lps", "huge")
    with pytest.raises(ValueError, match="voxel_size_um"):
        CellTwin.create("lps", "mini", voxel_size_um=0.0)
    with pytest.raises(ValueError, match="voxel_size_um"):
        CellTwin.create("lps", "full", voxel_size_um=-2.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="cutoff"):
            twin.run(0.1, 10.0, cutoff_V=bad)
    with pytest.raises(ValueError, match="sample_period"):
        twin.run(0.1, 10.0, sample_period_s=0.0)
    # nothing moved: the failed calls left the cell alone
    assert twin.time_s == 0.0 and twin.state.charge_mC_cm2 == 0.0


def test_voltage_rejects_nan_current():
    twin = CellTwin.create("lps", "mini", seed=0, n_lateral=32)
    with pytest.raises(ValueError, match=r"(?i)finite|nan"):
        twin.voltage(float("nan"))


# ---------------------------------------------------------------------------
# 7. full geometry at scale
# ---------------------------------------------------------------------------
_FULL_SCRIPT = textwrap.dedent(
    """
    import json, resource, time
    import numpy as np
    t0 = time.perf_counter()
    from sscell_live.twin import CellTwin
    twin = CellTwin.create("lps", "full", seed=0, voxel_size_um=2.0, n_lateral=1024)
    lab = twin.labels()
    g = twin.geometry
    mid = lab[(g.se_top_index + g.se_bottom_index) // 2]
    c = (np.arange(1024) - 512) * 2.0
    pellet = np.hypot(c[:, None], c[None, :]) <= 1000.0
    out = dict(
        shape=list(lab.shape), dtype=str(lab.dtype),
        se_top_index=g.se_top_index, se_bottom_index=g.se_bottom_index,
        centre_column=[int(lab[k, 512, 512]) for k in (0, 120, g.se_top_index + 5, g.se_bottom_index + 20, 899)],
        mid_plane_porosity=float((mid[pellet] == 0).mean()),
        mid_plane_se=float((mid[pellet] == 2).mean()),
        seconds=time.perf_counter() - t0,
        maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_full_geometry_1024_fits_in_memory():
    proc = subprocess.run([sys.executable, "-c", _FULL_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"full 1024 build: {res['seconds']:.1f} s, peak RSS {res['maxrss_kib'] / 2**20:.2f} GiB")
    assert res["shape"] == [900, 1024, 1024]
    assert res["dtype"] == "uint8"
    # 200 um steel, 300 um Li, 800 um SE at 2 um voxels
    assert (res["se_top_index"], res["se_bottom_index"]) == (250, 650)
    assert res["centre_column"][0] == STEEL and res["centre_column"][1] == LI
    assert res["centre_column"][2] in (SE, VACUUM) and res["centre_column"][3] == LI
    assert res["centre_column"][4] == STEEL
    assert res["mid_plane_porosity"] == pytest.approx(preset("lps").porosity, rel=0.3)
    assert res["mid_plane_porosity"] + res["mid_plane_se"] == pytest.approx(1.0)
    assert res["maxrss_kib"] * 1024 < 24 * 2**30
