"""Command line: ``sscell-live demo`` (and, as the project grows, replay/analyze).

``sscell-live demo`` simulates a short operando experiment on the digital
twin: galvanostatic half cycles with a tomography scan after each, prints a
line per scan with what the twin did (voltage, contact, voids, cracks), and
stores everything in one HDF5 file (voltage record, per-scan truth, label
volumes of the first and last scans, and the projections of the last scan).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "run_demo"]

_DEMO_PROTOCOLS = {
    # chemistry: (current mA/cm2, half-cycle s, max half cycles, cut-off V)
    "lps": (0.15, 1800.0, 60, 10.0),
    "lsps": (1.0, 5 * 3600.0, 6, 4.0),
    "llzo": (0.035, 3600.0, 40, 10.0),
}


def run_demo(chemistry: str = "lps", seed: int = 3, n_lateral: int = 96, out: Path | str = "runs/demo",
             scan_angles: int = 181, quiet: bool = False) -> Path:
    """Simulate an operando experiment on the twin until it fails; store it.

    Parameters
    ----------
    chemistry : str
        ``lps`` (cracks, short), ``lsps`` (contact loss, runaway) or ``llzo``
        (filament, short).
    seed : int
        Twin seed.
    n_lateral : int
        Mini-cell width, voxels (1.5 um each).
    out : path
        Output folder; the HDF5 file is ``<out>/<chemistry>_seed<seed>.h5``.
    scan_angles : int
        Projections of the final simulated tomography scan (0 to skip).

    Returns
    -------
    Path
        The HDF5 file written.
    """
    import h5py

    from .twin import CellTwin
    from .twin.geometry import mini

    if chemistry not in _DEMO_PROTOCOLS:
        raise ValueError(f"unknown chemistry {chemistry!r}; choose one of {sorted(_DEMO_PROTOCOLS)}")
    j0, half_s, max_half, cutoff = _DEMO_PROTOCOLS[chemistry]
    twin = CellTwin.create(chemistry, mini(n_lateral), seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{chemistry}_seed{seed}.h5"
    say = (lambda *a: None) if quiet else print
    say(f"sscell_live demo: {chemistry} mini cell {twin.geometry.shape} voxels of {twin.geometry.voxel_size_um} um, seed {seed}")
    say(f"protocol: +-{j0} mA/cm2, {half_s / 60:.0f}-min half cycles, scan after each, cut-off {cutoff} V")
    header = f"{'scan':>4} {'t_h':>6} {'j_mA/cm2':>9} {'V':>8} {'contact_top':>11} {'contact_bot':>11} {'void_um3':>9} {'crack_pen':>9} {'Li_fill':>7}  event"
    say(header)
    first_labels = twin.labels().copy()
    rows, volt = [], []
    t_start = time.perf_counter()
    for half in range(max_half):
        j = j0 if half % 2 == 0 else -j0
        rec = twin.run(j, half_s, cutoff_V=cutoff, sample_period_s=min(300.0, half_s))
        volt.append(np.stack([rec.cell_time_s, rec.voltage_V, rec.current_mA_cm2, rec.bulk_resistance_ohm], axis=1))
        tr = twin.truth()
        event = "SHORT" if twin.shorted else ("CUT-OFF" if rec.stop_reason == "cutoff" else "")
        row = {
            "scan_index": half,
            "cell_time_s": twin.time_s,
            "current_mA_cm2": j,
            "voltage_V": float(rec.voltage_V[-1]),
            **{k: tr[k] for k in (
                "contact_fraction_top", "contact_fraction_bottom", "void_volume_top_um3", "void_volume_bottom_um3",
                "crack_volume_um3", "crack_penetration_fraction", "crack_fill_fraction_imaged", "se_porosity",
                "li_thickness_top_um", "li_thickness_bottom_um", "interphase_thickness_bottom_um", "stack_thickness_um")},
            "shorted": bool(twin.shorted),
        }
        rows.append(row)
        say(f"{half:>4} {twin.time_s / 3600:>6.2f} {j:>9.3f} {row['voltage_V']:>8.3f} {row['contact_fraction_top']:>11.3f} "
            f"{row['contact_fraction_bottom']:>11.3f} {row['void_volume_top_um3'] + row['void_volume_bottom_um3']:>9.0f} "
            f"{row['crack_penetration_fraction']:>9.2f} {row['crack_fill_fraction_imaged']:>7.3f}  {event}")
        if twin.failed:
            break

    with h5py.File(path, "w") as f:
        f.attrs["description"] = "sscell_live twin demo: voltage record, per-scan truth, label volumes"
        f.attrs["metadata"] = json.dumps(twin.describe())
        f.attrs["voxel_size_um"] = twin.geometry.voxel_size_um
        f.create_dataset("voltage_record", data=np.concatenate(volt), compression="gzip")
        f["voltage_record"].attrs["columns"] = "cell_time_s, voltage_V, current_mA_cm2, bulk_resistance_ohm"
        g = f.create_group("scans")
        for key in rows[0]:
            g.create_dataset(key, data=np.array([r[key] for r in rows]))
        f.create_dataset("labels_first", data=first_labels, compression="gzip")
        f.create_dataset("labels_last", data=twin.labels(), compression="gzip")
        if scan_angles:
            scan = _simulate_final_scan(twin, scan_angles)
            if scan is not None:
                for key, arr in scan.items():
                    f.create_dataset(f"exchange/{key}", data=arr, compression="gzip")
    say(f"failed: {twin.failed} ({'short' if twin.shorted else 'cut-off' if twin.cutoff_reached else 'no failure'}) "
        f"after {twin.time_s / 3600:.2f} h of cell time, {time.perf_counter() - t_start:.1f} s wall")
    say(f"stored: {path.resolve()}")
    return path


def _simulate_final_scan(twin, n_angles: int) -> dict | None:
    """Projections, flats, darks and angles of the final state (Data Exchange layout)."""
    try:
        scan = twin.scan(np.linspace(0, np.pi, n_angles, endpoint=False))
    except (AttributeError, ImportError, NotImplementedError):
        return None
    return {"data": scan.projections, "data_white": scan.flats, "data_dark": scan.darks, "theta": np.degrees(scan.angles_rad)}


#: Modules that add subcommands: each defines ``register(subparsers)`` which
#: adds its parser and sets ``func`` (called with the parsed args, returning an
#: exit code). A module that does not exist yet is skipped, so parts of the
#: project can add their command without editing this file.
SUBCOMMAND_MODULES = (
    "sscell_live.recon.cli",
    "sscell_live.segment.cli",
    "sscell_live.metrics.cli",
    "sscell_live.storage.cli",
    "sscell_live.monitor.cli",
    "sscell_live.monitor.remote",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``sscell-live`` argument parser with every available subcommand."""
    import importlib

    parser = argparse.ArgumentParser(prog="sscell-live", description="Operando tomography monitor for solid-state Li cells.")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo as live_demo

    demo = sub.add_parser("demo", help="simulated cycle_until_failure experiment with the live monitor on the "
                                       "embedded Tiled (--twin-only: the twin alone)")
    live_demo.add_arguments(demo)
    demo.set_defaults(func=live_demo.command)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # that part (or its package) does not exist yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
