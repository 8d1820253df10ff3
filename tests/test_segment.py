"""Classical segmentation of reconstructed twin scans, and the ``analyze`` CLI.

The face model, column network and thresholds were tuned on seeds 101-109 (LSPS 101-106)
(``python -m sscell_live.segment._tune``); these tests use seeds 7 and 8.
"""

import json

import numpy as np
import pytest

from sscell_live.metrics import measure
from sscell_live.registry import Material
from sscell_live.segment import Calibration, SegmentationError, segment
from sscell_live.segment._twindata import scan_and_reconstruct, twin_states

VOX = 1.5


@pytest.fixture(scope="module")
def lsps_series():
    """Pristine and one cycled state of an LSPS cell (held-out seed), grey volumes and truth."""
    out = []
    for name, twin in twin_states("lsps", 7, checks=(0, 1)):
        out.append((name, scan_and_reconstruct(twin), twin.labels(), twin.truth()))
    return out


def test_segment_returns_material_codes_and_holds_calibration(lsps_series):
    cal = Calibration.fit(lsps_series[0][1], VOX, preset="lsps")
    cal2 = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    for name, vol, labels, truth in lsps_series:
        pred = cal2.apply(vol)
        assert pred.dtype == np.uint8 and pred.shape == vol.shape
        assert set(np.unique(pred)) <= {0, 1, 2, 3, 4, 5}
        m = measure(pred, VOX)
        for side in ("top", "bottom"):
            # Target: 3 points. Measured (face model, column network): here +2.7/+2.2 points top, -1.7/-4.0
            # bottom; on held-out seeds 1-3 (30 states, 3 presets) 55 of 60 faces within 3 points, the worst
            # 5.4. The bound keeps a margin for a changed reconstruction.
            assert abs(m[f"contact_fraction_{side}"] - truth[f"contact_fraction_{side}"]) < 0.05, (name, side)
            tv = truth[f"void_volume_{side}_um3"]
            # Target 15 %: measured -6 to +3 % here (LSPS voids are 4-6 voxels high, above the detection limit).
            assert abs(m[f"void_volume_{side}_um3"] - tv) < 0.1 * tv, (name, side)
        # the pellet is rigid: faces found on the reference scan (face model) and tracked hit the true ones
        assert m["se_thickness_um"] == pytest.approx(truth["se_thickness_um"], abs=0.5 * VOX)
        for side in ("top", "bottom"):
            key = f"interface_position_{side}_um"
            assert m[key] == pytest.approx(measure(labels, VOX)[key], abs=0.5 * VOX), (name, side)
        # no false cracks from blur-bridged sub-surface pores (pristine and first-cycle LSPS have none)
        assert truth["crack_volume_um3"] == 0 and m["crack_volume_um3"] == 0, name
        # the same levels every scan: the held calibration did not change
        assert cal2.low == cal.low and cal2.se == cal.se


def test_segment_matches_held_calibration(lsps_series):
    vol = lsps_series[0][1]
    a = segment(vol, VOX, preset="lsps")
    b = Calibration.fit(vol, VOX, preset="lsps").apply(vol)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("bad,err", [
    (np.zeros((20, 16, 16), np.float32), SegmentationError),
    (np.ones((20, 16, 16), bool), TypeError),
    (np.zeros((16, 16), np.float32), ValueError),
    (np.full((20, 16, 16), np.nan, np.float32), ValueError),
])
def test_degenerate_inputs_give_clear_errors(bad, err):
    with pytest.raises(err):
        segment(bad, VOX)


def test_zero_voxel_size(lsps_series):
    with pytest.raises(ValueError, match="voxel_size_um"):
        segment(lsps_series[0][1], 0)


def test_analyze_cli_npy_h5_tiff(tmp_path, lsps_series, capsys):
    import argparse

    import h5py
    import tifffile

    from sscell_live.segment import cli

    _name, vol, labels, truth = lsps_series[0]
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    cli.register(sub)
    np.save(tmp_path / "g.npy", vol)
    with h5py.File(tmp_path / "g.h5", "w") as fh:
        fh["exchange/recon"] = vol
    tifffile.imwrite(tmp_path / "l.tif", labels)
    results = []
    for argv in (["analyze", str(tmp_path / "g.npy"), "--voxel-size-um", "1.5", "--json", "--preset", "lsps"],
                 ["analyze", str(tmp_path / "g.h5"), "--voxel-size-um", "1.5", "--json", "--dataset", "exchange/recon"],
                 ["analyze", str(tmp_path / "l.tif"), "--voxel-size-um", "1.5", "--labels", "--json"]):
        args = ap.parse_args(argv)
        assert args.func(args) == 0
        results.append(json.loads(capsys.readouterr().out))
    # grey volumes carry the segmentation's detection limits in the notes, label volumes do not
    assert any("transparent" in n for n in results[0]["notes"])
    assert not any(n.startswith("segmentation:") for n in (results[2]["notes"] or []))
    assert results[2]["contact_fraction_top"] == pytest.approx(truth["contact_fraction_top"], abs=0.005)
    assert 0 <= results[0]["contact_fraction_top"] <= 1
    # clear errors
    for argv in (["analyze", str(tmp_path / "missing.npy"), "--voxel-size-um", "1.5"],
                 ["analyze", str(tmp_path / "g.npy"), "--voxel-size-um", "0"],
                 ["analyze", str(tmp_path / "g.npy"), "--voxel-size-um", "1.5", "--labels"]):
        args = ap.parse_args(argv)
        assert args.func(args) == 2
        assert "error" in capsys.readouterr().err


def test_shallow_pore_chains_are_not_cracks_but_deep_channels_are():
    """Blur-bridged pore chains near a face are cut (no crack); a channel spanning the SE is kept."""
    from sscell_live.metrics.cracks import crack_mask
    from sscell_live.segment.classical import split_shallow_bridges

    nz = 60
    tr = np.zeros((nz, 20, 20), bool)
    u = np.ones((nz, 20, 20), np.float32)
    tr[0:14, 3:5, 3:5] = True  # a 14-voxel run from the top face: 21 um < 36 um
    u[0:14, 3:5, 3:5] = -1.0
    u[7, 3:5, 3:5] = -0.2  # its faintest layer (the bridge)
    tr[:, 12:14, 12:15] = True  # a crack through the whole pellet
    out = split_shallow_bridges(tr, u, VOX)
    assert not out[7, 3:5, 3:5].any() and out[0:7, 3:5, 3:5].all()
    cm = crack_mask(out, VOX)
    assert not cm[:, 3:5, 3:5].any() and cm[:, 12:14, 12:15].all()


def test_a_dark_housing_sleeve_is_not_a_crack_ring():
    """A pellet in a sleeve that reads darker than the transparency level (0.16 of the SE grey, a polymer
    housing): the pellet circle drawn wide for the Paganin halo takes in the sleeve's first voxels, which
    once made a ring of vacuum through the whole SE, a crack spanning the pellet (1600-2200 um3 here).
    A real crack through the SE is still found."""
    n = 96
    rng = np.random.default_rng(0)
    vol = np.zeros((n, n, n), np.float32)
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    disk, sleeve = r < 0.4 * n, (r >= 0.4 * n) & (r < 0.47 * n)
    vol[:, sleeve] = 2e-4
    for a, b, level in ((0, 10, 1.2e-2), (10, 34, 5e-5), (34, 62, 1e-3), (62, 86, 5e-5), (86, n, 1.2e-2)):
        vol[a:b, disk] = level  # steel | Li | SE | Li | steel
    vol += rng.normal(0, 1e-4, vol.shape).astype(np.float32)
    labels = segment(vol, VOX)
    m = measure(labels, VOX)
    assert m["crack_volume_um3"] == 0.0 and not m["crack_spans_pellet"]
    # the sleeve columns are housing, not SE (they were SE: 2016 voxels outside the pellet)
    assert not (labels[34:62][:, ~disk] == Material.SE).any()
    assert (labels[40:56][:, sleeve] == Material.HOUSING).mean() > 0.9
    vol[34:62, 46:49, 30:60] = 0.0  # a 3-voxel-wide crack through the SE, away from the rim
    m = measure(segment(vol, VOX), VOX)
    assert m["crack_spans_pellet"] and m["crack_volume_um3"] >= 0.8 * 28 * 3 * 30 * VOX**3


def test_li_filaments_rule_on_a_synthetic_garnet():
    """A 3x3 dark channel from a face is a Li filament; a round pore and a short dent are not."""
    from sscell_live.segment.classical import li_filaments

    rng = np.random.default_rng(0)
    u = (1.0 + 0.05 * rng.standard_normal((60, 40, 40))).astype(np.float32)
    u[0:30, 10:13, 10:13] = 0.1  # filament, 45 um from the top face
    u[30:33, 28:31, 28:31] = 0.0  # pore in the bulk
    u[54:60, 25:28, 10:13] = 0.1  # 9 um dent at the bottom face: shorter than the window
    pellet = np.ones((40, 40), bool)
    fil = li_filaments(u, pellet, VOX, 0.5)
    assert fil[2:28, 11, 11].all()
    assert not fil[:, 28:31, 28:31].any() and not fil[:, 25:28, 10:13].any()


@pytest.fixture(scope="module")
def lsps_heldout():
    """A pristine LSPS scan of another cell (seed 8): the tiny U-Net's held-out set."""
    (name, twin), = list(twin_states("lsps", 8, checks=(0,)))
    return scan_and_reconstruct(twin), twin.labels()


def _slab_iou(seg, vol, labels):
    from sscell_live.segment.unet import extract_slabs

    cal = Calibration.fit(vol, VOX, preset="lsps")
    u = cal.normalise(vol)
    lay = cal.layout(u)
    pred = seg.predict_slabs(extract_slabs(u, lay["se_top"], lay["se_bottom"]))
    true = extract_slabs(labels, lay["se_top"], lay["se_bottom"])
    return {c: float(((pred == c) & (true == c)).sum() / max(((pred == c) | (true == c)).sum(), 1)) for c in range(6)}


def test_unet_slabs_roundtrip_and_tiny_training_is_reproducible_and_learns(tmp_path, lsps_series, lsps_heldout):
    """Slab cut/paste are inverse; ``train-segmenter`` in CI size twice gives identical weights with
    provenance, and they segment a held-out cell's slabs (IoU above 0.8 where an untrained net is far below)."""
    import argparse
    import pickle

    torch = pytest.importorskip("torch")
    from sscell_live.segment import cli
    from sscell_live.segment.unet import UNetSegmenter, build_unet, extract_slabs, load_segmenter, paste_slabs

    _name, vol, labels, _truth = lsps_series[0]
    slabs = extract_slabs(labels, 60, 120)
    pellet = np.ones(labels.shape[1:], bool)
    back = paste_slabs(np.zeros_like(labels), slabs, 60, 120, pellet)
    assert np.array_equal(back[40:64], labels[40:64]) and np.array_equal(back[116:140], labels[116:140])
    # a cache of two states (the dataset reader's format); the CI recipe (cli.CI_RECIPE) on them
    for k, (_n, v, lab, _t) in enumerate(lsps_series):
        np.savez(tmp_path / f"lsps-s7-h{k}.npz", V=v, L=lab)
        with open(tmp_path / f"lsps-s7-h{k}.truth.pkl", "wb") as fh:
            pickle.dump({}, fh)
    ap = argparse.ArgumentParser()
    cli.register(ap.add_subparsers())
    for i in range(2):
        args = ap.parse_args(["train-segmenter", "--ci", "--seeds", "7", "--chemistry", "lsps",
                              "--cache", str(tmp_path), "--out", str(tmp_path / f"w{i}.pt")])
        assert args.func(args) == 0
    a = torch.load(tmp_path / "w0.pt", weights_only=False)
    b = torch.load(tmp_path / "w1.pt", weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    meta = a["meta"]
    assert meta["versions"]["torch"] == torch.__version__ and meta["experiments"] == ["lsps-s7"]
    assert meta["threads"] == 1 and meta["epochs"] == cli.CI_RECIPE["epochs"]
    seg = load_segmenter(tmp_path / "w0.pt")
    # it learns: held-out cell, classes of a pristine slab (vacuum incl. voids and air, Li, SE, housing);
    # measured 0.90-0.94 (an untrained network: under 0.5)
    iou = _slab_iou(seg, *lsps_heldout)
    for c in (0, 1, 2, 5):
        assert iou[c] > 0.8, (c, iou)
    torch.manual_seed(0)
    untrained = _slab_iou(UNetSegmenter(build_unet(8), {}), *lsps_heldout)
    assert np.mean([untrained[c] for c in (0, 1, 2, 5)]) < 0.5
    cal = Calibration.fit(vol, VOX, preset="lsps")
    pred = seg.apply(cal, vol)
    assert pred.dtype == np.uint8 and pred.shape == vol.shape and set(np.unique(pred)) <= {0, 1, 2, 3, 4, 5}


def test_shipped_unet_weights_are_small_and_documented():
    from sscell_live.segment.unet import WEIGHTS_PATH, load_segmenter

    pytest.importorskip("torch")
    if not WEIGHTS_PATH.exists():
        pytest.skip("no U-Net weights shipped")
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    meta = load_segmenter().meta
    for key in ("seeds", "experiments", "epochs", "torch_seed", "threads", "versions"):
        assert key in meta
    assert not {"s1", "s2", "s3", "s7", "s8"} & {e.rsplit("-", 1)[1] for e in meta["experiments"]}  # held-out seeds
