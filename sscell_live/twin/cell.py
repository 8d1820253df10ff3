"""``CellTwin``: the digital twin of one Li | SE | Li cell, in one object.

A thin stateful shell around the pure functions of ``evolution``,
``voltage``, ``state`` and ``imaging``: it owns the clock, the seeded random
generator and caches of the rendered label volumes. Deterministic for a
seed: the same calls on the same seed give the same cell.

Example
-------
>>> twin = CellTwin.create("lsps", geometry="mini", seed=1)   # doctest: +SKIP
>>> record = twin.run(current_mA_cm2=1.0, duration_s=3600, cutoff_V=5.0)
>>> twin.truth()["contact_fraction_top"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..registry import Material
from . import evolution, geometry as geometry_mod, state as state_mod, truth as truth_mod
from .chemistry import Chemistry, preset
from .geometry import CellGeometry
from .voltage import VoltageBreakdown, bulk_resistance_ohm, cell_voltage

__all__ = ["CellTwin", "RunRecord"]

TWIN_VERSION = "1"


@dataclass
class RunRecord:
    """Potentiostat-like record of a galvanostatic hold on the twin.

    Arrays have one entry per sample; ``stop_reason`` is ``"duration"``,
    ``"cutoff"`` (|V| reached the cut-off) or ``"short"``.
    """

    cell_time_s: np.ndarray
    voltage_V: np.ndarray
    current_mA_cm2: np.ndarray
    charge_mC_cm2: np.ndarray
    bulk_resistance_ohm: np.ndarray
    stop_reason: str = "duration"
    samples: list = field(default_factory=list, repr=False)


class CellTwin:
    """Digital twin of a symmetric Li | SE | Li cell under current.

    Parameters
    ----------
    chemistry : Chemistry
    geometry : CellGeometry
    seed : int
        Fixes microstructure, cell-to-cell variability and every random
        event of the evolution.
    """

    def __init__(self, chemistry: Chemistry, geometry: CellGeometry, seed: int = 0):
        self.chemistry = chemistry
        self.geometry = geometry
        self.seed = int(seed)
        self.state, self.rates, self._aux = evolution.initial_state(geometry, chemistry, self.seed)
        self._rng = np.random.default_rng([self.seed, 1])
        self._cache: dict = {}
        self.cutoff_reached = False

    @classmethod
    def create(cls, chemistry: str | Chemistry = "lps", geometry: str | CellGeometry = "mini", seed: int = 0, **geometry_kw) -> "CellTwin":
        """Twin from preset names: chemistry ``lsps|lps|llzo``, geometry ``mini|full``."""
        chem = preset(chemistry) if isinstance(chemistry, str) else chemistry
        if isinstance(geometry, str):
            if geometry not in ("mini", "full"):
                raise ValueError(f"unknown geometry {geometry!r}; choose 'mini' or 'full'")
            geometry = getattr(geometry_mod, geometry)(**geometry_kw)
        return cls(chem, geometry, seed)

    # -- clock and electrochemistry ---------------------------------------------
    @property
    def time_s(self) -> float:
        """Cell clock, s."""
        return self.state.time_s

    @property
    def shorted(self) -> bool:
        return self.state.shorted

    @property
    def failed(self) -> bool:
        """The cell has shorted or hit a voltage cut-off."""
        return self.state.shorted or self.cutoff_reached

    def voltage(self, current_mA_cm2: float) -> VoltageBreakdown:
        """Voltage now at a current density (does not advance the clock)."""
        return cell_voltage(self.state, self.chemistry, current_mA_cm2, supply_limit_factor=self.rates.supply_limit)

    def bulk_resistance_ohm(self) -> float:
        return bulk_resistance_ohm(self.state, self.chemistry)

    def advance(self, current_mA_cm2: float, dt_s: float) -> None:
        """Hold a current for ``dt_s`` seconds (no sampling, no cut-off)."""
        evolution.advance(self.state, self.chemistry, self.rates, self._aux, current_mA_cm2, dt_s, self._rng)

    def run(
        self,
        current_mA_cm2: float,
        duration_s: float,
        *,
        cutoff_V: float | None = None,
        sample_period_s: float = 60.0,
    ) -> RunRecord:
        """Galvanostatic hold with voltage sampling and an optional cut-off.

        Parameters
        ----------
        current_mA_cm2 : float
            Positive strips the top electrode.
        duration_s : float
            Hold duration, s.
        cutoff_V : float, optional
            Stop early once ``|V| >= cutoff_V`` (the protocol cut-off).
        sample_period_s : float
            Voltage sampling period, s.

        Returns
        -------
        RunRecord
        """
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"duration_s must be >= 0 s, got {duration_s!r}")
        if not (math.isfinite(sample_period_s) and sample_period_s > 0):
            raise ValueError(f"sample_period_s must be > 0 s, got {sample_period_s!r}")
        if cutoff_V is not None and not cutoff_V > 0:
            raise ValueError(f"cutoff_V must be a positive voltage, got {cutoff_V!r}")
        t, vv, jj, qq, rr = [], [], [], [], []
        reason = "duration"
        elapsed = 0.0
        while elapsed < duration_s - 1e-9:
            h = min(sample_period_s, duration_s - elapsed)
            self.advance(current_mA_cm2, h)
            elapsed += h
            v = self.voltage(current_mA_cm2).voltage_V
            t.append(self.time_s)
            vv.append(v)
            jj.append(current_mA_cm2)
            qq.append(self.state.charge_mC_cm2)
            rr.append(self.bulk_resistance_ohm())
            if self.state.shorted and reason == "duration":
                reason = "short"
            if cutoff_V is not None and abs(v) >= cutoff_V:
                self.cutoff_reached = True
                reason = "cutoff"
                break
        return RunRecord(np.array(t), np.array(vv), np.array(jj), np.array(qq), np.array(rr), reason)

    # -- voxel truth ----------------------------------------------------------------
    def semantic(self) -> np.ndarray:
        """Semantic truth volume (``registry.Semantic`` codes), uint8 (z, y, x); cached per state."""
        key = ("semantic", self.state.version)
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = state_mod.render_semantic(self.state)
        return self._cache[key]

    def labels(self) -> np.ndarray:
        """Material label volume (``registry.Material`` codes), uint8 (z, y, x)."""
        return state_mod.semantic_to_material(self.semantic())

    def truth(self) -> dict:
        """Ground truth of every metric, under the registry's names, plus twin-only values.

        Voxel quantities are counted on the rendered truth; continuous values
        (``*_continuous``) come from the state itself.
        """
        out = state_mod.bookkeeping(self.state, self.semantic())
        s = self.state
        out.update(
            cell_time_s=s.time_s,
            charge_passed_C=s.charge_mC_cm2 * 1e-3 * self.geometry.area_cm2,
            charge_passed_abs_C=s.charge_abs_mC_cm2 * 1e-3 * self.geometry.area_cm2,
            shorted=s.shorted,
            li_total_continuous_um3=s.total_li_um3(),
            li_in_cracks_continuous_um3=s.li_in_cracks_um3(),
            li_in_pores_continuous_um3=s.li_in_pores_um3,
            interphase_volume_continuous_um3=s.interphase_volume_um3(),
            bulk_resistance_ohm=self.bulk_resistance_ohm(),
            cracks=[dict(vars(c)) for c in s.cracks],
        )
        sem = self.semantic()
        for side in state_mod.SIDES:
            out[f"void_map_{side}_um"] = truth_mod.void_height_map_um(sem, self.geometry, side)
            out[f"li_thickness_continuous_map_{side}_um"] = s.li_thickness_um(side)
            out[f"subsurface_porosity_map_{side}"] = truth_mod.subsurface_porosity_map(sem, self.geometry, side)
            out[f"local_current_density_now_{side}_mA_cm2"] = s.last_local_current.get(side)
        pf = truth_mod.porosity_factor_maps(sem, self.geometry)
        out["porosity_factor_map_in_plane"] = pf["in_plane"]
        out["porosity_factor_map_through_plane"] = pf["through_plane"]
        return out

    def scan(self, angles_rad, *, beam=None, detector=None, n_flats: int = 20, n_darks: int = 10, rng=None):
        """Simulate a tomography scan of the current state.

        Parameters
        ----------
        angles_rad : array_like
            Projection angles in acquisition order, radians.
        beam : imaging.Beam, optional
            Default: monochromatic at the chemistry's energy (25-28 keV
            sulfides, 76 keV garnet), 100 mm propagation, phase contrast on.
        detector : imaging.Detector, optional
            Default: pixel = voxel, 2e4 flat counts, Poisson noise, a 0.7-pixel
            point-spread function, no defective pixels (ask for rings with
            ``Detector(bad_pixel_fraction=...)``).
        n_flats, n_darks : int
        rng : numpy Generator or int, optional
            Noise source; default a stream derived from the twin's seed and
            clock, so repeated scans differ but a replay is identical.

        Returns
        -------
        imaging.SimulatedScan
        """
        from . import imaging

        beam = imaging.Beam(energy_keV=self.chemistry.energy_keV) if beam is None else beam
        # a scintillator blurs voxel-sharp edges: fringes as real cameras record them
        detector = imaging.Detector(psf_sigma_px=0.7) if detector is None else detector
        if rng is None:
            rng = np.random.default_rng([self.seed, 2, int(self.state.time_s), self.state.version])
        return imaging.simulate_scan(
            self.labels(), self.geometry.voxel_size_um, angles_rad, beam, detector, rng,
            n_flats=n_flats, n_darks=n_darks, chemistry=self.chemistry.name,
            compositions={int(Material.SE): self.chemistry.se_composition},
            # no cache key: imaging keys its cache on a digest of the labels, which
            # stays right when two twins share a seed but not a history
        )

    def crack_labels(self) -> np.ndarray:
        """Crack id per voxel of the SE slab (0 none), int16 (z_se, y, x)."""
        return truth_mod.crack_label_volume(self.state)

    def describe(self) -> dict:
        """Metadata for start documents: cell and twin (registry schema)."""
        cell = self.geometry.describe()
        cell["chemistry"] = self.chemistry.name
        return {
            "cell": cell,
            "twin": {
                "seed": self.seed,
                "version": TWIN_VERSION,
                "package_version": __version__,
                "chemistry": self.chemistry.name,
                "geometry": self.geometry.name,
            },
        }
