"""Alarm levels, the assessment record, the thresholds and the literature limits (with their sources)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Level", "Assessment", "AlarmThresholds", "LITERATURE_LIMITS", "cell_limits"]


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


#: What the studies measured about the current a cell of each chemistry
#: survives, used when the cell metadata names its chemistry but gives no
#: limit of its own (a CCD measured on a sister cell always wins).
#:
#: ``stripping_limit_mA_cm2``: effective current density (current per
#: *contact* area) at which the stripping interface runs away. Lewis-LSPS
#: (Li10SnP2S12, 1 mA/cm2): the cell polarised to -4 V once the stripping
#: interface had lost 52 % of its 20-25 % initial contact, i.e. at
#: 1 / (0.225 * 0.48) = about 9 mA/cm2 effective; it had started at 4-5.
#:
#: ``critical_current_density_mA_cm2``: nominal CCD (current per electrode
#: area at which a short or runaway sets in). Dixit-LLZO: about 26 uA/cm2
#: for 1.5 mm LLZO cells without stack pressure.
#:
#: Li3PS4 (Hao-LPS, Dixit-LPS) fails by Li-filled cracks, not by a current
#: limit the in-situ cells report: no entry, its alarm rests on the
#: penetration and bulk-resistance channels.
LITERATURE_LIMITS = {
    "lsps": {"stripping_limit_mA_cm2": 9.0, "source": "Lewis-LSPS"},
    "llzo": {"critical_current_density_mA_cm2": 0.026, "source": "Dixit-LLZO"},
}


def cell_limits(cell: dict) -> dict:
    """The current limits that apply to a cell: its own metadata first, then its chemistry's literature values.

    Returns
    -------
    dict
        ``stripping_limit_mA_cm2`` and ``critical_current_density_mA_cm2``
        (each a float or None) and ``source`` (where they came from).
    """
    lit = LITERATURE_LIMITS.get(str(cell.get("chemistry") or "").lower(), {})
    out, sources = {}, []
    for key in ("stripping_limit_mA_cm2", "critical_current_density_mA_cm2"):
        own = cell.get(key)
        if own is not None:
            value = float(own)
            if not value > 0:
                raise ValueError(f"cell {key} must be a positive current density in mA/cm2, got {own!r}")
            out[key] = value
            sources.append(f"{key} from the cell")
        elif key in lit:
            out[key] = float(lit[key])
            sources.append(f"{key} from {lit['source']}")
        else:
            out[key] = None
    out["source"] = "; ".join(sources)
    return out


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
    #: ``baseline_s`` under current) for ``watch`` and for ``imminent``. A
    #: reactive SE's interphase alone triples it within a day at moderate
    #: current without a failure (twin lsps at 0.8 mA/cm2); a runaway is
    #: announced by its exponential trend toward the cut-off, so the level
    #: itself only says ``imminent`` at five times the start.
    polarization_watch_factor: float = 1.5
    polarization_imminent_factor: float = 5.0
    baseline_s: float = 1800.0
    #: Protocol cut-off when the cell metadata gives none, V (Dixit-LPS: 10 V).
    default_cutoff_V: float = 10.0

    # -- contact channel (Lewis-LSPS) ------------------------------------------------
    #: Relative contact loss of the stripping interface since its baseline
    #: (the median of its first ``baseline_scans`` measurements). Lewis-LSPS:
    #: -8.9 % while reduced did not fail the cell; -47 % in the last hour
    #: preceded the runaway.
    contact_loss_watch: float = 0.15
    contact_loss_imminent: float = 0.25
    baseline_scans: int = 3
    #: One-sigma noise of a measured contact fraction (absolute): segmentation
    #: of a reconstructed interface slab, as the imaging path measures it.
    contact_noise: float = 0.01
    #: Loss taken as "failure" for the time to failure when no stripping
    #: limit is known (Lewis-LSPS: 52 % total loss at the runaway).
    contact_loss_failure: float = 0.50
    #: Effective current density |j| / contact of an interface that strips
    #: now or will strip after the next reversal, as a fraction of the
    #: stripping limit (``LITERATURE_LIMITS``). Lewis-LSPS started at 4-5 of
    #: about 9 mA/cm2 (0.5) and ran away within two half cycles: ``imminent``;
    #: a third of the limit is where the contact loss begins to matter.
    stripping_limit_watch: float = 0.35
    stripping_limit_imminent: float = 0.5
    #: Nominal current density against the cell's nominal CCD, scaled by the
    #: contact lost since (the effective current rises as contact falls).
    #: ``imminent`` within 10 % of the CCD: CCDs of nominally identical cells
    #: scatter by that much (Dixit-LLZO; the twin's ramps give 26-32 uA/cm2).
    effective_current_watch: float = 0.5
    effective_current_imminent: float = 0.9

    # -- cracks and Li (Hao-LPS, Dixit-LPS, Siniscalchi-LLZTO) ---------------------------
    #: Cracks cross the pellet early without failing the cell (Hao-LPS): a deep
    #: crack only earns ``watch``.
    crack_penetration_watch: float = 0.5
    #: Li inside the SE reaching toward the counter electrode.
    li_penetration_watch: float = 0.3
    li_penetration_imminent: float = 0.75
    #: One-sigma noise of a penetration fraction (about a voxel of the pellet).
    penetration_noise: float = 0.02
    #: Relative fall of the bulk resistance: the share of the SE thickness
    #: Li already bridges (Siniscalchi-LLZTO: the resistance falls as Li
    #: penetrates, then collapses at the short). Hao-LPS cells kept working
    #: for many cycles with Li-filled cracks across much of the pellet, so
    #: ``imminent`` waits until only a tenth of the ionic path is left.
    bulk_resistance_drop_watch: float = 0.3
    bulk_resistance_drop_imminent: float = 0.9
    #: Readings at the start that set the bulk-resistance baseline, s.
    bulk_baseline_s: float = 1800.0

    # -- time to failure -------------------------------------------------------------
    #: A projected failure closer than this raises ``imminent``, s, once the
    #: projection plus ``horizon_sigmas`` of its uncertainty is within it (a
    #: step of contact at a current reversal fitted through two scans
    #: projects a near failure with a wide uncertainty: not yet imminent).
    horizon_s: float = 3600.0
    horizon_sigmas: float = 1.0
    #: Scan trends use the last ``trend_points`` scans or those of the last
    #: ``trend_span_s`` (three 15-min intervals of Lewis-LSPS), whichever are
    #: more; the bulk-resistance trend uses the potentiostat readings of the
    #: last ``trend_window_s``. A slope within ``trend_significance``
    #: standard errors of zero projects nothing (with 5-min scans, contact
    #: noise alone would otherwise extrapolate to a failure).
    trend_points: int = 4
    trend_span_s: float = 2700.0
    #: Scans a trend needs at least (two: a fast collapse may allow no more
    #: before it; ``horizon_sigmas`` guards against a step read as a trend).
    trend_min_points: int = 2
    trend_window_s: float = 7200.0
    trend_significance: float = 2.0
    hysteresis: float = 0.8
