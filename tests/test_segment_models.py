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
