"""When to retry a failed request, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# The statuses azure-core retries too: timeouts, throttling and server errors.
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 506


@dataclass
class RetryPolicy:
    """Capped exponential backoff with jitter.

    Before attempt ``n`` (``n`` >= 2) a client waits
    ``min(maximum, initial * 2 ** (n - 2)) + random(0, jitter)`` seconds, or the server's
    ``Retry-After`` when that is longer. After ``attempts`` tries the failure is final.
    """

    attempts: int = 8
    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 1.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry)."""
        backoff: float = min(self.maximum, self.initial * 2.0 ** max(0, attempt - 2))
        backoff += self.rng.uniform(0, self.jitter)
        return max(backoff, retry_after or 0.0)
