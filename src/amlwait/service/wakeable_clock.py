"""A wait's clock whose sleep can be cut short (by an Event Grid event, or a new wait)."""

from __future__ import annotations

import asyncio

from amlwait.core.clock import Clock, SystemClock


class WakeableClock:
    """A wait's clock (real time unless a ``base`` is given, as the benchmark's virtual
    clock), whose sleep an event (or a new wait) can cut short."""

    def __init__(self, base: Clock | None = None) -> None:
        self.base = base or SystemClock()
        self._woken = asyncio.Event()

    def now(self) -> float:
        return self.base.now()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._woken.is_set():
            sleeper = asyncio.ensure_future(self.base.sleep(seconds))
            waker = asyncio.ensure_future(self._woken.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                await asyncio.gather(sleeper, waker, return_exceptions=True)
        else:
            await asyncio.sleep(0)
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()
