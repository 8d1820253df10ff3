"""Alarm levels, the assessment record and the thresholds (with their sources)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Level", "Assessment", "AlarmThresholds"]


class Level(enum.IntEnum):
    """Alarm levels, ordered: a higher value is worse."""

    OK = 0
    WATCH = 1
    IMMINENT = 2
    FAILED = 3

    def __str__(self) -> str:  # "ok", "watch", ... as the issue and the dashboard spell them
        return self.name.lower()


@dataclass(frozen=True)
class Assessment:
    """What the alarm concludes from a history.

    Attributes
    ----------
    level : str
        ``"ok"``, ``"watch"``, ``"imminent"`` or ``"failed"``.
    reasons : list of str
        One sentence per signal that raised the level, with its numbers.
    time_to_failure_s : float or None
        Estimated cell time left before failure (from ``watch`` on), s.
    time_to_failure_uncertainty_s : float or None
        One-sigma uncertainty of that estimate, s.
    charge_to_failure_C : float or None
        Charge left before failure at the present current, C (needs the cell area).
    signals : dict
        Per-signal details (values, baselines, rates, levels) for the dashboard.
    """

    level: str
    reasons: list = field(default_factory=list)
    time_to_failure_s: float | None = None
    time_to_failure_uncertainty_s: float | None = None
    charge_to_failure_C: float | None = None
    signals: dict = field(default_factory=dict)

    @property
    def level_value(self) -> int:
        """The level as an integer 0-3 (for a Signal or a plot)."""
        return int(Level[self.level.upper()])


@dataclass(frozen=True)
class AlarmThresholds:
    """Thresholds of the failure alarm, each with a physical meaning.

    Enter thresholds raise a level; a level falls back only once its signal
    is below ``hysteresis`` times the enter threshold (levels have
    hysteresis so a noisy signal near a threshold does not flicker).
    """

    # -- voltage channel -----------------------------------------------------------
    #: Rolling-median window against spikes: X-ray exposure alone shifts the
    #: voltage by about 10 mV (SCIENCE.md 2) and potentiostats glitch.
    smoothing_s: float = 300.0
    #: A short: the smoothed |V| under current below this ...
    short_voltage_V: float = 0.01
    #: ... and below this fraction of the baseline polarization ...
    short_fraction_of_baseline: float = 0.2
    #: ... for at least this long (SCIENCE.md 4.5: V falls to near 0 V).
    short_persistence_s: float = 600.0
    #: Area-specific resistance |V|/|j| relative to its baseline (first
    #: ``baseline_s`` under current) for ``watch`` and for ``imminent``.
    polarization_watch_factor: float = 1.5
    polarization_imminent_factor: float = 3.0
    baseline_s: float = 1800.0
    #: Protocol cut-off when the cell metadata gives none, V (Dixit-LPS: 10 V).
    default_cutoff_V: float = 10.0

    # -- contact channel (Lewis-LSPS) ------------------------------------------------
    #: Relative contact loss of the stripping interface since its first
    #: measurement. Lewis-LSPS: -8.9 % while reduced did not fail the cell;
    #: -47 % in the last hour preceded the runaway.
    contact_loss_watch: float = 0.15
    contact_loss_imminent: float = 0.25
    #: One-sigma noise of a measured contact fraction (absolute): segmentation
    #: of a reconstructed interface slab, as the imaging path measures it.
    contact_noise: float = 0.01
    contact_loss_failure: float = 0.50  # the loss extrapolated to as "failure" for time-to-failure
    #: Effective current density |j| / contact as a fraction of the cell's CCD.
    effective_current_watch: float = 0.5
    effective_current_imminent: float = 0.8

    # -- cracks and Li (Hao-LPS, Dixit-LPS, Siniscalchi-LLZTO) ---------------------------
    #: Cracks cross the pellet early without failing the cell (Hao-LPS): a deep
    #: crack only earns ``watch``.
    crack_penetration_watch: float = 0.5
    #: Li inside the SE reaching toward the counter electrode.
    li_penetration_watch: float = 0.3
    li_penetration_imminent: float = 0.75
    #: One-sigma noise of a penetration fraction (about a voxel of the pellet).
    penetration_noise: float = 0.02
    #: Relative fall of the bulk resistance (Li filament shortening the ionic path).
    bulk_resistance_drop_watch: float = 0.1
    bulk_resistance_drop_imminent: float = 0.7

    # -- time to failure -------------------------------------------------------------
    #: A projected failure closer than this raises ``imminent``, s.
    horizon_s: float = 3600.0
    #: Scans used for trends.
    trend_points: int = 4
    hysteresis: float = 0.8
