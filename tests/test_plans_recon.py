"""A tomo_scan run's documents reconstruct: the Li|SE interfaces land within 1 voxel of the twin's truth.

Everything the analysis uses comes from the documents (frames resolved from
StreamResource/StreamDatum, angles from the per-frame datakey, the rotation
centre from the start document); only the truth comes from the twin.
"""

from __future__ import annotations

import numpy as np
import pytest
from sscell_live.plans import Experiment, tomo_scan

from sscell_live.recon import find_interfaces, reconstruct
from sscell_live.recon.backends import fourier


def _band_edges(profile):
    """First row of the dense band in the profile's middle and first row past it (half-level crossings, sub-row).

    The profile runs steel | Li | SE | Li | steel; the band is the SE, its level
    taken in the middle, the Li level as the profile's low decile between the steel plates.
    """
    p = np.asarray(profile, dtype=float)
    n = len(p)
    mid = n // 2
    hi = np.median(p[mid - 10: mid + 10])
    lo = np.percentile(p[n // 8: 7 * n // 8], 10)
    half = 0.5 * (lo + hi)
    i = j = mid
    while i > 0 and p[i - 1] >= half:
        i -= 1
    while j < n - 1 and p[j + 1] >= half:
        j += 1
    # rows are centred on k + 0.5: the face lies where the profile crosses half way
    top = i + 0.5 - (p[i] - half) / (p[i] - p[i - 1])
    bottom = j + 0.5 + (p[j] - half) / (p[j] - p[j + 1])
    return top, bottom


@pytest.fixture(scope="module", params=["lps", "llzo"])
def scan_docs(request, tmp_path_factory):
    """Documents of one pristine 180-degree step scan on a mini cell, and the beamline (for the truth)."""
    from bluesky import RunEngine
    from sscell_live.devices import SimBeamline

    RE = RunEngine({}, call_returns_result=True)  # first: it starts the event loop the devices connect in
    bl = SimBeamline.create(request.param, "mini", 0, n_lateral=96,
                            write_directory=tmp_path_factory.mktemp("frames_recon"))
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(tomo_scan(bl, num_angles=90, num_darks=4, num_flats=8, experiment=Experiment()))
    return bl, docs


def test_interfaces_from_documented_projections_within_one_voxel(scan_docs, resolve_runs):
    bl, docs = scan_docs
    (run,) = resolve_runs(docs).values()
    st = run["streams"]
    assert set(st) >= {"dark", "flat", "primary"}
    top, bottom = find_interfaces(st["primary"]["detector"][::10], st["flat"]["detector"], st["dark"]["detector"])
    g = bl.twin.geometry
    assert abs(top - g.se_top_index) <= 1, (top, g.se_top_index)
    assert abs(bottom - g.se_bottom_index) <= 1, (bottom, g.se_bottom_index)


@pytest.mark.skipif(not fourier.available(), reason="finufft not installed")
def test_reconstructed_slices_from_documents(scan_docs, resolve_runs):
    """Flat/dark-normalised FBP with the documented centre; the slices' vertical profile gives the faces.

    The profile is the upper quartile of each slice over a central disc: pores
    (10 % of the SE, 17 % in its first row on lps) and phase fringes pull a
    mean profile's half-level crossing rows inside the SE, while the upper
    quartile follows the dense SE (measured on lps seeds 0-3: faces within
    0.5 row with the quartile, 1.1-1.2 rows with the median, up to 27 rows off
    with the mean).
    """
    bl, docs = scan_docs
    (run,) = resolve_runs(docs).values()
    start, st = run["start"], run["streams"]
    frames = st["primary"]["detector"].astype(np.float32)
    theta = np.radians(st["primary"]["detector-rotation_angle_deg"])
    assert frames.shape == (90, *start["detector_shape"])
    vol = reconstruct(frames, theta, flats=st["flat"]["detector"], darks=st["dark"]["detector"],
                      center=start["rotation_centre_px"])
    rows, n = vol.shape[0], vol.shape[-1]
    assert vol.shape == (rows, n, n) and np.isfinite(vol).all()

    yy, xx = np.mgrid[:n, :n] - (n // 2)
    disc = yy**2 + xx**2 <= (0.3 * n) ** 2  # well inside the electrodes
    g = bl.twin.geometry
    se_slice = vol[(g.se_top_index + g.se_bottom_index) // 2][disc]
    li_slice = vol[g.se_top_index - 10][disc]
    assert se_slice.mean() > li_slice.mean() + 10 * li_slice.std() / np.sqrt(disc.sum())
    top, bottom = _band_edges(np.percentile(vol[:, disc], 75, axis=1))
    assert abs(top - g.se_top_index) <= 1, (top, g.se_top_index)
    assert abs(bottom - g.se_bottom_index) <= 1, (bottom, g.se_bottom_index)
