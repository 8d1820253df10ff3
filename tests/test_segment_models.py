"""The learned parts of the classical pipeline on synthetic data: face model and column network.

Fast (no twin): each checks an answer a wrong implementation would miss (the
sign of the face correction, the network learning a known rule, determinism).
"""

import numpy as np
import pytest
from scipy import ndimage

from sscell_live.segment.classical import FACE_SIGMA_VOX, Calibration, fit_face_model


def _sample(u, detected, true, side, pellet):
    """A face-model training sample: laterally smoothed grey as at run time, detected and true face."""
    return ndimage.gaussian_filter(u, (0.0, FACE_SIGMA_VOX, FACE_SIGMA_VOX)), detected, true, side, pellet


def _blurred_cell(face_top, face_bottom, nz=60, n=24, seed=0, se_near_face=1.0):
    """Normalised grey volume: electrode 0 | SE 1 | electrode 0, blurred along z like the Paganin low-pass."""
    rng = np.random.default_rng(seed)
    u = np.zeros((nz, n, n), np.float32)
    u[face_top:face_bottom] = 1.0
    # a denser or more porous first SE layers (what moves a half-way crossing from cell to cell)
    u[face_top: face_top + 3] = se_near_face
    u[face_bottom - 3: face_bottom] = se_near_face
    u = ndimage.gaussian_filter1d(u, 1.6, axis=0)
    return (u + 0.03 * rng.standard_normal(u.shape)).astype(np.float32)


def test_face_model_corrects_threshold_faces_with_the_right_sign():
    """Trained on cells whose detected faces are off by -1..+1, it moves a face detected one voxel too
    deep (top) or too shallow (bottom) back onto the true face."""
    pellet = np.ones((24, 24), bool)
    samples = {"top": [], "bottom": []}
    for k, (err, near) in enumerate([(-1, 0.8), (0, 1.0), (1, 1.2), (1, 0.8), (-1, 1.2), (0, 0.9)]):
        u = _blurred_cell(20, 40, seed=k, se_near_face=near)
        samples["top"].append(_sample(u, 20 + err, 20, "top", pellet))
        samples["bottom"].append(_sample(u, 40 - err, 40, "bottom", pellet))
    model = {side: {"face": fit_face_model(samples[side])} for side in ("top", "bottom")}
    cal = Calibration(voxel_size_um=1.5, low=0.0, se=1.0, steel=None, housing_u=0.0, model=model)
    u = _blurred_cell(22, 44, seed=99, se_near_face=1.1)
    lay = {"se_top": 23, "se_bottom": 42, "centre_y": 11.5, "centre_x": 11.5, "radius": 30.0}
    shift = cal.face_shift(u, lay)
    # offsets count into the SE: the true top face is 1 voxel out (-1), the true bottom 2 voxels out (-2)
    assert shift == {"top": -1, "bottom": -2}
    assert Calibration(voxel_size_um=1.5, low=0.0, se=1.0, steel=None, housing_u=0.0).face_shift(u, lay) == \
        {"top": 0, "bottom": 0}


def test_column_net_learns_a_rule_and_is_deterministic():
    """A void when the sample next to the face is dark, of a height set by the next sample: the network
    learns both; two fits give identical weights; numpy inference follows the training network."""
    pytest.importorskip("torch")
    from sscell_live.segment.classical import fit_contact_decision
    from sscell_live.segment.columns import column_net_outputs, column_profiles, fit_column_net, mlp_forward

    rng = np.random.default_rng(1)
    feats, hv, hi, cm, pel = [], [], [], [], []
    for _ in range(3):
        f = rng.uniform(0, 1, (40, 40, 6)).astype(np.float32)
        void = f[..., 0] < 0.3
        feats.append(f)
        hv.append(np.where(void, 1.0 + 4.0 * f[..., 1], 0.0).astype(np.float32))
        hi.append(np.zeros((40, 40), np.float32))
        cm.append(~void)
        pel.append(np.ones((40, 40), bool))
    kw = {"hidden": 16, "epochs": 20, "batch": 64, "seed": 3, "height_weight": 1.0}
    a = fit_column_net(feats, hv, hi, cm, pel, **kw)
    b = fit_column_net(feats, hv, hi, cm, pel, **kw)
    assert a == b
    test = rng.uniform(0, 1, (30, 30, 6)).astype(np.float32)
    out = mlp_forward(a, test)
    void = test[..., 0] < 0.3
    score = out[..., 0]
    assert np.mean((score > 0) == void) > 0.95
    h = 1.0 + 4.0 * test[..., 1]
    assert np.corrcoef(out[..., 1][void], h[void])[0, 1] > 0.9
    # the decision fitted on the training maps is unbiased: contact fraction and void volume
    dec = fit_contact_decision([mlp_forward(a, f)[..., 0] for f in feats], [mlp_forward(a, f)[..., 1] for f in feats],
                               hv, cm, pel, 1.5, sigmas_um=(0.0,))
    assert abs(np.mean(score < dec["contact_score"]) - np.mean(~void)) < 0.03
    assert 0.8 < dec["void_gain"] < 1.25
    # profiles: electrode side nearest the face first, then the SE, per smoothing scale
    u = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32) / 10
    p = column_profiles(u, 8, "top", 3, 2, [0.0])
    assert np.allclose(p[0, 0], [0.7, 0.6, 0.5, 0.8, 0.9])
    p = column_profiles(u, 12, "bottom", 3, 2, [0.0, 1.0])
    assert p.shape == (4, 4, 10) and np.allclose(p[0, 0, :5], [1.2, 1.3, 1.4, 1.1, 1.0])
    model = {"net": a, "sigmas_um": [0.0], "k_out": 3, "k_in": 3}
    s, hv_map, hi_map = column_net_outputs(model, u, 8, "top", 1.5)
    assert s.shape == hv_map.shape == hi_map.shape == (4, 4)


def test_radial_features_are_distances_to_axis_and_rim_in_um():
    """Axis distance from the slice centre, rim distance from the pellet circle, both um / clip, clipped."""
    from sscell_live.segment.columns import column_inputs, radial_features

    geom = {"centre_y": 10.0, "centre_x": 12.0, "radius": 8.0}
    f = radial_features((21, 21), geom, 1.5, 6.0)
    assert f.shape == (21, 21, 2) and f.dtype == np.float32
    # (10, 10) is the slice centre: axis distance 0; 2 voxels (3 um) from the pellet centre: rim 6 voxels = 9 um
    assert f[10, 10, 0] == 0.0 and f[10, 10, 1] == 1.0
    # (10, 11): 1 voxel from the axis (1.5 um / 6 um); (10, 19): 7 voxels from the pellet centre, rim 1.5 um
    assert np.isclose(f[10, 11, 0], 0.25) and np.isclose(f[10, 19, 1], 0.25)
    assert f[0, 0, 1] == 0.0 and f[0, 0, 0] == 1.0  # outside the pellet: rim 0; far from the axis: clipped
    u = np.zeros((20, 21, 21), np.float32)
    spec = {"sigmas_um": [0.0], "k_out": 3, "k_in": 2, "radial_um": 6.0}
    x = column_inputs(spec, u, 8, "top", 1.5, geom)
    assert x.shape == (21, 21, 7) and np.array_equal(x[..., 5:], f)
    with pytest.raises(ValueError, match="geometry"):
        column_inputs(spec, u, 8, "top", 1.5)



def test_face_normalise_maps_the_face_li_to_0_and_its_se_to_1():
    """A face whose Li reads 0.3 and SE 0.8 (a contrast drift) is rescaled to 0 and 1 from its own
    pellet columns (outside columns at another level do not move the levels); a face without SE
    contrast is left as it is; the model flag needs the pellet geometry."""
    from sscell_live.segment.columns import column_inputs, face_normalise

    k_out, k_in = 6, 5
    ny = nx = 21
    geom = {"centre_y": 10.0, "centre_x": 10.0, "radius": 7.0}
    yy, xx = np.mgrid[:ny, :nx]
    pellet = np.hypot(yy - 10.0, xx - 10.0) <= 7.0
    u = np.full((30, ny, nx), 0.3, np.float32)  # Li above the face (top side)
    u[12:] = 0.8  # SE from layer 12
    u[11] = 0.1  # a dark layer at the face (void / interphase): must not set the Li level
    u[:, ~pellet] = 5.0  # housing outside the pellet
    spec = {"sigmas_um": [0.0], "k_out": k_out, "k_in": k_in, "face_norm": True}
    x = column_inputs(spec, u, 12, "top", 1.5, geom)
    # electrode side nearest the face first: layer 11 (0.1), then Li; then SE layers
    assert np.allclose(x[pellet][:, 0], (0.1 - 0.3) / 0.5)
    assert np.allclose(x[pellet][:, 1:k_out], 0.0) and np.allclose(x[pellet][:, k_out:], 1.0)
    flat = np.full((ny, nx, k_out + k_in), 0.5, np.float32)
    assert face_normalise(flat, pellet, k_out, k_in) is flat
    with pytest.raises(ValueError, match="geometry"):
        column_inputs(spec, u, 12, "top", 1.5)

def test_filament_tips_extend_a_filament_by_its_one_voxel_tail_only():
    """A 3x3 filament from the top face tapers to a 1-voxel tail (grey 0.5) down to layer 50: the tips
    follow the tail to its end, one voxel per layer; an unconnected 1-voxel line and SE noise are not added."""
    from sscell_live.segment.classical import li_filaments

    rng = np.random.default_rng(2)
    u = (1.0 + 0.03 * rng.standard_normal((60, 30, 30))).astype(np.float32)
    u[0:25, 10:13, 10:13] = 0.1
    u[25:50, 11, 11] = 0.5  # the tail: under 2 voxels across, averaged away by the filament window
    u[5:55, 20, 20] = 0.5  # a dark line that touches no filament
    pellet = np.ones((30, 30), bool)
    base = li_filaments(u, pellet, 1.5, 0.5)
    assert not base[30:, 11, 11].any()  # without tips the tail is missed
    fil = li_filaments(u, pellet, 1.5, 0.5, tip_level=0.8)
    assert fil[25:50, 11, 11].all() and not fil[51:].any()
    assert fil[30:50].sum() == 20  # one voxel per tail layer
    assert not fil[:, 20, 20].any()
    assert np.array_equal(fil[:25], base[:25])


def test_face_model_level_is_unbiased_on_the_unjittered_reference_windows():
    """The jittered windows set the slope; the level is then set so that the scan offsets of the
    training references (mean over columns, as ``face_shift`` applies them) average to the true ones
    (unshifted, the twin LPS references read 0.15 voxel short and a -2 offset rounded to -1)."""
    from sscell_live.segment.classical import _face_expand, face_features

    pellet = np.ones((24, 24), bool)
    samples = []
    for k, near in enumerate([0.7, 0.8, 0.9, 1.3]):  # every reference detected one voxel too deep (top)
        samples.append(_sample(_blurred_cell(20, 40, seed=k, se_near_face=near), 21, 20, "top", pellet))
    w = np.asarray(fit_face_model(samples))
    offsets = [float(np.mean(_face_expand(face_features(us, face, "top", p)) @ w)) for us, face, _t, _s, p in samples]
    assert abs(np.mean(offsets) - (-1.0)) < 1e-9
