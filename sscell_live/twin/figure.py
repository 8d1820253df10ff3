"""Render the README picture: twin slices before and after cycling.

    python -m sscell_live.twin.figure docs/twin_before_after.png

Needs matplotlib (``pip install -e ".[docs]"``). Top row: vertical (x-z)
slices of the semantic truth of an ``lps`` cell (cracks, Li filament) and an
``lsps`` cell (interfacial voids, interphase), pristine and after cycling to
failure; bottom row: the corresponding reconstructed-looking view is left to
the reconstruction issue.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..registry import Semantic
from .cell import CellTwin
from .geometry import mini

# one colour per semantic class (dark = Li/voids as in a tomogram is not the goal
# here: the picture shows the *truth* the metrics are checked against)
_COLOURS = {
    Semantic.BACKGROUND: "#ffffff",
    Semantic.HOUSING: "#d9d2c5",
    Semantic.STEEL_TOP: "#6b6b6b",
    Semantic.STEEL_BOTTOM: "#6b6b6b",
    Semantic.LI_TOP: "#9ecae1",
    Semantic.LI_BOTTOM: "#9ecae1",
    Semantic.SE: "#fdd49e",
    Semantic.SE_PORE: "#fc8d59",
    Semantic.VOID_TOP: "#000000",
    Semantic.VOID_BOTTOM: "#000000",
    Semantic.INTERPHASE_TOP: "#78c679",
    Semantic.INTERPHASE_BOTTOM: "#78c679",
    Semantic.CRACK: "#d7301f",
    Semantic.LI_IN_CRACK: "#08519c",
    Semantic.LI_IN_PORE: "#08519c",
}


def _rgb(semantic_slice: np.ndarray) -> np.ndarray:
    from matplotlib.colors import to_rgb

    lut = np.ones((256, 3))
    for code, colour in _COLOURS.items():
        lut[int(code)] = to_rgb(colour)
    return lut[semantic_slice]


def _cycle_to_failure(twin: CellTwin, j: float, half_s: float, cutoff: float, max_half: int) -> None:
    for half in range(max_half):
        twin.run(j if half % 2 == 0 else -j, half_s, cutoff_V=cutoff, sample_period_s=300.0)
        if twin.failed:
            return


def _crack_slice(twin: CellTwin) -> int:
    """y index of the slice through the most Li-filled crack (or the centre)."""
    cracks = sorted(twin.state.cracks, key=lambda c: c.li_depth_um + c.li_far_um, reverse=True)
    n = twin.geometry.n_lateral
    if not cracks:
        return n // 2
    return int(round(cracks[0].y_um / twin.geometry.voxel_size_um + n / 2))


def render(path: str | Path, n_lateral: int = 96) -> Path:
    """Write the before/after figure to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lps = CellTwin.create("lps", mini(n_lateral), seed=3)
    lps_before = lps.semantic().copy()
    _cycle_to_failure(lps, 0.15, 1800.0, 10.0, 60)
    lsps = CellTwin.create("lsps", mini(n_lateral), seed=1)
    lsps_before = lsps.semantic().copy()
    _cycle_to_failure(lsps, 1.0, 5 * 3600.0, 4.0, 6)

    y_lps = _crack_slice(lps)
    y_lsps = n_lateral // 2
    panels = [
        (lps_before[:, y_lps, :], "lps, pristine"),
        (lps.semantic()[:, y_lps, :], f"lps, shorted after {lps.time_s / 3600:.1f} h (Li-filled crack)"),
        (lsps_before[:, y_lsps, :], "lsps, pristine (25 % contact)"),
        (lsps.semantic()[:, y_lsps, :], f"lsps, runaway after {lsps.time_s / 3600:.1f} h (voids, interphase)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), constrained_layout=True)
    v = lps.geometry.voxel_size_um
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(_rgb(img), extent=(0, img.shape[1] * v, img.shape[0] * v, 0), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (um)")
    axes[0].set_ylabel("z (um), cell axis")
    legend = [
        Patch(color=_COLOURS[Semantic.STEEL_TOP], label="steel"),
        Patch(color=_COLOURS[Semantic.LI_TOP], label="Li"),
        Patch(color=_COLOURS[Semantic.SE], label="SE"),
        Patch(color=_COLOURS[Semantic.SE_PORE], label="SE pore"),
        Patch(color=_COLOURS[Semantic.VOID_TOP], label="interfacial void"),
        Patch(color=_COLOURS[Semantic.INTERPHASE_TOP], label="interphase"),
        Patch(color=_COLOURS[Semantic.CRACK], label="crack"),
        Patch(color=_COLOURS[Semantic.LI_IN_CRACK], label="Li in crack/pore"),
        Patch(color=_COLOURS[Semantic.HOUSING], label="housing"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=9, fontsize=8, bbox_to_anchor=(0.5, -0.08))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Render the twin's before/after slices (README picture).")
    parser.add_argument("path", nargs="?", default="docs/twin_before_after.png")
    args = parser.parse_args(argv)
    print(render(args.path))


if __name__ == "__main__":
    main()
