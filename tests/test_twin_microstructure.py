"""SE microstructure: porosity as asked, heterogeneous as asked, pores of the asked size."""

import numpy as np
import pytest
from scipy import ndimage

from sscell_live.twin import CellTwin, mini, preset


@pytest.mark.parametrize("porosity", [0.05, 0.25, 0.48])  # annealed .. amorphous LPS (Dixit-LPS)
def test_pellet_porosity_matches_the_parameter(porosity):
    chem = preset("lps").with_(porosity=porosity)
    vals = [CellTwin(chem, mini(96), seed).truth()["se_porosity"] for seed in (0, 1)]
    assert np.mean(vals) == pytest.approx(porosity, abs=0.03)


def test_porosity_factor_spread_follows_heterogeneity():
    def spread(h):
        chem = preset("lps").with_(porosity=0.2, porosity_heterogeneity=h)
        tr = CellTwin(chem, mini(128), 0).truth()
        m = tr["porosity_factor_map_through_plane"]
        return float(np.nanstd(m))

    flat, patchy = spread(0.0), spread(0.6)
    assert flat < 0.1  # sampling noise only
    assert patchy > 2 * flat and patchy > 0.15


def test_pore_size_follows_the_parameter():
    def mean_pore_volume(size_um):
        chem = preset("lps").with_(porosity=0.08, pore_size_um=size_um, porosity_heterogeneity=0.0)
        twin = CellTwin(chem, mini(96), 0)
        lab, n = ndimage.label(twin.state.pores)
        return twin.state.pores.sum() / max(n, 1)

    small, large = mean_pore_volume(2.0), mean_pore_volume(6.0)
    assert large > 4 * small  # volume grows roughly with size^3
