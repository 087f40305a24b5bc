"""The request budget: a token bucket that also obeys the service's own signals.

Sans-IO: the caller asks how long to wait before the next request, sleeps that long on
its own clock, then takes a token. ARM's read bucket holds 250 tokens and refills 25/s per
subscription and principal; we stay well under it (default 10/s, burst 20) because other
tools share the same bucket.

Two signals from the service slow it further:

- ``Retry-After`` on a 429 (or 503): no request at all until that moment
  (:meth:`RequestBudget.hold_until`), since ARM refuses a request sent earlier again;
- a low ``x-ms-ratelimit-remaining-subscription-reads``: the rate drops to
  ``rate * remaining / low_water`` (at least ``min_rate``) until the header recovers
  (:meth:`RequestBudget.note_remaining`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestBudget:
    rate: float = 10.0
    burst: float = 20.0
    low_water: int = 100
    min_rate: float = 0.5
    _tokens: float = field(init=False)
    _stamp: float | None = field(init=False, default=None)
    _held_until: float = field(init=False, default=0.0)
    _current_rate: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a request budget needs rate > 0 and burst >= 1")
        self._tokens = self.burst
        self._current_rate = self.rate

    @property
    def current_rate(self) -> float:
        return self._current_rate

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
            return
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self._current_rate)
            self._stamp = now

    def delay(self, now: float) -> float:
        """Seconds to wait before a request may be sent at ``now``."""
        self._refill(now)
        wait_hold = max(0.0, self._held_until - now)
        # The epsilon absorbs float error in the refill, so a caller that slept exactly
        # the delay asked for always gets its token.
        missing = 1 - self._tokens
        wait_token = 0.0 if missing <= 1e-9 else missing / self._current_rate
        return max(wait_hold, wait_token)

    def take(self, now: float) -> None:
        """Spend one token at ``now`` (call only when :meth:`delay` returned 0)."""
        self._refill(now)
        self._tokens -= 1

    def hold_until(self, moment: float) -> None:
        """Send nothing before ``moment`` (a ``Retry-After``); drains the bucket too."""
        self._held_until = max(self._held_until, moment)
        self._tokens = min(self._tokens, 0.0)

    def note_remaining(self, remaining: int) -> None:
        """React to ``x-ms-ratelimit-remaining-subscription-reads``."""
        if remaining >= self.low_water:
            self._current_rate = self.rate
        else:
            share = max(0, remaining) / self.low_water
            self._current_rate = max(self.min_rate, self.rate * share)
