"""ARM's per-subscription token buckets, on an injectable clock.

Reads: a bucket of 250 tokens refilled at 25 per second; writes: 200 tokens, 10 per
second. Each request takes one token from its subscription's bucket. When the bucket is
empty the request is refused with ``Retry-After = max(1, ceil(time until one token))``
seconds, and every request of that subscription sent before that moment is refused again
(with the remaining seconds, rounded up), whatever the bucket holds.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from amlwait.core.clock import Clock

READS = (250, 25.0)
WRITES = (200, 10.0)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int = 0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    blocked_until: float = 0.0


class TokenBuckets:
    def __init__(self, clock: Clock, *, capacity: int, refill_per_second: float) -> None:
        self._clock = clock
        self._capacity = capacity
        self._rate = refill_per_second
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> Decision:
        with self._lock:
            now = self._clock.now()
            bucket = self._refilled(key, now)
            if now < bucket.blocked_until:
                wait = math.ceil(bucket.blocked_until - now)
                return Decision(False, int(bucket.tokens), max(1, wait))
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(True, int(bucket.tokens))
            wait = max(1, math.ceil((1.0 - bucket.tokens) / self._rate))
            bucket.blocked_until = now + wait
            return Decision(False, 0, wait)

    def remaining(self, key: str) -> int:
        with self._lock:
            return int(self._refilled(key, self._clock.now()).tokens)

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self._capacity), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self._capacity), bucket.tokens + elapsed * self._rate)
        bucket.updated = now
        return bucket


class Throttle:
    """The read and write buckets of every subscription."""

    def __init__(self, clock: Clock) -> None:
        self.reads = TokenBuckets(clock, capacity=READS[0], refill_per_second=READS[1])
        self.writes = TokenBuckets(clock, capacity=WRITES[0], refill_per_second=WRITES[1])

    def take(self, method: str, subscription: str) -> Decision:
        buckets = self.reads if method in ("GET", "HEAD") else self.writes
        return buckets.take(subscription)
