"""Each chemistry preset fails the way its study saw, on several seeds.

The numbers come from the studies summarised in ../shared/SCIENCE.md
(Lewis-LSPS, Hao-LPS, Dixit-LLZO); the protocols are the ones the README's
calibration table is made with (``sscell_live.twin.calibration``).
"""

import numpy as np
import pytest

from sscell_live.twin import calibration as cal

SEEDS = range(6)


def _median(values):
    vals = [v for v in values if v is not None]
    return float(np.median(vals))


def _cv(values):
    vals = np.array([v for v in values if v is not None], float)
    return float(vals.std() / vals.mean())


@pytest.fixture(scope="module")
def lsps_runs():
    return [cal.lsps_protocol(s) for s in SEEDS]


@pytest.fixture(scope="module")
def lps_runs():
    return [cal.lps_protocol(s) for s in SEEDS]


def test_lsps_contact_loss_then_runaway(lsps_runs):
    # Lewis-LSPS: 20-25 % contact at t = 0
    assert 0.20 <= _median([r["initial_contact"] for r in lsps_runs]) <= 0.30
    # the voltage runs away to the cut-off (not a short) ...
    modes = [r["mode"] for r in lsps_runs]
    assert modes.count("cutoff") >= 4 and "short" not in modes
    # ... after roughly 8-12 h (Lewis: about 9 h)
    assert 7.5 <= cal.censored_median([r["failure_h"] for r in lsps_runs]) <= 12.0
    # the interface stripped second loses about half its contact before the runaway (Lewis: 47-52 %)
    assert 0.3 <= _median([r["second_contact_loss"] for r in lsps_runs]) <= 0.7
    # cells differ: failure times vary
    assert _cv([r["failure_h"] for r in lsps_runs]) > 0.2


def test_lps_cracks_cross_early_and_short_after_cycles(lps_runs):
    # Hao-LPS: a crack crosses the pellet within the first half cycle
    assert _median([r["first_half_penetration"] for r in lps_runs]) >= 0.99
    assert all(r["mode"] == "short" for r in lps_runs)
    # ... but the cell shorts only after about 10-20 cycles, when Li connects
    assert 8 <= cal.censored_median([r["cycles_to_short"] for r in lps_runs]) <= 20
    # Li filling fraction a few percent (Hao: 2.6-8.1 %)
    assert 0.01 <= _median([r["fill_fraction_at_short"] for r in lps_runs]) <= 0.10
    # crack widths about 3 um (Hao: 3.0 growing to 4.4 um)
    assert 2.0 <= _median([r["crack_width_median_um"] for r in lps_runs]) <= 5.0
    assert _cv([r["failure_h"] for r in lps_runs]) > 0.2


def test_llzo_critical_current_density():
    runs = [cal.llzo_protocol(s) for s in SEEDS]
    assert all(r["mode"] == "short" for r in runs)
    # survives 6 uA/cm2, fails above about 26 uA/cm2 (Dixit-LLZO)
    ccd = [r["ccd_uA_cm2"] for r in runs]
    assert min(ccd) > 6
    assert 15 <= cal.censored_median(ccd) <= 40
    above = [cal.llzo_constant(s, 35.0) for s in SEEDS]
    assert all(r["mode"] == "short" for r in above)
    assert _cv([r["failure_h"] for r in above]) > 0.2


@pytest.mark.parametrize(
    "chemistry, hours",
    [("lsps", 20.0), ("lps", 30.0), ("llzo", 40.0)],  # at least as long as the failing runs above
)
def test_low_current_controls_do_not_fail(chemistry, hours):
    for seed in (0, 1):
        res = cal.control_run(chemistry, seed, hours)
        assert not res["failed"], (chemistry, seed, res)
