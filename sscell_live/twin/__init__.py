"""Digital twin of a Li | SE | Li cell: geometry, evolution under current, voltage, imaging.

Pure numpy/scipy; never imported by the monitor, metrics or alarm (truth
stays in the twin).
"""

from .cell import CellTwin, RunRecord
from .chemistry import PRESETS, Chemistry, preset
from .geometry import CellGeometry, full, mini
from .imaging import Beam, Detector, SimulatedScan, simulate_scan

__all__ = [
    "CellTwin", "RunRecord", "Chemistry", "PRESETS", "preset", "CellGeometry", "mini", "full",
    "Beam", "Detector", "SimulatedScan", "simulate_scan",
]
