"""Failure alarm: turns metric and voltage history into ok / watch / imminent / failed.

Works only from measured metrics, potentiostat readings and the cell's
metadata, never from twin truth. ``assess`` is the pure function the live
monitor calls after every scan.
"""

from .assess import assess
from .levels import LITERATURE_LIMITS, AlarmThresholds, Assessment, Level

__all__ = ["assess", "Assessment", "AlarmThresholds", "Level", "LITERATURE_LIMITS"]
