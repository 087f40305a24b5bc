"""When to retry a failed request, and how long to wait first."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# The statuses azure-core retries too: timeouts, throttling and server errors.
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

# The longest a server's ``Retry-After`` is obeyed in one go: ARM asks for seconds to a
# few minutes; anything longer (``100000``, ``inf``) is a broken or hostile answer, and
# a 48-hour wait must not go silent for a day on it. After the cap the request is simply
# tried again (and the deadline still ends the wait).
MAX_RETRY_AFTER = 600.0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, capped to ``[0, MAX_RETRY_AFTER]``; ``None`` when absent
    or not a number of seconds (an HTTP date: the caller's own backoff applies).

    ``inf`` and huge values become ``MAX_RETRY_AFTER``; ``nan`` and negatives become 0.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if math.isnan(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, MAX_RETRY_AFTER)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 506


@dataclass
class RetryPolicy:
    """Capped exponential backoff with jitter.

    Before attempt ``n`` (``n`` >= 2) a client waits
    ``min(maximum, initial * 2 ** (n - 2)) + random(0, jitter)`` seconds, or the server's
    ``Retry-After`` (at most :data:`MAX_RETRY_AFTER`) when that is longer. Without a
    deadline, the failure is final after ``attempts`` tries; with one (``amlwait wait``)
    a transient failure is retried until the deadline instead, since giving up earlier
    ends a two-day wait over two minutes of throttling.
    """

    attempts: int = 8
    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 1.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry)."""
        # The exponent is clamped: a wait retrying until a 48-hour deadline reaches
        # attempt 3,000, and 2.0 ** 3000 overflows a float.
        backoff: float = min(self.maximum, self.initial * 2.0 ** min(64, max(0, attempt - 2)))
        backoff += self.rng.uniform(0, self.jitter)
        return max(backoff, min(retry_after or 0.0, MAX_RETRY_AFTER))
