"""Learned segmentation of the interface slabs: a compact 2.5-D U-Net (torch only).

The interface slabs (``SLAB_OUT`` layers on the electrode side and ``SLAB_IN``
inside the SE of each face, faces from the held :class:`Calibration`) are cut
into x-z slices; each slice and its two y-neighbours (3 channels, normalised
grey ``u`` of the calibration) go through a 3-level U-Net that predicts the
material code (``registry.Material``) of every pixel. The bottom slab is
flipped along z, so both faces look alike (electrode above, SE below).

No torchvision, timm or segmentation-models (see the issue): the network is
written here. Weights ship in ``unet_weights.pt`` (float16, about 80 KB) with
the versions, seeds, threads and data they were trained with (``meta``);
``sscell-live train-segmenter`` reproduces them (:func:`train`).

How the shipped weights were made (CPU, torch 2.13.0, numpy 2.4.6, python 3.11)::

    python -m sscell_live.segment._tune --cache runs/segcache     # column_model.json first: faces
    sscell-live train-segmenter --cache runs/segcache               # then the U-Net (defaults below)

Defaults: twin seeds 101-103 (LSPS 101-106) of the three presets, every
state of ``_twindata.METRIC_CHECKS`` (180 angles), width 8, 12 epochs, batch 32,
Adam lr 3e-3 with cosine decay, every 2nd y-slice (3744 slices of 24 x 96),
torch seed 0, one thread, deterministic algorithms: about 3 minutes on a
shared 2-core machine. The slabs are cut at the faces of the held
calibration, so a new ``column_model.json`` (face model) needs a retrain.
A retrain with the same settings gives bit-identical weights;
``benchmarks/segmentation.py`` checks the per-class IoU of a retrain against
the shipped weights on held-out seeds (target: within 0.02).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

__all__ = ["SLAB_IN", "SLAB_OUT", "WEIGHTS_PATH", "UNetSegmenter", "extract_slabs", "load_segmenter",
           "paste_slabs", "train"]

WEIGHTS_PATH = Path(__file__).with_name("unet_weights.pt")
#: Slab height: layers on the electrode side of a face and inside the SE.
SLAB_OUT = 20
SLAB_IN = 4
N_CLASSES = 6
#: Grey range fed to the network (normalised units: 0 Li/transparent, 1 SE).
U_CLIP = (-2.0, 4.0)


def _torch():
    import torch

    return torch


def build_unet(width: int = 8, in_ch: int = 3, n_classes: int = N_CLASSES):
    """A 3-level U-Net (conv-BN-ReLU pairs, max-pool down, transposed-conv up)."""
    torch = _torch()
    nn = torch.nn

    def block(a, b):
        return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                             nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.e1, self.e2, self.e3 = block(in_ch, w), block(w, 2 * w), block(2 * w, 4 * w)
            self.pool = nn.MaxPool2d(2)
            self.u2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
            self.d2 = block(4 * w, 2 * w)
            self.u1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
            self.d1 = block(2 * w, w)
            self.head = nn.Conv2d(w, n_classes, 1)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(self.pool(e1))
            e3 = self.e3(self.pool(e2))
            d2 = self.d2(torch.cat([self.u2(e3), e2], 1))
            d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
            return self.head(d1)

    return UNet()


def extract_slabs(u: np.ndarray, se_top: int, se_bottom: int) -> np.ndarray:
    """(2, H, y, x) slabs of a normalised volume, top then bottom (bottom flipped), H = SLAB_OUT + SLAB_IN.

    Rows outside the volume repeat the edge layer.
    """
    nz = u.shape[0]
    h = SLAB_OUT + SLAB_IN
    top = np.clip(np.arange(se_top - SLAB_OUT, se_top + SLAB_IN), 0, nz - 1)
    bot = np.clip(np.arange(se_bottom + SLAB_OUT - 1, se_bottom - SLAB_IN - 1, -1), 0, nz - 1)
    out = np.stack([u[top], u[bot]])
    assert out.shape[1] == h
    return out


def paste_slabs(labels: np.ndarray, slab_labels: np.ndarray, se_top: int, se_bottom: int,
                pellet: np.ndarray) -> np.ndarray:
    """Write (2, H, y, x) slab labels back into a label volume (pellet columns, inside the volume)."""
    nz = labels.shape[0]
    for k, zs in enumerate((np.arange(se_top - SLAB_OUT, se_top + SLAB_IN),
                            np.arange(se_bottom + SLAB_OUT - 1, se_bottom - SLAB_IN - 1, -1))):
        for i, z in enumerate(zs):
            if 0 <= z < nz:
                labels[z][pellet] = slab_labels[k, i][pellet]
    return labels


def _slices(slabs: np.ndarray) -> np.ndarray:
    """(n, 3, H, x) x-z slices with their y-neighbours from (2, H, y, x) slabs."""
    s = np.clip(slabs, *U_CLIP).astype(np.float32)
    ny = s.shape[2]
    idx = np.arange(ny)
    chans = [s[:, :, np.clip(idx + d, 0, ny - 1), :] for d in (-1, 0, 1)]  # (2, H, y, x) each
    x = np.stack(chans, axis=2)  # (2, H, 3, y, x)
    return x.transpose(0, 3, 2, 1, 4).reshape(-1, 3, s.shape[1], s.shape[3])


def _pad_to(x, m: int = 4):
    torch = _torch()
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate"), h, w


def fold_batchnorm(net):
    """An inference copy of ``net`` with every BatchNorm folded into the convolution before it.

    Conv-BN pairs become one convolution (w' = w g / sqrt(var + eps),
    b' = (b - mean) g / sqrt(var + eps) + beta): the same outputs to float
    rounding, one pass over the activations less per layer.
    """
    import copy

    torch = _torch()
    nn = torch.nn
    net = copy.deepcopy(net).eval()
    for mod in net.modules():
        if not isinstance(mod, nn.Sequential):
            continue
        items = list(mod._modules.items())
        for (_k1, conv), (k2, bn) in zip(items, items[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                with torch.no_grad():
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                mod._modules[k2] = nn.Identity()
    return net


class UNetSegmenter:
    """Shipped (or freshly trained) U-Net for the interface slabs.

    Inference runs a BatchNorm-folded copy of the network in channels-last
    memory format under ``torch.inference_mode`` (float32, no JIT/compile),
    in batches of 32 slices: 2.4-2.6 times the plain eager speed measured in
    the same run (``benchmarks/segmentation.py``). Threads are the caller's
    (``torch.set_num_threads``); on a busy 2-core machine one thread beat two.
    """

    def __init__(self, net, meta: dict):
        torch = _torch()
        self.net = net.eval()
        self.meta = meta
        self._fast = fold_batchnorm(self.net).to(memory_format=torch.channels_last)

    def predict_slabs(self, slabs: np.ndarray, batch: int = 32) -> np.ndarray:
        """(2, H, y, x) uint8 material codes of (2, H, y, x) normalised slabs.

        ``batch`` slices per forward pass: 32 slices of 24 x 512 keep the
        activations in cache (on a shared 2-core machine, one thread: 16
        slices of 512 x 512 per s at 32, 11-13 at 64, 9 at 256).
        """
        torch = _torch()
        x = _slices(slabs)
        out = np.empty((x.shape[0],) + x.shape[2:], np.uint8)
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch):
                xb, h, w = _pad_to(torch.from_numpy(x[i: i + batch]))
                xb = xb.contiguous(memory_format=torch.channels_last)
                out[i: i + batch] = self._fast(xb)[..., :h, :w].argmax(1).numpy().astype(np.uint8)
        ny = slabs.shape[2]
        return out.reshape(2, ny, slabs.shape[1], slabs.shape[3]).transpose(0, 2, 1, 3)

    def apply(self, calibration, volume, columns: str = "all") -> np.ndarray:
        """Classical labels with the interface slabs replaced by the U-Net's.

        ``columns``: ``"all"`` replaces the whole slabs (pellet, housing and
        air: the network is trained on all of them), ``"pellet"`` only the
        pellet columns.
        """
        from .classical import check_volume

        vol = check_volume(volume)
        labels = calibration.apply(vol)
        u = calibration.normalise(vol)
        lay = calibration.layout(u)
        ny, nx = u.shape[1:]
        if columns == "all":
            keep = np.ones((ny, nx), bool)
        elif columns == "pellet":
            from .columns import pellet_mask

            keep = pellet_mask((ny, nx), lay)
        else:
            raise ValueError(f"columns must be 'all' or 'pellet', got {columns!r}")
        pred = self.predict_slabs(extract_slabs(u, lay["se_top"], lay["se_bottom"]))
        return paste_slabs(labels, pred, lay["se_top"], lay["se_bottom"], keep)


def load_segmenter(path=WEIGHTS_PATH) -> UNetSegmenter:
    """The shipped U-Net (raises FileNotFoundError when no weights are shipped)."""
    torch = _torch()
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = build_unet(ck["meta"]["width"])
    net.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
    return UNetSegmenter(net, ck["meta"])


def _training_arrays(seeds, chemistries, cache, y_stride: int = 1):
    """(x, y) slices of the twin scans: held calibration per experiment, faces from it."""
    from ._tune import dataset
    from ._twindata import METRIC_CHECKS
    from .classical import Calibration

    xs, ys, cals, used = [], [], {}, set()
    # the states the classical pipeline is tuned on (LSPS also inside its first half cycles: thin interphases)
    for ch, seed, _name, vol, labels, _truth in dataset(seeds=seeds, chemistries=chemistries, cache=cache,
                                                        checks=METRIC_CHECKS):
        if (ch, seed) not in cals:
            cals[(ch, seed)] = Calibration.fit(vol, 1.5, preset=ch)
        cal = cals[(ch, seed)]
        u = cal.normalise(vol)
        lay = cal.layout(u)
        slabs = extract_slabs(u, lay["se_top"], lay["se_bottom"])
        lab = extract_slabs(labels, lay["se_top"], lay["se_bottom"])
        used.add(f"{ch}-s{seed}")
        xs.append(_slices(slabs)[::y_stride])
        ys.append(lab.transpose(0, 2, 1, 3).reshape(-1, lab.shape[1], lab.shape[3])[::y_stride].astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys), sorted(used)


def train(out: Path = WEIGHTS_PATH, seeds=(101, 102, 103), chemistries=("lps", "lsps", "llzo"), cache=None,
          epochs: int = 12, width: int = 8, seed: int = 0, threads: int = 1, batch: int = 32, y_stride: int = 2,
          lr: float = 3e-3, device: str | None = None, log=print) -> dict:
    """Train the slab U-Net on twin scans and save float16 weights with their provenance.

    Reproducible on CPU: fixed seed, fixed thread count (default one: on a
    shared 2-core machine two threads ran 7 times slower), deterministic
    algorithms, fixed batch order. Returns the ``meta`` stored with the weights.
    """
    torch = _torch()
    prev = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        return _train(out, seeds, chemistries, cache, epochs, width, seed, threads, batch, y_stride, lr, device, log)
    finally:  # the caller's settings (inference wants its own threads)
        torch.set_num_threads(prev[0])
        torch.use_deterministic_algorithms(prev[1])


def _train(out, seeds, chemistries, cache, epochs, width, seed, threads, batch, y_stride, lr, device, log) -> dict:
    torch = _torch()
    torch.manual_seed(seed)
    np.random.seed(seed)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    x, y, used = _training_arrays(seeds, chemistries, cache, y_stride)
    log(f"train-segmenter: {x.shape[0]} slices {x.shape[2]}x{x.shape[3]} from seeds {list(seeds)} "
        f"{list(chemistries)} ({time.perf_counter() - t0:.0f} s)")
    counts = np.bincount(y.ravel(), minlength=N_CLASSES).astype(np.float64)
    wts = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** 0.5, 0.0)
    wts = wts / wts[counts > 0].mean()
    net = build_unet(width).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    lossf = torch.nn.CrossEntropyLoss(weight=torch.tensor(wts, dtype=torch.float32, device=dev))
    X = torch.from_numpy(x)
    Y = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(X.shape[0], generator=gen)
        tot = 0.0
        for i in range(0, X.shape[0], batch):
            b = perm[i: i + batch]
            xb, h, w = _pad_to(X[b].to(dev))
            loss = lossf(net(xb)[..., :h, :w], Y[b].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        sched.step()
        log(f"  epoch {ep + 1}/{epochs} loss {tot / X.shape[0]:.4f} ({time.perf_counter() - t0:.0f} s)")
    import sscell_live

    meta = {
        "width": width, "slab_out": SLAB_OUT, "slab_in": SLAB_IN, "u_clip": list(U_CLIP),
        "seeds": list(seeds), "chemistries": list(chemistries), "experiments": used, "epochs": epochs, "batch": batch, "lr": lr, "y_stride": y_stride,
        "torch_seed": seed, "threads": int(threads), "device": dev,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                     "sscell_live": getattr(sscell_live, "__version__", "unknown")},
        "reconstruction": "sscell_live.recon, Paganin delta/beta 50, sorting ring removal, 180 angles",
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    net = net.cpu().eval()
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "meta": meta}, out)
    log(f"train-segmenter: wrote {out} ({Path(out).stat().st_size / 1024:.0f} KiB): {json.dumps(meta)}")
    return meta
