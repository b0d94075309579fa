"""The width and depth multipliers' rounding (timm's ``make_divisible`` and ``depth_trunc``): pure arithmetic,
shared by validation, the plan and the stage types."""

from __future__ import annotations

import math


def scaled_width(width: int, multiplier: float, divisor: int = 1, round_limit: float = 0.0) -> int:
    """``width`` times ``multiplier``, rounded as timm's ``make_divisible(v, divisor, round_limit=...)``."""
    if multiplier == 1.0:
        return width
    exact = width * multiplier
    new = max(divisor, int(exact / divisor + 0.5) * divisor)
    return new + divisor if new < round_limit * exact else new


def scaled_depth(depth: int, multiplier: float, rounding: str = "ceil") -> int:
    """``depth`` times ``multiplier``: rounded up (timm's depth_trunc 'ceil') or to the nearest ('round')."""
    if rounding == "round":
        return max(1, round(depth * multiplier))
    return max(1, math.ceil(depth * multiplier - 1e-9))
