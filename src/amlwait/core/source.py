"""The one seam through which job states are read and jobs cancelled.

Two implementations ship: :class:`amlwait.azureml.ArmJobSource` (Azure ML, or the local
workspace, over ARM) and :class:`amlwait.testing.FakeJobSource` for tests. A job source
counts every request it sends in ``requests_sent``, retries and pages included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef


class JobSource(Protocol):
    @property
    def requests_sent(self) -> int:
        """Requests sent so far, retries and pages included."""
        ...

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        """The job's current state, or ``None`` when the service says it does not exist."""
        ...

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        """Every job of ``workspace`` that carries the tag key ``tag``, archived included."""
        ...

    async def cancel_job(self, ref: JobRef) -> None:
        """Ask the service to cancel the job (it may take a while to end)."""
        ...


@runtime_checkable
class RetryingSource(Protocol):
    """A job source that says which read it is still retrying (:class:`ArmJobSource`):
    what a caller that gives up on a read (a deadline, a time limit) can say it was
    waiting for. Check it with ``isinstance``; the plain seam does not promise it."""

    @property
    def last_problem(self) -> str | None:
        """The latest transient failure still being retried; ``None`` once one succeeds."""
        ...


class JobResubmitter(Protocol):
    async def resubmit_job(self, ref: JobRef, new_name: str) -> JobRef:
        """Create ``new_name`` from ``ref``'s own definition (same properties and tags)."""
        ...


@dataclass(frozen=True)
class RunFacts:
    """What Azure ML recorded about a job's run: when it really started and ended (epoch
    seconds) and, for a failed run, its error. ``None`` where the service said nothing."""

    started_at: float | None = None
    ended_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None


class RunFactsUnavailable(Exception):
    """The service could not say (refused, unreachable, too slow); the message says why in
    a few words, e.g. ``run history refused the request (403)``."""


class RunReader(Protocol):
    """Where Azure ML keeps why a job failed and when it ran (run history, MLflow).

    Reads are asked only for jobs that ended. Each raises :class:`RunFactsUnavailable`
    when the service cannot answer; the caller decides what that means for a report.
    """

    @property
    def requests_sent(self) -> int:
        """Requests sent so far (discovery included)."""
        ...

    async def run_details(self, ref: JobRef) -> RunFacts:
        """One run's details: times and error (one request per run, after discovery)."""
        ...

    async def run_times(
        self, refs: Sequence[JobRef], experiments: Mapping[JobRef, str]
    ) -> dict[JobRef, RunFacts]:
        """Start and end times of many runs in as few requests as the service allows;
        ``experiments`` names each run's experiment. Runs the service does not know are
        left out of the answer."""
        ...

    async def aclose(self) -> None:
        """Release connections; the reader is not used afterwards."""
        ...
