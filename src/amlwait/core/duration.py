"""Durations as users type them (``90``, ``90s``, ``15m``, ``2h``, ``2d``, ``0.5s``)."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ``ValueError`` with a hint."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration: use a number with an optional unit s, m, h or d "
            "(e.g. 90, 90s, 15m, 2h, 2d)"
        )
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large a duration")
    return value


def format_duration(seconds: float) -> str:
    """Compact and stable: ``0.4s``, ``42s``, ``14m02s``, ``3h05m``, ``2d04h``."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
