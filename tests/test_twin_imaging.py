"""Tests of the twin's X-ray imaging: projector geometry, physics, detector.

Every reference here is computed by independent code in this file (analytic
chords through ellipsoids, a textbook Siddon ray tracer, transport-of-
intensity, Beer-Lambert), never by the code under test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from skimage.transform import radon

from sscell_live.registry import Material
from sscell_live.twin.imaging import (
    Beam,
    Detector,
    attenuation_and_phase,
    clear_intensity_cache,
    detector_maps,
    fresnel_propagate,
    path_lengths,
    simulate_darks,
    simulate_flats,
    simulate_projections,
    simulate_scan,
    transmitted_intensity,
)
from sscell_live.twin.projector import forward_project, system_matrix
from sscell_live.twin.xray import material_optics, pink_spectrum, wavelength_um


# ---------------------------------------------------------------------------
# X-ray constants
# ---------------------------------------------------------------------------
def test_xraydb_sanity_values_from_science_md():
    li = material_optics(25.0)[Material.LI][0] * 1e4  # 1/um -> 1/cm
    lps = material_optics(25.0, chemistry="lps")[Material.SE][0] * 1e4
    llzo = material_optics(76.0, chemistry="llzo")[Material.SE][0] * 1e4
    li76 = material_optics(76.0, chemistry="llzo")[Material.LI][0] * 1e4
    assert 0.07 < li < 0.11
    assert 5.0 < lps < 6.2
    assert 12.5 < llzo < 16.0
    assert 0.05 < li76 < 0.09
    optics = material_optics(25.0)
    assert optics[Material.VACUUM] == (0.0, 0.0)
    # refraction: Li < SE < steel, all of order 1e-7 .. 1e-5 at 25 keV
    assert 1e-7 < optics[Material.LI][1] < optics[Material.SE][1] < optics[Material.STEEL][1] < 1e-5
    # the garnet interphase is the carbonate, the sulfide one Li2S: different optics
    assert material_optics(25.0, chemistry="llzo")[Material.INTERPHASE] != optics[Material.INTERPHASE]


def test_pink_spectrum_band_and_mean():
    e, w = pink_spectrum("diamond_i13")
    assert e.min() >= 18.0 and e.max() <= 24.0
    assert w.sum() == pytest.approx(1.0)
    assert (e * w).sum() == pytest.approx(22.3, abs=0.02)
    assert Beam.pink().mean_energy_keV == pytest.approx(22.3, abs=0.02)


# ---------------------------------------------------------------------------
# Projector geometry
# ---------------------------------------------------------------------------
def _siddon_row(ny, nx, theta, s):
    """Textbook Siddon: lengths of the line x cos - y sin = s in each pixel."""
    cy, cx = ny // 2, nx // 2
    d = np.array([np.sin(theta), np.cos(theta)])  # (x, y) direction along the ray
    p0 = np.array([s * np.cos(theta), -s * np.sin(theta)])
    alphas = [np.array([-1e3, 1e3])]
    for axis, n, c in ((0, nx, cx), (1, ny, cy)):
        if abs(d[axis]) > 1e-12:
            planes = np.arange(n + 1) - c - 0.5
            alphas.append((planes - p0[axis]) / d[axis])
    a = np.unique(np.concatenate(alphas))
    mid = 0.5 * (a[1:] + a[:-1])
    seg = np.diff(a)
    x, y = p0[0] + mid * d[0], p0[1] + mid * d[1]
    ix, iy = np.floor(x + cx + 0.5).astype(int), np.floor(y + cy + 0.5).astype(int)
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    row = np.zeros(ny * nx)
    np.add.at(row, iy[ok] * nx + ix[ok], seg[ok])
    return row


def test_system_matrix_equals_textbook_siddon():
    ny, nx, n_det, centre = 11, 14, 20, 10.7
    angles = np.deg2rad([0.0, 17.0, 45.0, 72.0, 90.0, 133.0, 200.0, 290.0, -35.0])
    A = system_matrix(ny, nx, angles, n_det, centre, n_subrays=1).toarray()
    for a, th in enumerate(angles):
        for c in range(n_det):
            ref = _siddon_row(ny, nx, th, c - centre)
            np.testing.assert_allclose(A[a * n_det + c], ref, atol=2e-5)


def test_orientation_matches_skimage_radon():
    n = 64
    yy, xx = np.mgrid[0:n, 0:n]
    disk = (((yy - 18) ** 2 + (xx - 44) ** 2) < 9).astype(float)  # off-centre, small
    ang_deg = np.array([0.0, 30.0, 100.0, 250.0, 330.0])
    ref = radon(disk, ang_deg, circle=False)  # (n_det, n_angles), axis at the padded centre
    n_det = ref.shape[0]
    cols = np.arange(n_det)
    # far enough off-centre that a mirrored or reversed convention would miss by pixels
    assert np.abs((ref * cols[:, None]).sum(0) / ref.sum(0) - n_det // 2).max() > 15
    for order in (1, -1):  # ascending, then counter-rotating
        ours = forward_project(disk[None], np.deg2rad(ang_deg[::order]), n_det=n_det, centre_px=n_det // 2)[:, 0]
        ours = ours[::order]
        for i in range(len(ang_deg)):
            com_ref = (ref[:, i] * cols).sum() / ref[:, i].sum()
            com = (ours[i] * cols).sum() / ours[i].sum()
            assert abs(com - com_ref) < 0.5, (ang_deg[i], com, com_ref)
            assert ours[i].sum() == pytest.approx(disk.sum(), rel=0.02)  # mass (up to sub-ray sampling)


def _ellipsoids():
    """(centre zyx, semi-axes xyz, rotation matrix, mu) of three off-axis ellipsoids.

    Tens of voxels across: the voxel model blurs edges by about one voxel,
    an error of about (1 voxel / size) in the L2 norm.
    """
    az, tilt = np.deg2rad(35), np.deg2rad(10)
    ca, sa, ct, st = np.cos(az), np.sin(az), np.cos(tilt), np.sin(tilt)
    rotated = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, ct, -st], [0, st, ct]])
    return [
        (np.array([7.4, -27.0, 33.0]), np.array([27.0, 18.0, 4.0]), np.eye(3), 1.0),
        (np.array([8.3, 33.0, -22.5]), np.array([37.5, 15.0, 4.5]), rotated, 0.5),
        (np.array([7.0, 6.0, 9.0]), np.array([16.5, 16.5, 5.5]), np.eye(3), 2.0),
    ]


@functools.lru_cache(maxsize=1)
def _voxelised(shape=(16, 192, 192), sub=3):
    """Partial-volume mu of the ellipsoids, sub^3 samples per voxel."""
    nz, ny, nx = shape
    o = (np.arange(sub) + 0.5) / sub - 0.5
    y = (np.arange(ny)[:, None] + o).ravel() - ny // 2
    x = (np.arange(nx)[:, None] + o).ravel() - nx // 2
    vol = np.zeros(shape)
    for iz in range(nz):
        z = iz + o
        P = np.stack(np.meshgrid(x, y, z, indexing="xy"), axis=-1)  # (ny*sub, nx*sub, sub, 3) as xyz
        slab = np.zeros(P.shape[:3])
        for c, axes, R, mu in _ellipsoids():
            q = P - c[::-1]
            Q = R @ np.diag(1 / axes**2) @ R.T
            slab += mu * (np.einsum("...i,ij,...j->...", q, Q, q) <= 1)
        vol[iz] = slab.reshape(ny, sub, nx, sub, sub).mean(axis=(1, 3, 4))
    return vol


def _analytic(angles, nz, n_det, centre, n_subrays=2, z_sub=3):
    """Line integrals of the ellipsoids for the projector's sub-rays, averaged
    over each row's z extent like the voxelisation: chord = sqrt(disc) / A."""
    out = np.zeros((len(angles), nz, n_det))
    so = (np.arange(n_subrays) + 0.5) / n_subrays - 0.5
    zo = (np.arange(z_sub) + 0.5) / z_sub - 0.5
    for a, th in enumerate(angles):
        s = (np.arange(n_det)[:, None] + so - centre)  # (n_det, n_sub)
        for zoff in zo:
            z = np.arange(nz) + zoff
            p0 = np.stack(np.broadcast_arrays(s[None] * np.cos(th), -s[None] * np.sin(th),
                                              z[:, None, None]), axis=-1)  # (nz, n_det, n_sub, 3)
            d = np.array([np.sin(th), np.cos(th), 0.0])
            for c, axes, R, mu in _ellipsoids():
                Q = R @ np.diag(1 / axes**2) @ R.T
                q = p0 - c[::-1]
                A = d @ Q @ d
                B = 2 * np.einsum("...i,ij,j->...", q, Q, d)
                C = np.einsum("...i,ij,...j->...", q, Q, q) - 1
                disc = np.clip(B**2 - 4 * A * C, 0, None)
                out[a] += mu * (np.sqrt(disc) / A).mean(axis=-1) / z_sub
    return out


@pytest.mark.parametrize(
    "angles",
    [np.linspace(0, np.pi, 60, endpoint=False),  # 180 degrees
     np.linspace(0, 2 * np.pi, 90, endpoint=False),  # 360 degrees
     np.linspace(2 * np.pi, 0, 47)],  # counter-rotating
    ids=["180deg", "360deg", "descending"],
)
def test_ellipsoids_match_analytic_line_integrals(angles):
    vol = _voxelised()
    shape = vol.shape
    n_det, centre = 192, 96 + 3.3  # rotation axis 3.3 px right of the detector middle
    ours = forward_project(vol, angles, n_det=n_det, centre_px=centre)
    ref = _analytic(angles, shape[0], n_det, centre)
    hit = ref > 0
    rel = np.linalg.norm(ours[hit] - ref[hit]) / np.linalg.norm(ref[hit])
    assert rel < 0.01, rel
    # a centre one pixel off, or the angle sense reversed, is far outside 1 %
    wrong_centre = _analytic(angles, shape[0], n_det, centre + 1.0)
    assert np.linalg.norm(ours[hit] - wrong_centre[hit]) / np.linalg.norm(ref[hit]) > 0.05
    wrong_sense = _analytic(-angles, shape[0], n_det, centre)
    assert np.linalg.norm(ours[hit] - wrong_sense[hit]) / np.linalg.norm(ref[hit]) > 0.05


def _cell_labels(nz=24, n=64, seed=0):
    """A small asymmetric cell: housing ring, SE with pores, Li layer, steel rod."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((nz, n, n), np.uint8)
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(yy - n // 2, xx - n // 2)
    lab[:, r < 0.45 * n] = Material.HOUSING
    lab[:, r < 0.36 * n] = Material.SE
    lab[: nz // 6, r < 0.36 * n] = Material.STEEL
    lab[nz // 6: nz // 3, r < 0.36 * n] = Material.LI
    pores = (rng.random((nz, n, n)) < 0.02) & (lab == Material.SE)
    lab[pores] = Material.VACUUM
    lab[nz // 2:, (np.abs(yy - 20) < 5) & (np.abs(xx - 40) < 3)] = Material.LI  # off-axis filament
    return lab


def test_frame_equals_mirrored_frame_half_a_turn_later():
    lab = _cell_labels()
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    det = Detector(centre_offset_px=3.5, n_det=72)
    intensity = transmitted_intensity(lab, 1.5, angles, Beam(phase_contrast=False), det, use_cache=False)
    c2 = int(2 * (72 / 2 + 3.5))  # column c at theta sees column c2 - c at theta + pi
    cols = np.arange(c2 - 71, 72)
    half = len(angles) // 2
    for i in range(half):
        a, b = intensity[i][:, cols], intensity[i + half][:, c2 - cols]
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert np.abs(intensity[0] - intensity[half]).max() > 2e-3  # the phantom is not symmetric


# ---------------------------------------------------------------------------
# Physics
# ---------------------------------------------------------------------------
def test_beer_lambert_uniform_slab():
    voxel = 2.0
    lab = np.zeros((4, 40, 40), np.uint8)
    lab[:, 10:30, :] = Material.SE  # 20 voxels = 40 um thick along y
    mu = material_optics(25.0)[Material.SE][0]
    angles = np.deg2rad([0.0, 20.0])
    intensity = transmitted_intensity(lab, voxel, angles, Beam(phase_contrast=False), use_cache=False)
    for i, th in enumerate(angles):
        cols = slice(14, 27)  # rays that cross both slab faces
        measured = -np.log(intensity[i][:, cols])
        expected = mu * 40.0 / np.cos(th)
        np.testing.assert_allclose(measured, expected, rtol=0.005)
    B, Phi = attenuation_and_phase(lab, voxel, angles[:1], 25.0)
    k = 2 * np.pi / wavelength_um(25.0)
    np.testing.assert_allclose(Phi[0], k * material_optics(25.0)[Material.SE][1] * 40.0, rtol=1e-4)
    L = path_lengths(lab, voxel, angles[:1])
    np.testing.assert_allclose(L[Material.SE][0], 40.0, rtol=1e-5)


def test_propagation_matches_transport_of_intensity_for_weak_phase():
    # A weak, smooth phase bump: I = 1 + (lambda z / 2 pi) laplacian(Phi).
    n, p, sigma, amp = 96, 1.5, 6.0, 1.0
    lam, z = wavelength_um(25.0), 100e3
    y, x = (np.mgrid[0:n, 0:n] - n / 2) * p
    r2 = x**2 + y**2
    phi = amp * np.exp(-r2 / (2 * sigma**2))
    lap = phi * (r2 / sigma**4 - 2 / sigma**2)
    expected = lam * z / (2 * np.pi) * lap
    got = fresnel_propagate(np.zeros_like(phi), phi, lam, z, p) - 1
    rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert rel < 0.05, rel
    assert np.abs(expected).max() > 0.01  # a visible effect, not a trivially small one


def test_li_and_void_differ_only_through_phase_contrast():
    # SE block with a Li cube and an empty cube of equal size at different heights.
    nz, n = 32, 64
    lab = np.zeros((nz, n, n), np.uint8)
    lab[:, 4:60, 4:60] = Material.SE
    lab[4:14, 24:40, 24:40] = Material.LI
    lab[18:28, 24:40, 24:40] = Material.VACUUM
    angles = np.array([0.0])

    def profiles(phase):
        frame = transmitted_intensity(lab, 1.5, angles, Beam(25.0, phase_contrast=phase), use_cache=False)[0]
        return frame[6:12].mean(axis=0), frame[20:26].mean(axis=0)  # rows through Li, rows through the void

    li_off, void_off = profiles(False)
    li_on, void_on = profiles(True)
    off = np.abs(li_off - void_off).max()
    on = np.abs(li_on - void_on).max()
    # absorption alone: mu_Li * 24 um = 2e-4; Li is nearly a void
    assert 5e-5 < off < 1e-3, off
    # phase contrast: Li and void edges give different fringes
    assert on > 0.01 and on > 10 * off, (on, off)


# ---------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("photons", [200.0, 2e4])
def test_flat_counts_have_poisson_variance(photons):
    det = Detector(photons_per_pixel=photons, dark_counts=100.0, read_noise_counts=0.0, quantize=False)
    flats = simulate_flats(400, 8, 16, det, np.random.default_rng(3))
    dark = detector_maps(det, 8, 16).dark
    signal = flats.mean(axis=0) - dark
    var = flats.var(axis=0, ddof=1)
    assert (var.sum() / signal.sum()) == pytest.approx(1.0, abs=0.05)
    # smooth beam profile: the flat is not uniform, and it has the declared tilt
    assert signal[-1].mean() / signal[0].mean() == pytest.approx(1 + det.beam_gradient[0] * 7 / 8, abs=0.01)
    darks = simulate_darks(50, 8, 16, Detector(read_noise_counts=2.0), np.random.default_rng(4))
    assert darks.std(axis=0).mean() == pytest.approx(2.0, rel=0.15)


def test_bad_pixels_leave_stripes_that_flat_field_correction_cannot_remove():
    lab = _cell_labels(nz=20, n=48)
    lab[lab == Material.STEEL] = Material.SE  # keep transmission high: stripes are not hidden in noise
    angles = np.linspace(0, np.pi, 120, endpoint=False)
    det = Detector(photons_per_pixel=5e4, bad_columns=(7, 30), bad_pixel_fraction=0.004, dead_columns=(40,))
    scan = simulate_scan(lab, 1.5, angles, Beam(phase_contrast=False), det, rng=7, n_flats=50, n_darks=20)
    dark = scan.darks.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (scan.projections - dark) / (scan.flats.mean(axis=0) - dark)
    truth = transmitted_intensity(lab, 1.5, angles, Beam(phase_contrast=False), det)
    dev = np.median(norm / truth, axis=0) - 1  # per detector pixel, over all angles
    maps = detector_maps(det, *dev.shape)
    bad, dead = maps.bad, maps.dead
    assert bad[:, 7].all() and bad[:, 30].all() and 0 < bad[:, np.r_[0:7, 8:30, 31:48]].sum() < 12
    # good pixels: flat-field correction works (gain non-uniformity and beam profile removed)
    assert np.abs(dev[~bad & ~dead]).max() < 0.005
    # bad pixels: a persistent offset, same sign at every angle (a stripe, hence a ring)
    assert np.abs(dev[bad]).min() > 0.015
    per_angle = norm[:, bad] / truth[:, bad] - 1
    assert (np.sign(per_angle) == np.sign(dev[bad])).mean() > 0.95
    # dead pixels: no signal left, only noise over a near-zero flat
    assert np.all(~np.isfinite(norm[:, :, 40]).any(axis=0) | (norm[:, :, 40].std(axis=0) > 0.3))


def test_binned_detector_and_centre_truth():
    lab = _cell_labels(nz=24, n=64)
    det = Detector(pixel_size_um=3.0, centre_offset_px=1.25, noise=False)
    scan = simulate_scan(lab, 1.5, np.linspace(0, np.pi, 8, endpoint=False), Beam(phase_contrast=False), det,
                         rng=0, n_flats=2, n_darks=2)
    assert scan.projections.shape == (8, 12, 32)
    assert scan.centre_px == pytest.approx(32 / 2 + 1.25)
    assert scan.pixel_size_um == 3.0
    # binned intensity = mean of the 2 x 2 voxel-size pixels it covers
    fine = transmitted_intensity(lab, 1.5, scan.angles_rad, Beam(phase_contrast=False),
                                 Detector(centre_offset_px=2 * 1.25 + 0.5), use_cache=False)
    coarse = transmitted_intensity(lab, 1.5, scan.angles_rad, Beam(phase_contrast=False), det, use_cache=False)
    np.testing.assert_allclose(coarse, fine.reshape(8, 12, 2, 32, 2).mean(axis=(2, 4)), rtol=1e-5)


def test_pink_beam_is_a_weighted_sum_over_energies():
    lab = _cell_labels(nz=6, n=32)
    angles = np.array([0.3])
    e, w = pink_spectrum(n_energies=4)
    pink = transmitted_intensity(lab, 1.5, angles, Beam(spectrum=(e, w)), use_cache=False)
    mono = sum(wi * transmitted_intensity(lab, 1.5, angles, Beam(energy_keV=ei), use_cache=False)
               for ei, wi in zip(e, w))
    np.testing.assert_allclose(pink, mono, rtol=1e-4, atol=1e-5)


def test_intensity_cache_reuses_state_and_redraws_noise():
    clear_intensity_cache()
    lab = _cell_labels(nz=8, n=32)
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    a = transmitted_intensity(lab, 1.5, angles, cache_key=("state", 1))
    assert transmitted_intensity(lab, 1.5, angles, cache_key=("state", 1)) is a
    assert not a.flags.writeable
    p1 = simulate_projections(lab, 1.5, angles, rng=1, cache_key=("state", 1))
    p2 = simulate_projections(lab, 1.5, angles, rng=2, cache_key=("state", 1))
    assert not np.array_equal(p1, p2)
    changed = lab.copy()
    changed[:, 10:14, 10:14] = Material.STEEL
    b = transmitted_intensity(changed, 1.5, angles, cache_key=("state", 2))
    assert not np.allclose(a, b)
    # without a key the contents decide
    c = transmitted_intensity(lab, 1.5, angles)
    d = transmitted_intensity(changed, 1.5, angles)
    assert np.array_equal(c, a) and np.array_equal(d, b)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
_LAB = np.ones((4, 8, 8), np.uint8)
_ANG = np.linspace(0, np.pi, 4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: simulate_scan(np.ones((8, 8), np.uint8), 1.0, _ANG), "3-D"),
        (lambda: simulate_scan(_LAB.astype(float), 1.0, _ANG), "integer"),
        (lambda: simulate_scan(_LAB * 9, 1.0, _ANG), "unknown material code 9"),
        (lambda: simulate_scan(_LAB, 1.0, []), "angles_rad is empty"),
        (lambda: simulate_scan(_LAB, 1.0, [0.0, np.nan]), "NaN"),
        (lambda: simulate_scan(_LAB, 0.0, _ANG), "voxel_size_um"),
        (lambda: simulate_scan(_LAB, -1.0, _ANG), "voxel_size_um"),
        (lambda: Beam(energy_keV=-25.0), "energy_keV"),
        (lambda: Beam(energy_keV=float("nan")), "energy_keV"),
        (lambda: Beam(sample_detector_distance_mm=0.0), "sample_detector_distance_mm"),
        (lambda: Beam(spectrum=([20.0, 22.0], [1.0])), "spectrum"),
        (lambda: simulate_scan(_LAB, 1.0, _ANG, detector=Detector(pixel_size_um=1.7)), "integer multiple"),
        (lambda: simulate_scan(_LAB, 1.0, _ANG, detector=Detector(bad_columns=(99,))), "bad_columns"),
        (lambda: Detector(photons_per_pixel=0), "photons_per_pixel"),
        (lambda: Detector(bad_pixel_fraction=1.5), "bad_pixel_fraction"),
        (lambda: material_optics(25.0, chemistry="nasicon"), "unknown chemistry"),
        (lambda: material_optics(0.0), "energy_keV"),
        (lambda: material_optics(25.0, {7: ("Li", 0.5)}), "unknown material code 7"),
        (lambda: path_lengths(_LAB, 1.0, _ANG, materials=[12]), "unknown material code"),
        (lambda: forward_project(np.full((2, 4, 4), np.nan), _ANG), "NaN"),
        (lambda: simulate_scan(_LAB, 1.0, _ANG, rng="seed"), "rng"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_truncated_field_of_view_sees_the_central_columns():
    lab = _cell_labels(nz=6, n=64)
    vol = (lab != Material.VACUUM).astype(np.float32)
    angles = np.linspace(np.pi, 0, 13)
    wide = forward_project(vol, angles, n_det=64, centre_px=32 + 3.3)
    narrow = forward_project(vol, angles, n_det=40, centre_px=20 + 3.3)  # narrower than the housing
    np.testing.assert_allclose(narrow, wide[:, :, 12:52], rtol=1e-5, atol=1e-4)
    assert narrow[:, :, [0, -1]].min() > 1.0  # the object extends beyond both edges
