"""The one injectable clock of the waiter.

Everything that reads the time or sleeps does it through a :class:`Clock`, so tests can
run a 48-hour wait in milliseconds with :class:`VirtualClock`. Time is wall-clock epoch
seconds, because deadlines are absolute and reports print timestamps.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a non-positive value only yields to the event loop)."""
        ...


class SystemClock:
    """Real time: ``time.time`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that jumps instead of sleeping.

    ``sleep(s)`` moves the time to at least ``s`` after the moment it was called and
    yields to the event loop. Concurrent sleepers therefore overlap as they would in real
    time (two tasks sleeping 5 s each take 5 s, not 10). It is thread-safe, so a server
    running in another thread (the scripted workspace) can share it and see the same time
    as the waiter.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._lock = threading.Lock()
        self.slept: float = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            target = self._now + max(0.0, seconds)
            if seconds > 0:
                # A tiny sleep at a large epoch time must still move time forward.
                target = max(target, math.nextafter(self._now, math.inf))
        await asyncio.sleep(0)
        with self._lock:
            if target > self._now:
                self.slept += target - self._now
                self._now = target
        await asyncio.sleep(0)
