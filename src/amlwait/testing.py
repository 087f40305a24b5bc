"""A public fake of the job-source seam, for your own tests and ours.

:class:`FakeJobSource` plays each job from a scripted *timeline* on a clock you control,
and records every request it is sent. Pair it with
:class:`~amlwait.core.clock.VirtualClock` and a 48-hour wait runs in milliseconds::

    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("TRAIN_1", [(0, "Queued"), (60, "Running"), (3600, "Completed")])
    result = await wait_for_jobs(source.refs(), source=source, clock=clock)

A timeline is a list of ``(offset_seconds, status)`` from the fake's start; the status at
time ``t`` is that of the last entry whose offset is at most ``t``. ``None`` as a status
(or a time before the first entry) means the service does not know the job yet, so
``[(0, None), (120, "Queued")]`` is a job that appears after two minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from amlwait.core.budget import RequestBudget
from amlwait.core.clock import Clock
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef, studio_url_for
from amlwait.core.status import TERMINAL, JobStatus
from amlwait.throttle import Throttle

Timeline = Sequence[tuple[float, "str | None"]]

DEFAULT_WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-000000000000", "rg", "ws")


def status_at(timeline: Timeline, offset: float) -> str | None:
    """The status a timeline gives at ``offset`` seconds from its start."""
    current: str | None = None
    for at, status in timeline:
        if at > offset:
            break
        current = status
    return current


@dataclass(frozen=True)
class FakeRequest:
    at: float
    kind: str  # "get" | "list" | "list-next" | "listed" (a job on a page) | "put" | "cancel"
    job: str | None
    workspace: WorkspaceRef


@dataclass
class _FakeJob:
    ref: JobRef
    timeline: list[tuple[float, str | None]]
    tags: dict[str, str] = field(default_factory=dict)
    canceled_at: float | None = None
    offset: float = 0.0  # seconds after the fake's start that the timeline begins


class FakeJobSource:
    """Scripted jobs behind the :class:`~amlwait.core.source.JobSource` seam.

    ``page_size`` sets how many jobs one LIST request returns (each further page is one
    more request). A ``budget`` makes the fake wait for request slots on ``clock`` like
    the ARM client does. ``cancel_takes`` seconds after a cancel, a job is Canceled.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        page_size: int = 100,
        budget: RequestBudget | None = None,
        cancel_takes: float = 0.0,
    ) -> None:
        self.clock = clock
        self.started_at = clock.now()
        self.page_size = page_size
        self.cancel_takes = cancel_takes
        self._throttle = Throttle(clock, budget) if budget is not None else None
        self._jobs: dict[JobRef, _FakeJob] = {}
        self._retry_timelines: dict[str, list[tuple[float, str | None]]] = {}
        self.requests: list[FakeRequest] = []

    # -- scripting ----------------------------------------------------------------------

    def add_job(
        self,
        name: str,
        timeline: Timeline,
        *,
        workspace: WorkspaceRef = DEFAULT_WORKSPACE,
        tags: dict[str, str] | None = None,
    ) -> JobRef:
        ref = JobRef(workspace, name)
        self._jobs[ref] = _FakeJob(ref, list(timeline), dict(tags or {}))
        return ref

    def on_resubmit(self, name: str, timeline: Timeline) -> None:
        """How the job ``name`` (a retry, e.g. ``X_r2``) behaves once it is resubmitted;
        its timeline starts when it is created. Default: Queued, Completed after 10 min."""
        self._retry_timelines[name] = list(timeline)

    def refs(self) -> list[JobRef]:
        return list(self._jobs)

    def status_now(self, ref: JobRef) -> str | None:
        job = self._jobs.get(ref)
        if job is None:
            return None
        now = self.clock.now()
        if job.canceled_at is not None:
            return "Canceled" if now >= job.canceled_at + self.cancel_takes else "CancelRequested"
        return status_at(job.timeline, now - self.started_at - job.offset)

    # -- what was asked -------------------------------------------------------------------

    @property
    def requests_sent(self) -> int:
        return sum(1 for r in self.requests if r.kind != "listed")

    def reads_of(self, name: str) -> list[float]:
        """When ``name`` was read, by GET or as part of a LIST page that held it."""
        return [r.at for r in self.requests if r.job == name and r.kind in ("get", "listed")]

    @property
    def canceled(self) -> list[str]:
        return [r.job for r in self.requests if r.kind == "cancel" and r.job is not None]

    # -- the seam -------------------------------------------------------------------------

    async def _slot(self) -> None:
        if self._throttle is not None:
            await self._throttle.acquire()

    def _snapshot(self, ref: JobRef) -> JobSnapshot | None:
        status = self.status_now(ref)
        if status is None:
            return None
        job = self._jobs[ref]
        return JobSnapshot(ref.name, status, dict(job.tags), studio_url_for(ref))

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        await self._slot()
        self.requests.append(FakeRequest(self.clock.now(), "get", ref.name, ref.workspace))
        return self._snapshot(ref)

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        listed: list[JobSnapshot] = []
        for ref, job in self._jobs.items():
            if ref.workspace != workspace or tag not in job.tags:
                continue
            snapshot = self._snapshot(ref)
            if snapshot is not None:
                listed.append(snapshot)
        pages = [listed[i : i + self.page_size] for i in range(0, len(listed), self.page_size)]
        result: list[JobSnapshot] = []
        for number, page in enumerate(pages or [[]]):
            await self._slot()
            now = self.clock.now()
            # "list" is the first page of a listing, "list-next" a page after it.
            kind = "list" if number == 0 else "list-next"
            self.requests.append(FakeRequest(now, kind, None, workspace))
            for snapshot in page:
                ref = JobRef(workspace, snapshot.name)
                self.requests.append(FakeRequest(now, "listed", snapshot.name, workspace))
                # The status as of this page's moment, not the listing's start.
                status = self.status_now(ref)
                if status is not None:
                    result.append(
                        JobSnapshot(snapshot.name, status, snapshot.tags, snapshot.studio_url)
                    )
        return result

    async def resubmit_job(self, ref: JobRef, new_name: str) -> JobRef:
        await self._slot()
        self.requests.append(FakeRequest(self.clock.now(), "get", ref.name, ref.workspace))
        await self._slot()
        self.requests.append(FakeRequest(self.clock.now(), "put", new_name, ref.workspace))
        source = self._jobs[ref]
        new = JobRef(ref.workspace, new_name)
        timeline = self._retry_timelines.get(new_name, [(0.0, "Queued"), (600.0, "Completed")])
        offset = self.clock.now() - self.started_at
        self._jobs[new] = _FakeJob(new, list(timeline), dict(source.tags), offset=offset)
        return new

    @property
    def submitted(self) -> list[str]:
        """Jobs created by resubmission, in order."""
        return [r.job for r in self.requests if r.kind == "put" and r.job is not None]

    async def cancel_job(self, ref: JobRef) -> None:
        await self._slot()
        self.requests.append(FakeRequest(self.clock.now(), "cancel", ref.name, ref.workspace))
        job = self._jobs.get(ref)
        if job is None or job.canceled_at is not None:
            return
        if status_at(job.timeline, self.clock.now() - self.started_at - job.offset) in TERMINAL:
            return
        job.canceled_at = self.clock.now()


__all__ = ["DEFAULT_WORKSPACE", "FakeJobSource", "FakeRequest", "JobStatus", "status_at"]
