"""Argument checks shared by devices, plans and analysis: clear errors, named arguments."""

from __future__ import annotations

import math

__all__ = ["finite"]


def finite(name: str, value, *, positive: bool = False, non_negative: bool = False) -> float:
    """``value`` as a finite float, or a ValueError that names the argument.

    Parameters
    ----------
    name : str
        Argument name for the message (with its unit, e.g. ``"exposure_s"``).
    value : object
        What the caller passed.
    positive, non_negative : bool
        Also require ``> 0`` or ``>= 0``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if non_negative and v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v
