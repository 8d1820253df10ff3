"""Segmentation of reconstructed volumes into material labels (classical pipeline).

Public API
----------
segment(volume, voxel_size_um, *, calibration=None, **options) -> labels uint8
    Material codes of ``registry.Material`` (0 vacuum, 1 Li, 2 SE, 3 interphase,
    4 steel, 5 housing).
Calibration.fit(first_volume, voxel_size_um) -> Calibration
    Grey levels fitted once per experiment and held; ``cal.apply(volume)``
    segments later scans with the same levels; ``save``/``load`` as JSON.
segmentation_notes(preset) -> list[str]
    Detection limits of metrics measured on these labels (Li vs vacuum in the SE).
DETECTION_LIMITS
    Smallest void height and crack/filament width the grey-scan pipeline resolves (voxels).

The learned interface-slab U-Net lives in :mod:`sscell_live.segment.unet`
(torch, imported lazily; ``sscell-live train-segmenter`` reproduces its weights).
"""

from .classical import (
    DETECTION_LIMITS,
    Calibration,
    SegmentationError,
    check_volume,
    segment,
    segmentation_notes,
)

__all__ = ["DETECTION_LIMITS", "Calibration", "SegmentationError", "check_volume", "segment", "segmentation_notes"]
