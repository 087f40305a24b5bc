"""Submitting a batch: idempotent, concurrent, bounded, one failure never stops the rest.

For each circuit the newest existing attempt is found by GET ``NAME``, ``NAME_r2``, … until
one is not found (:mod:`amlwait.core.attempts`). Then:

- no attempt exists → PUT ``NAME`` (``submitted``);
- one exists → nothing is sent (``exists``), whatever its status, unless
  ``retry_failed`` and it ended Failed or Canceled → PUT the next attempt
  (``resubmitted``).

At most ``concurrency`` circuits are in flight at once, all through one job source (so
its request budget and retries apply). A circuit whose requests fail (refused, or
retries exhausted) is reported with the service's message and the others go on; running
the same batch again completes it. After :meth:`Submitter.stop` no new circuit starts;
those not started are reported as failed, "interrupted". A refused credential (401 after
the one token refresh, or 403) is the same for every circuit: it ends the whole submit at
once (:class:`~amlwait.errors.AuthenticationError`, exit 2, no manifest written).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from amlwait.core.attempts import attempt_name
from amlwait.core.jobs import JobRef, JobSnapshot
from amlwait.core.status import JobStatus
from amlwait.errors import AmlwaitError, AuthenticationError
from amlwait.submit.plan import Batch, PlannedJob

RETRYABLE_STATUSES: frozenset[str] = frozenset({JobStatus.FAILED.value, JobStatus.CANCELED.value})
MAX_ATTEMPTS = 99


class SubmitSource(Protocol):
    """What submitting needs of a job source (:class:`~amlwait.azureml.arm.ArmJobSource`)."""

    async def get_job(self, ref: JobRef) -> JobSnapshot | None: ...

    async def put_job(self, ref: JobRef, properties: Mapping[str, Any]) -> JobSnapshot: ...


class Outcome(str, enum.Enum):
    SUBMITTED = "submitted"
    EXISTS = "exists"
    RESUBMITTED = "resubmitted"
    FAILED = "failed"


@dataclass(frozen=True)
class CircuitResult:
    """What happened to one circuit. ``name`` is its newest attempt that exists (``None``
    when none is known to); ``previous`` the attempt a resubmission replaced."""

    job: PlannedJob
    outcome: Outcome
    name: str | None = None
    status: str | None = None
    previous: str | None = None
    previous_status: str | None = None
    message: str | None = None

    def describe(self) -> str:
        """The outcome column of the report line."""
        if self.outcome is Outcome.SUBMITTED:
            return "submitted"
        if self.outcome is Outcome.EXISTS:
            named = "" if self.name == self.job.base_name else f" as {self.name}"
            return f"exists{named} ({self.status})"
        if self.outcome is Outcome.RESUBMITTED:
            return f"resubmitted as {self.name} ({self.previous} was {self.previous_status})"
        kept = f"; newest attempt {self.name} is {self.status}" if self.name else ""
        return f"failed: {self.message}{kept}"


class Submitter:
    def __init__(
        self,
        source: SubmitSource,
        *,
        concurrency: int = 8,
        retry_failed: bool = False,
        on_result: Callable[[CircuitResult], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.source = source
        self.retry_failed = retry_failed
        self.on_result = on_result
        self._semaphore = asyncio.Semaphore(concurrency)
        self._stopped = False
        self._refused: AuthenticationError | None = None

    def stop(self) -> None:
        """Start no new circuit; those in flight finish their current request sequence."""
        self._stopped = True

    async def submit(self, batch: Batch) -> list[CircuitResult]:
        """Every circuit's result, in the batch's order."""
        results = await asyncio.gather(*(self._one(batch, job) for job in batch.jobs))
        return list(results)

    async def _one(self, batch: Batch, job: PlannedJob) -> CircuitResult:
        async with self._semaphore:
            if self._refused is not None:
                raise self._refused
            if self._stopped:
                result = CircuitResult(job, Outcome.FAILED, message="interrupted before submission")
            else:
                result = await self._submit(batch, job)
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def _submit(self, batch: Batch, job: PlannedJob) -> CircuitResult:
        newest: JobSnapshot | None = None
        attempt = 0
        try:
            while attempt < MAX_ATTEMPTS:
                snapshot = await self.source.get_job(
                    JobRef(batch.workspace, attempt_name(job.base_name, attempt + 1))
                )
                if snapshot is None:
                    break
                newest, attempt = snapshot, attempt + 1
            if newest is None:
                snapshot = await self._put(batch, job, job.base_name)
                return CircuitResult(job, Outcome.SUBMITTED, job.base_name, snapshot.status)
            if not (self.retry_failed and newest.status in RETRYABLE_STATUSES):
                return CircuitResult(job, Outcome.EXISTS, newest.name, newest.status)
            if attempt >= MAX_ATTEMPTS:
                raise ValueError(f"{newest.name} is attempt {MAX_ATTEMPTS}; no more re-runs")
            name = attempt_name(job.base_name, attempt + 1)
            snapshot = await self._put(batch, job, name)
            return CircuitResult(
                job,
                Outcome.RESUBMITTED,
                name,
                snapshot.status,
                previous=newest.name,
                previous_status=newest.status,
            )
        except AuthenticationError as error:
            self._refused = error
            raise
        except (AmlwaitError, ValueError) as error:
            message = " ".join(str(error).split())
            if newest is None:
                return CircuitResult(job, Outcome.FAILED, message=message)
            return CircuitResult(job, Outcome.FAILED, newest.name, newest.status, message=message)

    async def _put(self, batch: Batch, job: PlannedJob, name: str) -> JobSnapshot:
        return await self.source.put_job(JobRef(batch.workspace, name), job.properties)
