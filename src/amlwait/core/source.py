"""The one seam through which job states are read and jobs cancelled.

Two implementations ship: :class:`amlwait.azureml.ArmJobSource` (Azure ML, or the local
workspace, over ARM) and :class:`amlwait.testing.FakeJobSource` for tests. A job source
counts every request it sends in ``requests_sent``, retries and pages included.
"""

from __future__ import annotations

from typing import Protocol

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


class JobResubmitter(Protocol):
    async def resubmit_job(self, ref: JobRef, new_name: str) -> JobRef:
        """Create ``new_name`` from ``ref``'s own definition (same properties and tags)."""
        ...
