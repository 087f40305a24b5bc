"""The benchmark's event clock keeps the virtual clock's promise: a positive sleep moves
time on, however small (the N = 4,000 service run spun for ever on a 1e-9 s throttle
sleep that the float epoch rounded to nothing)."""

from __future__ import annotations

import asyncio

from bench.service_strategy import EventClock

from amlwait.core.budget import RequestBudget
from amlwait.throttle import Throttle


def test_a_sleep_below_the_epochs_resolution_still_moves_time_on() -> None:
    clock = EventClock()
    before = clock.now()
    asyncio.run(asyncio.wait_for(clock.sleep(1e-12), timeout=5))
    assert clock.now() > before


class _TinyDelayBudget(RequestBudget):
    """Asks for a 1e-10 s wait until time has moved on at all, then gives a token."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start = start

    def delay(self, now: float) -> float:
        return 1e-10 if now <= self.start else 0.0


def test_a_throttle_on_the_event_clock_gets_its_token_after_a_tiny_delay() -> None:
    clock = EventClock()
    throttle = Throttle(clock, _TinyDelayBudget(clock.now()))
    # Before the fix this never returned: each sleep was rounded to 0 s.
    asyncio.run(asyncio.wait_for(throttle.acquire(deadline=float("inf")), timeout=5))
    assert clock.now() > throttle.budget.start  # type: ignore[attr-defined]
