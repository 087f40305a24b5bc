"""An absolute, wall-clock deadline."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """The moment (epoch seconds) by which a wait must end; ``math.inf`` for never."""

    at: float

    @classmethod
    def after(cls, now: float, seconds: float) -> Deadline:
        return cls(now + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    def remaining(self, now: float) -> float:
        return max(0.0, self.at - now)

    def expired(self, now: float) -> bool:
        return now >= self.at

    def clamp(self, wake_at: float) -> float:
        """``wake_at``, but never past the deadline."""
        return min(wake_at, self.at)
