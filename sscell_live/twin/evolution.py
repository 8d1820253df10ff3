"""How the cell changes under current: Faraday-consistent, heterogeneous.

Pure functions of (state, chemistry, per-cell rates, current, time step).
Every sub-step conserves Li exactly: the Li removed at the stripping
interface and added at the plating interface equal ``|j| dt V_Li / F`` times
the pellet area, minus what the reducing current turns into interphase
(SCIENCE.md section 3); Li moved into cracks and pores is part of the
plating budget. Creep keeps the Li against the rigid collector, so a change
of Li volume that does not open or fill voids moves the collector (the
``gap``).

Mechanisms (SCIENCE.md section 4):

- the local current flows through contact columns only, weighted by the
  interfacial conductance field (hotspots) and crowding next to voids;
- voids nucleate at the stripping interface where the local stripping
  current exceeds what creep and diffusion replenish; an interphase
  slows that replenishment; the resulting loss of contact raises the
  effective current density and accelerates itself (Lewis-LSPS);
- plating refills voids partly;
- reactive SEs grow interphase at the reducing interface, consuming Li and
  opening voids at hotspots (Lewis-LSPS: -8.9 % contact while reduced);
- brittle SEs crack at the plating interface; cracks take a small share of
  the plated Li as a filament; a Li path across the pellet shorts the cell
  (Hao-LPS);
- garnets plate into sub-surface pores, and a Li filament grows where the
  local current exceeds a critical value (Dixit-LLZO, Siniscalchi-LLZTO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..registry import FARADAY_C_MOL, LI_MOLAR_VOLUME_CM3_MOL
from .chemistry import Chemistry
from .fields import pore_mask_3d, smooth_field_2d
from .geometry import CellGeometry
from .state import SIDES, CellState, Crack

__all__ = ["UM_LI_PER_MC_CM2", "CellRates", "initial_state", "advance", "local_current"]

#: Li thickness per charge density: 1 mC/cm2 moves this many um of Li metal.
UM_LI_PER_MC_CM2 = 1e-3 * LI_MOLAR_VOLUME_CM3_MOL / FARADAY_C_MOL * 1e4

#: Longest internal sub-step, s (keeps explicit feedback loops stable).
MAX_SUBSTEP_S = 60.0

_OTHER = {"top": "bottom", "bottom": "top"}


@dataclass(frozen=True)
class CellRates:
    """Per-cell multipliers of the chemistry's rates (cell-to-cell variability).

    Drawn once per cell from a log-normal with the chemistry's
    ``variability_sigma``; they stand for what differs between nominally
    identical cells (pellet density, stack pressure, surface preparation).
    """

    refill: float = 1.0
    void_nucleation: float = 1.0
    supply_limit: float = 1.0
    crack: float = 1.0
    crack_li: float = 1.0
    critical_current: float = 1.0
    filament_growth: float = 1.0

    @classmethod
    def draw(cls, sigma: float, rng: np.random.Generator) -> "CellRates":
        f = np.exp(sigma * rng.standard_normal(7))
        return cls(*map(float, f))


# ---------------------------------------------------------------------------
# initial state
# ---------------------------------------------------------------------------
def initial_state(geometry: CellGeometry, chem: Chemistry, seed: int) -> tuple[CellState, CellRates, dict]:
    """Pristine cell: microstructure, initial contact, conductance fields.

    Returns
    -------
    state : CellState
    rates : CellRates
        Per-cell variability multipliers.
    aux : dict
        Fixed per-cell data the evolution needs (sub-surface pore fill order).
    """
    rng = np.random.default_rng(seed)
    v = geometry.voxel_size_um
    n = geometry.n_lateral
    pellet = geometry.pellet_mask()
    rates = CellRates.draw(chem.variability_sigma, rng)

    conductance, voids = {}, {}
    for side in SIDES:
        g = np.exp(chem.heterogeneity_sigma * smooth_field_2d((n, n), chem.hotspot_length_um / v, rng))
        conductance[side] = g / g[pellet].mean()
        # initial gaps: the (1 - initial_contact) share of columns with the highest
        # roughness field gets a void of about initial_void_um (never below one voxel)
        rough = smooth_field_2d((n, n), chem.hotspot_length_um / v, rng)
        cut = np.quantile(rough[pellet], chem.initial_contact)
        height = chem.initial_void_um * (0.8 + 0.4 * rng.random((n, n)))
        voids[side] = np.where(pellet & (rough > cut), np.maximum(height, v), 0.0)

    pores, factor = pore_mask_3d(
        (geometry.se_voxels, n, n),
        chem.porosity,
        chem.pore_size_um / v,
        chem.porosity_heterogeneity,
        block_vox=max(1, round(30.0 / v)),  # 30 um cubes (Dixit-LPS porosity factor)
        seed=int(rng.integers(2**31)),
    )
    pores &= pellet[None]
    # hotspots are tied to the microstructure: pores right under a face block
    # current there and push it to the dense neighbourhood
    for side, face in (("top", pores[:2]), ("bottom", pores[-2:])):
        surf = ndimage.gaussian_filter(face.mean(axis=0), chem.hotspot_length_um / v)
        mod = np.clip(1.0 - (surf - surf[pellet].mean()) / max(surf[pellet].mean(), 1e-6) * 0.25, 0.2, 3.0)
        g = conductance[side] * mod
        conductance[side] = g / g[pellet].mean()

    state = CellState(
        geometry=geometry,
        time_s=0.0,
        charge_mC_cm2=0.0,
        charge_abs_mC_cm2=0.0,
        gap_um={"top": geometry.li_top_um, "bottom": geometry.li_bottom_um},
        void_um=voids,
        interphase_um={s: np.zeros((n, n)) for s in SIDES},
        conductance=conductance,
        pores=pores,
        li_in_pores=np.zeros_like(pores),
        porosity_factor_blocks=factor,
    )
    aux = {"pore_order": _subsurface_pore_order(state, chem, rng), "li_in_pores_side_um3": {"top": 0.0, "bottom": 0.0}}
    return state, rates, aux


def _subsurface_pore_order(state: CellState, chem: Chemistry, rng) -> dict:
    """Pore voxels within ``subsurface_depth_um`` of each face, shallowest first."""
    g = state.geometry
    order = {}
    depth_vox = int(round(chem.subsurface_depth_um / g.voxel_size_um))
    for side in SIDES:
        if depth_vox <= 0:
            order[side] = np.zeros((0, 3), dtype=np.int64)
            continue
        zs = np.arange(depth_vox) if side == "top" else np.arange(g.se_voxels - depth_vox, g.se_voxels)
        idx = np.argwhere(state.pores[zs[0] : zs[-1] + 1])
        idx[:, 0] += zs[0]
        depth = idx[:, 0] if side == "top" else g.se_voxels - 1 - idx[:, 0]
        key = depth + rng.random(len(idx))  # random within a depth layer
        order[side] = idx[np.argsort(key)]
    return order


# ---------------------------------------------------------------------------
# local current
# ---------------------------------------------------------------------------
def contact_columns(state: CellState, side: str) -> np.ndarray:
    """Pellet columns where Li touches the SE (or its interphase), bool (y, x)."""
    return state.geometry.pellet_mask() & (state.void_um[side] <= 0) & (state.li_thickness_um(side) > 0)


def local_current(state: CellState, chem: Chemistry, side: str, current_mA_cm2: float) -> np.ndarray:
    """Local current density through each column of one interface, mA/cm2 (>= 0).

    The nominal current flows through contact columns only (effective
    current density ``|j| / contact fraction``), shared in proportion to the
    interfacial conductance and enhanced next to voids (current crowding).
    """
    contact = contact_columns(state, side)
    pellet = state.geometry.pellet_mask()
    out = np.zeros(contact.shape)
    if current_mA_cm2 == 0 or not contact.any():
        return out
    near_void = ndimage.uniform_filter((pellet & ~contact).astype(float), size=3, mode="constant")
    w = state.conductance[side] * (1.0 + chem.edge_crowding * near_void)
    w = np.where(contact, w, 0.0)
    total = abs(current_mA_cm2) * pellet.sum()
    out = total * w / w.sum()
    return out


# ---------------------------------------------------------------------------
# one time step
# ---------------------------------------------------------------------------
def advance(
    state: CellState,
    chem: Chemistry,
    rates: CellRates,
    aux: dict,
    current_mA_cm2: float,
    dt_s: float,
    rng: np.random.Generator,
) -> CellState:
    """Evolve the state in place under a constant current for ``dt_s`` seconds.

    Parameters
    ----------
    current_mA_cm2 : float
        Nominal current density; positive strips the top electrode.
    dt_s : float
        Duration, s (split internally into sub-steps of at most 60 s).
    rng : numpy.random.Generator
        Randomness of nucleation (seeded by the twin).

    Returns
    -------
    CellState
        The same object, updated (``version`` incremented).
    """
    if not np.isfinite(current_mA_cm2):
        raise ValueError(f"current must be finite, got {current_mA_cm2!r} mA/cm2")
    if not (np.isfinite(dt_s) and dt_s >= 0):
        raise ValueError(f"dt_s must be a non-negative number of seconds, got {dt_s!r}")
    remaining = float(dt_s)
    while remaining > 1e-9:
        h = min(MAX_SUBSTEP_S, remaining)
        _substep(state, chem, rates, aux, float(current_mA_cm2), h, rng)
        remaining -= h
    state.version += 1
    return state


def _substep(state, chem, rates, aux, j, dt, rng) -> None:
    g = state.geometry
    state.time_s += dt
    state.charge_mC_cm2 += j * dt
    state.charge_abs_mC_cm2 += abs(j) * dt
    if j == 0 or state.shorted:
        # open circuit, or the current bypasses the electrodes through the short
        state.last_local_current = {}
        return
    strip, plate = ("top", "bottom") if j > 0 else ("bottom", "top")
    q = abs(j) * dt  # mC/cm2
    li_moved_um3 = q * UM_LI_PER_MC_CM2 * int(g.pellet_mask().sum()) * g.column_area_um2
    j_strip = local_current(state, chem, strip, j)
    j_plate = local_current(state, chem, plate, j)
    state.last_local_current = {strip: j_strip, plate: j_plate}
    _strip(state, chem, rates, strip, j_strip, dt, li_moved_um3, rng)
    _plate(state, chem, rates, aux, plate, j_plate, j, dt, li_moved_um3, rng)
    _grow_cracks(state, chem, rates, plate, j_plate, q, rng)
    _check_short(state)


def _new_void_heights(chem: Chemistry, voxel_um: float, where: np.ndarray, rng) -> np.ndarray:
    """Heights of freshly opened voids: about ``initial_void_um``, never below a voxel."""
    h = chem.initial_void_um * (0.8 + 0.4 * rng.random(where.shape))
    return np.where(where, np.maximum(h, voxel_um), 0.0)


def _strip(state, chem, rates, side, j_local, dt, li_moved_um3, rng) -> None:
    """Stripping interface: voids nucleate where creep and diffusion cannot keep up."""
    refill = chem.refill_mA_cm2 * rates.refill
    if chem.refill_interphase_um > 0:
        refill = refill / (1.0 + state.interphase_um[side] / chem.refill_interphase_um)
    excess = np.maximum(j_local - refill, 0.0)
    hazard = chem.void_nucleation_per_mC_cm2 * rates.void_nucleation * excess * dt
    nucleate = (excess > 0) & (rng.random(excess.shape) < 1.0 - np.exp(-hazard))
    new_void = np.minimum(_new_void_heights(chem, state.geometry.voxel_size_um, nucleate, rng),
                          state.li_thickness_um(side))
    _apply(state, side, d_void=new_void, d_inter=None, d_li_um3=-li_moved_um3)


def _plate(state, chem, rates, aux, side, j_local, j, dt, li_moved_um3, rng) -> None:
    """Plating interface: interphase, Li into cracks/filaments/pores, voids refilled."""
    g = state.geometry
    pellet = g.pellet_mask()
    a = g.column_area_um2
    q = abs(j) * dt
    plated_um3 = li_moved_um3
    d_inter = None
    li_consumed_um3 = 0.0
    d_void = np.zeros(pellet.shape)
    if chem.interphase_share > 0:
        # the reducing current partly forms interphase instead of Li metal:
        # half uniformly (chemical reaction along the whole face), half
        # following the local current smoothed over the hotspot length; the
        # reaction also eats Li metal and opens voids (Lewis-LSPS: -8.9 %
        # contact while being reduced)
        local = ndimage.gaussian_filter(j_local / abs(j), chem.hotspot_length_um / g.voxel_size_um)
        local = local / max(local[pellet].mean(), 1e-30)
        d_inter = chem.interphase_um_per_mC_cm2 * chem.interphase_share * q * (0.5 + 0.5 * local) * pellet
        plated_um3 -= chem.interphase_share * li_moved_um3
        li_consumed_um3 = (chem.interphase_li_consumption - 1.0) * float(d_inter.sum()) * a
        hazard = chem.interphase_void_per_um * d_inter
        opens = contact_columns(state, side) & (rng.random(pellet.shape) < 1.0 - np.exp(-hazard))
        d_void += _new_void_heights(chem, g.voxel_size_um, opens, rng)
    # Li into cracks, filaments and sub-surface pores comes out of the plating budget
    to_cracks = _feed_cracks(state, chem, rates, side, plated_um3, q)
    to_cracks += _grow_filament(state, chem, rates, side, j_local, dt, rng)
    to_pores = _feed_pores(state, chem, aux, side, plated_um3)
    electrode_um3 = plated_um3 - to_cracks - to_pores
    # plating refills voids first, partly
    voids = state.void_um[side]
    fill_budget = chem.void_closing_efficiency * electrode_um3
    open_cols = (voids > 0) & pellet
    if open_cols.any() and fill_budget > 0:
        fill = min(fill_budget / (open_cols.sum() * a), float(voids[open_cols].max()))
        d_void -= np.where(open_cols, np.minimum(voids, fill), 0.0)
    d_void = np.maximum(d_void, -voids)
    _apply(state, side, d_void=d_void, d_inter=d_inter, d_li_um3=electrode_um3 - li_consumed_um3)


def _apply(state: CellState, side: str, d_void, d_inter, d_li_um3: float) -> None:
    """Change voids, interphase and Li volume of one electrode; the gap follows.

    Li per column = gap - void - interphase, so a Li volume change that is
    not taken by opened voids or new interphase moves the collector.
    """
    g = state.geometry
    pellet = g.pellet_mask()
    a = g.column_area_um2
    n_cols = int(pellet.sum())
    dv = np.where(pellet, d_void, 0.0) if d_void is not None else 0.0
    di = np.where(pellet, d_inter, 0.0) if d_inter is not None else 0.0
    state.void_um[side] = np.maximum(state.void_um[side] + dv, 0.0)
    state.interphase_um[side] = state.interphase_um[side] + di
    d_gap = (d_li_um3 + (np.sum(dv) + np.sum(di)) * a) / (n_cols * a)
    state.gap_um[side] += float(d_gap)


# ---------------------------------------------------------------------------
# cracks and filaments
# ---------------------------------------------------------------------------
def _feed_cracks(state, chem, rates, plate, plated_um3, q) -> float:
    """Li intruding into cracks open at the plating face; returns the volume used."""
    if chem.crack_li_share <= 0:
        return 0.0
    mouths = [(c, "near" if c.side == plate else "far") for c in state.cracks
              if c.side == plate or c.depth_um >= state.geometry.se_thickness_um - 1e-9]
    if not mouths:
        return 0.0
    budget = chem.crack_li_share * rates.crack_li * plated_um3
    # Li focuses where Li already is (a filament tip concentrates current)
    weights = np.array([(1.0 + c.li_depth_um + c.li_far_um) ** 3 for c, _ in mouths])
    weights /= weights.sum()
    used = 0.0
    for (c, end), w in zip(mouths, weights):
        before = c.li_volume_um3()
        c.width_um += chem.crack_widening_um_per_mC_cm2 * q
        section = min(c.li_width_um, 2 * c.half_length_um) * c.width_um * np.pi / 4
        # widening alone keeps the Li volume: rescale the filament length
        scale = before / max(c.li_volume_um3(), 1e-30) if before > 0 else 1.0
        c.li_depth_um *= scale
        c.li_far_um *= scale
        grow = budget * w / section
        if end == "near":
            c.li_depth_um = min(c.li_depth_um + grow, c.depth_um)
        else:
            c.li_far_um = min(c.li_far_um + grow, c.depth_um)
        used += c.li_volume_um3() - before
    return used


def _feed_pores(state, chem, aux, plate, plated_um3) -> float:
    """Li plated into sub-surface pores of the plating face; returns the volume used."""
    if chem.subsurface_li_share <= 0:
        return 0.0
    order = aux["pore_order"][plate]
    v3 = state.geometry.voxel_size_um ** 3
    capacity = len(order) * v3 - aux["li_in_pores_side_um3"][plate]
    vol = min(chem.subsurface_li_share * plated_um3, max(capacity, 0.0))
    if vol <= 0:
        return 0.0
    aux["li_in_pores_side_um3"][plate] += vol
    state.li_in_pores_um3 += vol
    n_full = int(aux["li_in_pores_side_um3"][plate] // v3)
    idx = order[:n_full]
    state.li_in_pores[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return vol


def _new_crack(state, chem, side, j_plate, rng, *, filament: bool) -> Crack | None:
    g = state.geometry
    w = np.where(g.pellet_mask(), j_plate, 0.0).ravel() ** 2
    if w.sum() <= 0:
        return None
    k = rng.choice(w.size, p=w / w.sum())
    iy, ix = divmod(int(k), g.n_lateral)
    v = g.voxel_size_um
    y_um, x_um = (iy - g.n_lateral / 2) * v, (ix - g.n_lateral / 2) * v
    width = chem.filament_width_um if filament else chem.crack_width_um
    c = Crack(
        side=side,
        y_um=y_um,
        x_um=x_um,
        angle_rad=float(rng.uniform(0, np.pi)),
        depth_um=2 * v,
        half_length_um=max(2 * v, chem.crack_aspect * 2 * v),
        width_um=width,
        li_depth_um=2 * v if filament else 0.0,
        li_width_um=chem.filament_width_um,
        filament=filament,
        born_s=state.time_s,
    )
    return c


def _grow_cracks(state, chem, rates, plate, j_plate, q, rng) -> None:
    """Brittle SE: cracks start at hotspots of the plating face and deepen with charge."""
    if chem.crack_nucleation_per_mC_cm2 <= 0:
        return
    g = state.geometry
    se = g.se_thickness_um
    hot = j_plate > chem.crack_nucleation_mA_cm2
    if hot.any() and len(state.cracks) < chem.max_cracks:
        expected = chem.crack_nucleation_per_mC_cm2 * rates.crack * q
        for _ in range(rng.poisson(expected)):
            if len(state.cracks) >= chem.max_cracks:
                break
            c = _new_crack(state, chem, plate, np.where(hot, j_plate, 0.0), rng, filament=False)
            if c is not None:
                state.cracks.append(c)
    grow = chem.crack_growth_se_per_mC_cm2 * rates.crack * q * se
    for c in state.cracks:
        if c.side == plate and not c.filament and c.depth_um < se:
            c.depth_um = min(c.depth_um + grow, se)
            # semi-elliptical, kept inside the pellet
            room = max(g.pellet_radius_um - np.hypot(c.y_um, c.x_um), 2 * g.voxel_size_um)
            c.half_length_um = min(max(c.half_length_um, chem.crack_aspect * c.depth_um), room)


def _grow_filament(state, chem, rates, plate, j_plate, dt, rng) -> float:
    """Garnet: a Li filament grows where the local current passes the critical value.

    Returns the Li volume the filament took from the plating budget, um3.
    """
    if chem.critical_current_mA_cm2 <= 0:
        return 0.0
    g = state.geometry
    j_crit = chem.critical_current_mA_cm2 * rates.critical_current
    peak = float(j_plate.max()) if j_plate.size else 0.0
    if peak <= j_crit:
        return 0.0
    fil = [c for c in state.cracks if c.filament and c.side == plate]
    if not fil:
        if len(state.cracks) >= chem.max_cracks:
            return 0.0
        c = _new_crack(state, chem, plate, np.where(j_plate > j_crit, j_plate, 0.0), rng, filament=True)
        if c is None:
            return 0.0
        c.half_length_um = chem.filament_width_um / 2
        c.li_depth_um = 0.0
        state.cracks.append(c)
        fil = [c]
    grow = chem.filament_growth_se_per_mC_cm2 * rates.filament_growth * (peak - j_crit) * dt * g.se_thickness_um
    used = 0.0
    for c in fil:
        before = c.li_volume_um3()
        c.depth_um = min(max(c.depth_um, c.li_depth_um) + grow, g.se_thickness_um)
        c.li_depth_um = c.depth_um
        used += c.li_volume_um3() - before
    return used


def _check_short(state: CellState) -> None:
    for c in state.cracks:
        if not state.shorted and c.li_bridges(state.geometry):
            state.shorted = True
            state.shorted_at_s = state.time_s
