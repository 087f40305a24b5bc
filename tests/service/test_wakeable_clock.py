"""A wait's clock in the service: an event cuts its sleep short, on any base clock."""

from __future__ import annotations

import asyncio

from amlwait.core.clock import VirtualClock
from amlwait.service.wakeable_clock import WakeableClock as _WakeableClock


class _SlowVirtualClock(VirtualClock):
    """Jumps only after a few turns of the loop, so a wake can come first."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await super().sleep(seconds)


def test_a_wake_cuts_a_virtual_sleep_short_and_time_does_not_jump() -> None:
    base = _SlowVirtualClock()
    clock = _WakeableClock(base)
    started = base.now()

    async def scenario() -> float:
        sleeper = asyncio.ensure_future(clock.sleep(300.0))
        await asyncio.sleep(0)
        clock.wake()
        await sleeper
        return base.now() - started

    assert asyncio.run(scenario()) == 0.0


def test_without_a_wake_the_sleep_lasts_its_time_on_the_base_clock() -> None:
    base = VirtualClock()
    clock = _WakeableClock(base)
    started = clock.now()
    asyncio.run(clock.sleep(300.0))
    assert clock.now() - started == 300.0


def test_a_wake_before_the_sleep_makes_the_next_sleep_return_at_once() -> None:
    base = VirtualClock()
    clock = _WakeableClock(base)
    started = clock.now()

    async def scenario() -> None:
        clock.wake()
        await clock.sleep(300.0)  # consumed by the earlier wake
        await clock.sleep(10.0)  # a real sleep again

    asyncio.run(scenario())
    assert clock.now() - started == 10.0
