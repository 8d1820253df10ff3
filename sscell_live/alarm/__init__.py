"""Failure alarm: turns metric and voltage history into ok / watch / imminent / failed.

Works only from measured metrics and potentiostat readings, never from twin
truth. ``assess`` is the pure function the live monitor calls after every scan.
"""

from .assess import assess
from .levels import AlarmThresholds, Assessment, Level

__all__ = ["assess", "Assessment", "AlarmThresholds", "Level"]
