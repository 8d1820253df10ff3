"""Column network: void score, void height and interphase height of each pellet column at one SE face.

The linear column model (``classical.predict_columns``) reads one grey
profile per column. At the twin's resolution (Paganin low-pass of about 2.5
pixels) a 2-voxel void between Li and SE and a porous first SE layer both
show as one dip next to the face; which side of the face the dip sits on,
and how wide the dark patch is laterally, tell them apart. So the network
reads each column's profile across the face at two lateral smoothing scales
(``sigmas_um``: the column itself and its neighbourhood) and a small MLP
(two hidden ReLU layers) returns three numbers per column:

0. the void score (logit of "this column has an interfacial void"),
1. the void height (voxels),
2. the interphase height (voxels).

Models with ``radial_um`` also read where the column sits
(:func:`radial_features`): its distance to the rotation axis (the volume's
centre, where ring-removal residue concentrates) and to the pellet rim (the
Paganin halo of the SE/housing edge), both in um and clipped at
``radial_um``: the network learns these artefact zones instead of one
answer for all columns.

Models with ``face_norm`` rescale each face's profiles by that face's own
grey levels (:func:`face_normalise`): the median Li grey a few layers out and
the median SE grey a few layers in, over the pellet. LSPS voids sit between
Li and SE that read close to each other; their grey levels drift by face and
seed, and a network reading global levels carried the drift into the contact
fraction (check seeds 107-113: contact within 3 points on 75 of 84 faces
with it, 71 without). LPS and LLZO do not gain from it and read raw levels.

Inference is plain numpy (weights in ``column_model.json``); training
(:func:`fit_column_net`, torch, run by ``python -m sscell_live.segment._tune``)
is deterministic: fixed seed, one thread, fixed batch order.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["U_RANGE", "column_inputs", "column_net_outputs", "column_profiles", "face_normalise", "fit_column_net",
           "mlp_forward", "pellet_mask", "radial_features"]

#: Grey range fed to the network (normalised units: 0 Li/transparent, 1 SE); outliers are clipped.
U_RANGE = (-2.0, 4.0)


def column_profiles(u: np.ndarray, face: int, side: str, k_out: int, k_in: int, sigmas_vox) -> np.ndarray:
    """(y, x, len(sigmas) * (k_out + k_in)) profiles across one SE face, float32.

    For each lateral smoothing scale: ``k_out`` layers on the electrode side
    (nearest the face first), then ``k_in`` inside the SE. ``face`` is the
    first SE layer (top) or one past the last (bottom); layers outside the
    volume repeat the edge layer. Only the sampled layers are smoothed.
    """
    nz = u.shape[0]
    if side == "top":
        zs = [face - 1 - k for k in range(k_out)] + [face + k for k in range(k_in)]
    elif side == "bottom":
        zs = [face + k for k in range(k_out)] + [face - 1 - k for k in range(k_in)]
    else:
        raise ValueError(f"side must be 'top' or 'bottom', got {side!r}")
    stack = np.clip(u[np.clip(zs, 0, nz - 1)], *U_RANGE).astype(np.float32)
    parts = [ndimage.gaussian_filter(stack, (0.0, s, s)) if s > 0 else stack for s in sigmas_vox]
    return np.concatenate(parts, axis=0).transpose(1, 2, 0)


def radial_features(shape_yx, geometry: dict, voxel_size_um: float, clip_um: float) -> np.ndarray:
    """(y, x, 2) float32: distance to the rotation axis and to the pellet rim, in units of ``clip_um``.

    The rotation axis is the centre of the reconstructed slice; the pellet is
    the circle ``geometry["centre_y"], geometry["centre_x"], geometry["radius"]``
    (voxels). Distances are in um, clipped to ``0..clip_um`` and divided by it
    (so the network sees the same numbers at any voxel size and pellet size:
    columns further than ``clip_um`` from both look alike).
    """
    ny, nx = shape_yx
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    axis = np.hypot(yy - (ny - 1) / 2.0, xx - (nx - 1) / 2.0) * voxel_size_um
    rim = (geometry["radius"] - np.hypot(yy - geometry["centre_y"], xx - geometry["centre_x"])) * voxel_size_um
    f = np.stack([axis, rim], axis=-1)
    return (np.clip(f, 0.0, clip_um) / clip_um).astype(np.float32)


def pellet_mask(shape_yx, geometry: dict) -> np.ndarray:
    """(y, x) bool: columns inside the pellet circle ``geometry`` (``centre_y``, ``centre_x``, ``radius``, voxels)."""
    ny, nx = shape_yx
    yy, xx = np.mgrid[:ny, :nx]
    return np.hypot(yy - geometry["centre_y"], xx - geometry["centre_x"]) <= geometry["radius"]


def face_normalise(profiles: np.ndarray, pellet: np.ndarray, k_out: int, k_in: int) -> np.ndarray:
    """Profiles of one face rescaled so that its Li reads 0 and its SE reads 1, float32 (y, x, F).

    ``profiles`` from :func:`column_profiles` (blocks of ``k_out + k_in`` per
    smoothing scale). The levels come from the first block, over the pellet
    columns: Li is the median of the 4 layers furthest out on the electrode
    side, SE the median of the SE layers from the third inward (the first two
    hold the interphase and the face blur). A face whose SE does not read at
    least 0.25 above its Li (normalised units: no SE or no Li there) is
    returned unscaled rather than amplified.
    """
    sel = profiles[pellet] if pellet.any() else profiles.reshape(-1, profiles.shape[-1])
    li = float(np.median(sel[:, max(0, k_out - 4): k_out]))
    se = float(np.median(sel[:, k_out + min(2, k_in - 1): k_out + k_in]))
    if not (np.isfinite(li) and np.isfinite(se) and se - li >= 0.25):
        return profiles
    return ((profiles - li) / (se - li)).astype(np.float32)


def column_inputs(model: dict, u: np.ndarray, face: int, side: str, voxel_size_um: float,
                  geometry: dict | None = None) -> np.ndarray:
    """(y, x, F) network inputs of one face: profiles (:func:`column_profiles`), then radial features.

    ``model``: ``sigmas_um``, ``k_out``, ``k_in`` and optionally ``radial_um``
    and ``face_norm`` (then ``geometry``, the pellet circle in voxels, is needed).
    """
    sig = [s / voxel_size_um for s in model["sigmas_um"]]
    f = column_profiles(u, face, side, model["k_out"], model["k_in"], sig)
    if (model.get("radial_um") or model.get("face_norm")) and geometry is None:
        raise ValueError("this column model reads the pellet (radial position or face levels): pass its geometry")
    if model.get("face_norm"):
        f = face_normalise(f, pellet_mask(u.shape[1:], geometry), model["k_out"], model["k_in"])
    if model.get("radial_um"):
        f = np.concatenate([f, radial_features(u.shape[1:], geometry, voxel_size_um, float(model["radial_um"]))],
                           axis=-1)
    return f


def mlp_forward(params: dict, x: np.ndarray) -> np.ndarray:
    """Outputs (..., 3) of the column MLP for features (..., F)."""
    h = x.reshape(-1, x.shape[-1]).astype(np.float32, copy=False)
    n = len(params["layers"])
    for i, (w, b) in enumerate(params["layers"]):
        h = h @ np.asarray(w, np.float32) + np.asarray(b, np.float32)
        if i < n - 1:
            np.maximum(h, 0.0, out=h)
    return h.reshape(x.shape[:-1] + (h.shape[-1],))


def column_net_outputs(model: dict, u: np.ndarray, face: int, side: str, voxel_size_um: float,
                       geometry: dict | None = None):
    """(void score, void height, interphase height) maps (y, x) of one face.

    ``geometry``: pellet circle (``centre_y``, ``centre_x``, ``radius``, voxels), needed by models
    with radial inputs (``radial_um``).
    """
    o = mlp_forward(model["net"], column_inputs(model, u, face, side, voxel_size_um, geometry))
    return o[..., 0], o[..., 1], o[..., 2]


def fit_column_net(feature_maps, void_maps, inter_maps, contact_maps, pellets, *, hidden: int = 32,
                   epochs: int = 20, batch: int = 512, lr: float = 3e-3, seed: int = 0,
                   height_weight: float = 0.2) -> dict:
    """Train the column MLP; returns ``{"layers": [[W, b], ...]}`` (lists, JSON-ready).

    Each list holds one map per (scan, side): features (y, x, F) from
    :func:`column_profiles`, void and interphase heights (y, x) in voxels,
    contact (y, x) bool and pellet (y, x) bool (columns used). Loss: logistic
    on "has a void" plus ``height_weight`` times smooth-L1 on both heights.
    Deterministic on CPU: one thread, fixed seed and batch order.
    """
    import torch

    torch.manual_seed(seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny net: one thread is fastest and reproducible on a shared machine
    try:
        X = np.concatenate([f[p] for f, p in zip(feature_maps, pellets)]).astype(np.float32)
        y = np.stack([np.concatenate([~c[p] for c, p in zip(contact_maps, pellets)]).astype(np.float32),
                      np.concatenate([h[p] for h, p in zip(void_maps, pellets)]).astype(np.float32),
                      np.concatenate([h[p] for h, p in zip(inter_maps, pellets)]).astype(np.float32)], axis=1)
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(y)
        nn = torch.nn
        net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, 3))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        f = torch.nn.functional
        for _ in range(epochs):
            perm = torch.randperm(len(Xt), generator=gen)
            for i in range(0, len(Xt), batch):
                b = perm[i: i + batch]
                o = net(Xt[b])
                loss = (f.binary_cross_entropy_with_logits(o[:, 0], Yt[b, 0])
                        + height_weight * f.smooth_l1_loss(o[:, 1], Yt[b, 1])
                        + height_weight * f.smooth_l1_loss(o[:, 2], Yt[b, 2]))
                opt.zero_grad()
                loss.backward()
                opt.step()
        layers = [m for m in net if isinstance(m, nn.Linear)]
        return {"layers": [[m.weight.detach().numpy().T.tolist(), m.bias.detach().numpy().tolist()] for m in layers]}
    finally:
        torch.set_num_threads(prev_threads)
