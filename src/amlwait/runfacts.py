"""Why ended jobs failed and when they really ran: read after ARM says they ended, never
at the cost of the wait.

:class:`RunFactsStep` is the engine's one use of a :class:`~amlwait.core.source.RunReader`
(run history and MLflow, :mod:`amlwait.azureml.tracking`):

- :meth:`~RunFactsStep.explain`, as jobs are seen to end ``Failed`` and before anyone is
  told: one run-history read per job for its error (``error_code``, ``reason``) and its
  times (``started_at``, ``ended_at``);
- :meth:`~RunFactsStep.time_ended`, once as the wait ends: the start and end times of
  every job that ended (Completed, Failed, Canceled) and has none yet, by MLflow search.

Each call is bounded by ``budget`` seconds and by the wait's deadline (a call at or past
the deadline reads nothing). A reader that refuses (401/403/404), fails, is unreachable or
too slow changes only the report: a Failed job's reason becomes ``reason unavailable
(why)`` and its times stay unknown (reports then show what the waiter saw, labelled so).
The wait's outcome and exit code never depend on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from amlwait.core.clock import Clock
from amlwait.core.deadline import Deadline
from amlwait.core.duration import format_duration
from amlwait.core.source import RunFacts, RunReader
from amlwait.core.status import TERMINAL, JobStatus
from amlwait.core.tracker import JobState

DEFAULT_BUDGET = 15.0
UNAVAILABLE = "reason unavailable"
_CONCURRENCY = 8


class RunFactsStep:
    """Fills :class:`JobState`'s ``reason``, ``error_code``, ``started_at`` and
    ``ended_at`` from a reader; with ``reader=None`` it does nothing."""

    def __init__(
        self,
        reader: RunReader | None,
        clock: Clock,
        deadline: Deadline,
        *,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.deadline = deadline
        self.budget = budget

    @property
    def requests_sent(self) -> int:
        return self.reader.requests_sent if self.reader is not None else 0

    def _time_left(self) -> float:
        return min(self.budget, self.deadline.remaining(self.clock.now()))

    async def explain(self, jobs: Sequence[JobState]) -> None:
        """Read the error and times of each job that ended ``Failed`` (others are left
        alone); a job whose read does not work gets ``reason unavailable (why)``."""
        if self.reader is None:
            return
        failed = [job for job in jobs if job.status == JobStatus.FAILED.value]
        if not failed:
            return
        left = self._time_left()
        if left <= 0:
            for job in failed:
                job.reason = f"{UNAVAILABLE} (the wait's deadline came first)"
            return
        reader = self.reader
        semaphore = asyncio.Semaphore(_CONCURRENCY)
        pending = {job.ref for job in failed}

        async def explain_one(job: JobState) -> None:
            async with semaphore:
                try:
                    facts = await reader.run_details(job.ref)
                except Exception as error:  # any failure is a report detail, never fatal
                    job.reason = f"{UNAVAILABLE} ({_why(error)})"
                else:
                    _apply_details(job, facts)
                pending.discard(job.ref)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(explain_one(job) for job in failed)), timeout=left
            )
        except TimeoutError:
            for job in failed:
                if job.ref in pending:
                    job.reason = f"{UNAVAILABLE} (no answer within {format_duration(left)})"

    async def time_ended(self, jobs: Sequence[JobState]) -> None:
        """Read the start and end times of the ended jobs that have none yet; what
        cannot be read stays unknown."""
        if self.reader is None:
            return
        untimed = [
            job
            for job in jobs
            if job.status in TERMINAL and (job.started_at is None or job.ended_at is None)
        ]
        left = self._time_left()
        if not untimed or left <= 0:
            return
        experiments = {job.ref: job.experiment or "Default" for job in untimed}
        try:
            found = await asyncio.wait_for(
                self.reader.run_times([job.ref for job in untimed], experiments), timeout=left
            )
        except Exception:  # times fall back to what the waiter saw, labelled so
            return
        for job in untimed:
            facts = found.get(job.ref)
            if facts is not None:
                _apply_times(job, facts)

    async def aclose(self) -> None:
        if self.reader is not None:
            try:
                await self.reader.aclose()
            except Exception:  # closing connections must not fail an ended wait
                return


def _apply_times(job: JobState, facts: RunFacts) -> None:
    job.started_at = facts.started_at if facts.started_at is not None else job.started_at
    job.ended_at = facts.ended_at if facts.ended_at is not None else job.ended_at


def _apply_details(job: JobState, facts: RunFacts) -> None:
    _apply_times(job, facts)
    if facts.error_message:
        job.reason = facts.error_message
        job.error_code = facts.error_code
    else:
        job.reason = f"{UNAVAILABLE} (run history recorded no error for this run)"


def _why(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
