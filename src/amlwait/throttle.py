"""The async shell around :class:`~amlwait.core.budget.RequestBudget`."""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar

from amlwait.core.budget import RequestBudget
from amlwait.core.clock import Clock


class DeadlineReached(Exception):
    """Waiting any longer would pass the wait's deadline."""


# The moment by which the reads under way must be done. The waiter sets it around its
# reads, so throttling and retry backoff in any job source stop at the deadline without
# the job-source seam having to carry it.
read_deadline: ContextVar[float] = ContextVar("amlwait_read_deadline", default=math.inf)


class Throttle:
    """Hands out one request slot at a time, sleeping on the shared clock.

    One waiter at a time sleeps for a token (an ``asyncio.Lock``), so concurrent readers
    queue fairly and the request rate never exceeds the budget.
    """

    def __init__(self, clock: Clock, budget: RequestBudget | None = None) -> None:
        self.clock = clock
        self.budget = budget or RequestBudget()
        self._lock = asyncio.Lock()

    async def acquire(self, deadline: float | None = None) -> None:
        if deadline is None:
            deadline = read_deadline.get()
        async with self._lock:
            while True:
                now = self.clock.now()
                delay = self.budget.delay(now)
                if delay <= 0:
                    self.budget.take(now)
                    return
                if now + delay > deadline:
                    raise DeadlineReached
                await self.clock.sleep(delay)

    async def pause(self, seconds: float, deadline: float | None = None) -> None:
        """Sleep before a retry, unless that would pass the deadline."""
        if deadline is None:
            deadline = read_deadline.get()
        if self.clock.now() + seconds > deadline:
            raise DeadlineReached
        await self.clock.sleep(seconds)
