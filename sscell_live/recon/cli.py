"""``sscell-live reconstruct SCAN.h5 -o VOLUME.h5``: reconstruct a scan file into HDF5.

The output holds ``/volume`` (z, y, x) float32, written block by block (the
volume never has to fit in memory), with attributes ``voxel_size_um`` (when
the scan file gives a pixel size), ``binning``, ``center_px``, ``rows``
(first and last detector row), ``row_indices`` (every detector row used, in
output order: ``--rows 100:140,900:940`` gives 80 slices), ``units`` and the
source file.

With ``--regions auto`` the two Li|SE interfaces are located in the
projections and the output holds one group per region instead
(``/interface_top/volume``, ``/bulk/volume``, ``/interface_bottom/volume``,
see :mod:`sscell_live.recon.regions`): the slabs at full resolution, the
bulk binned ``--bin`` times (4 when ``--bin`` is 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["parse_rows", "register", "run"]


def parse_rows(text: str | None):
    """``"100:200"``, ``"5,7,9"`` or ``"100:200,300:310"`` -> sorted row indices (None for all)."""
    if text is None or text == "all":
        return None
    rows = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            a, b = part.split(":", 1)
            try:
                rows.extend(range(int(a), int(b)))
            except ValueError:
                raise ValueError(f"bad row range {part!r}; use START:STOP") from None
        else:
            try:
                rows.append(int(part))
            except ValueError:
                raise ValueError(f"bad row {part!r}; use integers or START:STOP ranges") from None
    if not rows:
        raise ValueError(f"no rows in {text!r}")
    return sorted(set(rows))


def run(args) -> int:
    """Execute the ``reconstruct`` subcommand; returns an exit code."""
    import h5py

    from .io import open_scan
    from .pipeline import (
        Options,
        as_source,
        auto_center,
        reconstruct_source,
        select_rows,
    )

    try:
        scan = open_scan(args.scan)
        rows = parse_rows(args.rows)
        opt = Options(algorithm=args.algorithm, filter_name=args.filter, binning=args.bin,
                      ring_removal=None if args.rings == "none" else args.rings).validated()
        src = as_source(scan)
        runs = select_rows(scan.n_rows, rows, opt.binning)
        if args.center == "auto":
            center = auto_center(src, opt)
        else:
            try:
                center = float(args.center)
            except ValueError:
                raise ValueError(f"--center must be 'auto' or a column number, got {args.center!r}") from None
        n = scan.n_cols // opt.binning
        n_slices = sum(len(r) for r in runs) // opt.binning
        client = None
        if args.dask:
            from distributed import Client

            client = Client(args.dask)
        out_path = Path(args.output)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if getattr(args, "regions", "none") == "auto":
            if rows is not None:
                raise ValueError("--regions auto chooses the rows itself; drop --rows")
            from .regions import reconstruct_regions

            res = reconstruct_regions(scan, center=center, out=out_path, half_width=args.slab_rows,
                                      bulk_binning=opt.binning if opt.binning > 1 else 4,
                                      algorithm=opt.algorithm, filter_name=opt.filter_name,
                                      ring_removal=opt.ring_removal, client=client, progress=not args.quiet)
            if client is not None:
                client.close()
            if not args.quiet:
                print(f"interfaces at detector rows {res['interfaces']}; wrote regions "
                      f"{', '.join(r.name for r in res['regions'])} (centre {center:.2f} px) to {args.output}")
            return 0
        with h5py.File(out_path, "w") as f:
            ds = f.create_dataset("volume", shape=(n_slices, n, n), dtype="float32",
                                  chunks=(1, n, n), compression=None)
            reconstruct_source(scan, center=center, rows=rows, out=ds, client=client, progress=not args.quiet,
                               algorithm=opt.algorithm, filter_name=opt.filter_name, binning=opt.binning,
                               ring_removal=opt.ring_removal)
            ds.attrs["units"] = "linear attenuation per voxel (mu * voxel size)"
            ds.attrs["axes"] = "z, y, x"
            ds.attrs["binning"] = opt.binning
            ds.attrs["center_px"] = center
            ds.attrs["rows"] = np.array([runs[0][0], runs[-1][-1]])
            # every detector row used, ascending (slice k is the mean of rows k*bin .. k*bin + bin - 1)
            ds.attrs["row_indices"] = np.concatenate(runs)
            ds.attrs["algorithm"] = opt.algorithm
            ds.attrs["source"] = str(Path(args.scan).resolve())
            px = scan.metadata.get("pixel_size_um")
            if px:
                ds.attrs["voxel_size_um"] = px * opt.binning
        if client is not None:
            client.close()
    except (ValueError, OSError) as exc:
        print(f"sscell-live reconstruct: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {n_slices} x {n} x {n} volume (centre {center:.2f} px) to {args.output}")
    return 0


def register(subparsers) -> None:
    """Add the ``reconstruct`` subcommand to the ``sscell-live`` parser."""
    p = subparsers.add_parser("reconstruct", help="reconstruct a Data Exchange or NeXus NXtomo scan into HDF5")
    p.add_argument("scan", help="scan file (APS Data Exchange or NeXus NXtomo HDF5)")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file (dataset /volume, z y x float32)")
    p.add_argument("--rows", default=None, help="detector rows: START:STOP[,START:STOP|ROW...] (default all)")
    p.add_argument("--bin", type=int, default=1, help="detector binning N (N x N pixels per voxel)")
    p.add_argument("--center", default="auto", help="rotation axis column in pixels, or 'auto' (default)")
    p.add_argument("--algorithm", default="auto", choices=["auto", "fourier", "torch", "tomopy"],
                   help="backend (default auto: tomopy if importable, else fourier)")
    p.add_argument("--filter", default="ramp", choices=["ramp", "shepp-logan", "cosine", "hamming", "hann", "parzen"])
    p.add_argument("--rings", default="none", choices=["none", "sorting", "sorting+dead"],
                   help="stripe removal in sinograms (Vo et al. 2018)")
    p.add_argument("--regions", default="none", choices=["none", "auto"],
                   help="auto: find the Li|SE interfaces, write slabs at full resolution and the bulk binned")
    p.add_argument("--slab-rows", type=int, default=32, help="with --regions auto: rows each side of an interface")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="farm row blocks out to a Dask scheduler")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
